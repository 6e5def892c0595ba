"""Build a TensorRT engine from one ONNX graph: decide the plan without TensorRT, then build and serialise it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeclip.errors import ExportError

from . import run as _rt


@dataclass(frozen=True)
class BuildPlan:
    """What to ask TensorRT for, decided without TensorRT (so it is unit-tested here)."""
    trt_major: int
    precision: str            # fp32 | fp16 | int8
    builder_flags: tuple[str, ...]
    strongly_typed: bool
    onnx_variant: str         # which artifact graph to parse
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # min / opt / max input shape


def plan_build(trt_version: str, precision: str, input_shape: tuple[int, ...], min_batch: int = 1,
               opt_batch: int = 8, max_batch: int = 64) -> BuildPlan:
    """Choose flags, network mode and source graph for a TensorRT major version and precision.

    TensorRT <= 10 takes precision as builder flags on the fp32 graph (INT8 on the Q/DQ graph); TensorRT >= 11 has no
    precision flags, so the types come from the graph itself, built as a strongly typed network.

    Raises:
        ExportError: unknown precision, or a batch profile that is not 1 <= min <= opt <= max.
    """
    major = int(str(trt_version).split(".")[0])
    if precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"unknown TensorRT precision {precision!r}; choose fp32, fp16 or int8")
    if not (1 <= min_batch <= opt_batch <= max_batch):
        raise ExportError(f"batch profile must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}")
    rest = tuple(input_shape[1:])
    profile = ((min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))
    if major <= 10:
        flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
        variant = "int8-static" if precision == "int8" else "fp32"
        return BuildPlan(major, precision, flags, False, variant, profile)
    variant = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-static"}[precision]
    return BuildPlan(major, precision, (), True, variant, profile)


def build_engine(onnx_path: str | Path, engine_path: str | Path, input_name: str, input_shape: tuple[int, ...],
                 precision: str = "fp16", max_batch: int = 64, workspace_gb: float = 4.0) -> dict:
    """Build and serialise one engine (written atomically; the timing cache is kept beside it for the next build).

    Args:
        onnx_path: the graph to parse (``plan_build(...).onnx_variant`` of the artifact).
        engine_path: the ``.plan`` file to write.
        input_name / input_shape: the one input and an example shape; only its batch dimension varies.
        precision: ``fp32``, ``fp16`` or ``int8``.

    Returns:
        Manifest facts: TensorRT version, compute capability, precision, flags, network mode, profile, engine name.

    Raises:
        BackendError: TensorRT or a GPU is missing.
        ExportError: parsing or building failed.
    """
    trt, cc = _rt.require_tensorrt()
    plan = plan_build(trt.__version__, precision, input_shape, max_batch=max_batch)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net_flags = 0
    if plan.strongly_typed:
        net_flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path.name}: {errs[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    for f in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, f))
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *plan.profile)
    config.add_optimization_profile(profile)
    cache_path = engine_path.with_suffix(".timing.cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path.name}")
    tmp = engine_path.with_suffix(".plan.tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(engine_path)
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"tensorrt": trt.__version__, "compute_capability": cc, "precision": precision,
            "builder_flags": list(plan.builder_flags), "strongly_typed": plan.strongly_typed,
            "profile": [list(s) for s in plan.profile], "engine": engine_path.name}
