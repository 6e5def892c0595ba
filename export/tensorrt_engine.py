"""TensorRT engines from the plain fp32 ONNX (UNTESTED on these machines: TensorRT cannot be installed here).

Written against the documented Python API. Precision handling keys on the TensorRT major version:
TensorRT 10 uses builder flags (``BuilderFlag.FP16`` / ``INT8``); TensorRT 11 removed them, so fp16 needs a
graph with explicit casts (e.g. ModelOpt AutoCast) and INT8 needs a Q/DQ graph (our ``int8-static`` variant),
built as a strongly typed network. The batch is the only dynamic dimension (one optimisation profile). The
timing cache is persisted beside the engine; the manifest records the TRT version and GPU compute capability,
because an engine only runs on the same TensorRT version and GPU architecture.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeclip.errors import BackendError, ExportError


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
    """Choose flags, network mode and source graph for a TensorRT major version and precision."""
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
    # TensorRT >= 11: no precision flags; types come from the graph (strongly typed network)
    variant = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-static"}[precision]
    return BuildPlan(major, precision, (), True, variant, profile)


def _import_trt():
    try:
        import tensorrt as trt
    except Exception:
        raise BackendError("TensorRT is not installed (pip install 'edgeclip[trt]' from NVIDIA's index, on a "
                           "machine with an NVIDIA GPU)") from None
    return trt


def _gpu_capability() -> str:
    import torch
    if not torch.cuda.is_available():
        raise BackendError("TensorRT needs an NVIDIA GPU, and none is available here")
    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def build_engine(onnx_path: str | Path, engine_path: str | Path, input_name: str, input_shape: tuple[int, ...],
                 precision: str = "fp16", max_batch: int = 64, workspace_gb: float = 4.0) -> dict:
    """Build and serialise one engine. Returns manifest facts (TRT version, compute capability, plan).

    Raises:
        BackendError: TensorRT or a GPU is missing.
        ExportError: parsing or building failed.
    """
    trt = _import_trt()
    cc = _gpu_capability()
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


class EngineRunner:
    """Runs a serialised engine with torch CUDA tensors as buffers (TensorRT 10+ tensor API)."""

    def __init__(self, engine_path: str | Path, expected: dict | None = None):
        trt = _import_trt()
        cc = _gpu_capability()
        if expected and (expected.get("tensorrt") != trt.__version__ or expected.get("compute_capability") != cc):
            raise BackendError(f"engine {Path(engine_path).name} was built for TensorRT {expected.get('tensorrt')} "
                               f"on compute capability {expected.get('compute_capability')}; this machine has "
                               f"TensorRT {trt.__version__} on {cc}: rebuild it with 'edgeclip export --trt'")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize {engine_path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def __call__(self, x):
        import numpy as np
        import torch
        xt = torch.from_numpy(np.ascontiguousarray(x)).cuda()
        self.context.set_input_shape(self.input, tuple(xt.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.input, xt.data_ptr())
        self.context.set_tensor_address(self.output, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        stream.synchronize()
        return out.cpu().numpy()


def trt_readiness(onnx_path: str | Path, input_name: str) -> dict:
    """Checks that need no TensorRT: every input/output has static dims except the batch, and constant folding
    succeeds (with polygraphy; without it folding is not checked and ``fold`` is None)."""
    import onnx
    m = onnx.load(str(onnx_path), load_external_data=False)
    problems = []
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            dynamic = not d.HasField("dim_value")
            if (i == 0) != dynamic:
                problems.append(f"{vi.name} dim {i} is {'dynamic' if dynamic else 'static'}")
    folded = None
    try:
        from polygraphy.backend.onnx import fold_constants, onnx_from_path
        from polygraphy.logger import G_LOGGER
        G_LOGGER.module_severity = G_LOGGER.ERROR
        before = len(onnx_from_path(str(onnx_path)).graph.node)
        folded_model = fold_constants(onnx_from_path(str(onnx_path)), error_ok=False)
        folded = {"nodes_before": before, "nodes_after": len(folded_model.graph.node)}
    except ImportError:
        pass
    except Exception as e:
        problems.append(f"constant folding failed: {str(e).splitlines()[0][:160]}")
    return {"ok": not problems, "problems": problems, "fold": folded, "inputs": [i.name for i in m.graph.input]}


class TrtRuntime:
    """Duck-types ``edgeclip.runtime.Runtime`` (preprocess, tokenizer, embed_pixels, embed_ids) over two
    engines, so parity runs through TensorRT with the same code as through onnxruntime."""

    def __init__(self, artifact_dir: str | Path, engines: dict):
        from edgeclip.runtime import load
        base = load(artifact_dir)
        self.preprocess, self.tokenizer = base.preprocess, base.tokenizer
        d = Path(artifact_dir)
        self._img = EngineRunner(d / engines["image"]["engine"], engines["image"])
        self._txt = EngineRunner(d / engines["text"]["engine"], engines["text"])

    def embed_pixels(self, pixels, batch_size: int = 64):
        import numpy as np
        return np.concatenate([self._img(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)])

    def embed_ids(self, ids, batch_size: int = 64):
        import numpy as np
        return np.concatenate([self._txt(ids[i:i + batch_size]) for i in range(0, len(ids), batch_size)])
