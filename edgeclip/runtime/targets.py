"""The device targets beyond plain ONNX: which file a variant is, which runtime opens it, which extra installs it.

One home for these facts: ``edgeclip.export`` writes variants by them and ``edgeclip.runtime`` opens variants by
them. A variant's manifest entry names its target (``"target": "executorch"``); entries without one are ONNX
graphs (onnxruntime or OpenVINO). No torch here.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from enum import Enum

from ..errors import BackendError, ConfigError

__all__ = ["Target", "TargetInfo", "TARGETS", "variant_target", "variant_name", "target_runtime", "entry_backends",
           "require_target",
           "runs_on_this_platform", "runs_here", "base_precision", "MAX_BATCH"]

MAX_BATCH = 32  # ExecuTorch plans its memory for the largest batch it may see: inputs larger are run in chunks


class Target(str, Enum):
    EXECUTORCH = "executorch"  # .pte, XNNPACK delegate: Android, iOS, ARM Linux boards
    LITERT = "litert"  # .tflite (formerly TensorFlow Lite): Android, embedded Linux, microcontrollers
    COREML = "coreml"  # .mlpackage: iPhone, iPad, Mac (Neural Engine / GPU / CPU)
    ORT_MOBILE = "ort-mobile"  # .ort: onnxruntime's mobile build with a reduced operator set


@dataclass(frozen=True)
class TargetInfo:
    suffix: str  # file suffix of each encoder
    runtime: str  # the backend that runs it (edgeclip.runtime.backends.Backend value)
    extra: str | None  # pip extra that installs the converter and, where one exists here, its Python runtime
    converter: str  # module the export needs
    runner: str  # module its Python runtime needs
    precisions: tuple[str, ...]  # variants it builds: always the first; INT8 / fp16 ones on request
    batch: str  # how the batch dimension is handled, for the README and the manifest
    platforms: tuple[str, ...] = ()  # ``sys.platform`` values its runtime runs on (empty: any)


TARGETS: dict[Target, TargetInfo] = {
    Target.EXECUTORCH: TargetInfo(".pte", "executorch", "executorch", "executorch.exir", "executorch.runtime",
                                  ("fp32", "int8-dynamic", "int8-static"), f"dynamic, 1..{MAX_BATCH}"),
    Target.LITERT: TargetInfo(".tflite", "litert", "litert", "litert_torch", "ai_edge_litert.interpreter",
                              ("fp32", "int8-dynamic"), "fixed 1 (the runtime runs one item per call)"),
    Target.COREML: TargetInfo(".mlpackage", "coreml", "coreml", "coremltools", "coremltools", ("fp32", "fp16"),
                              f"dynamic, 1..{MAX_BATCH}", platforms=("darwin",)),
    Target.ORT_MOBILE: TargetInfo(".ort", "onnxruntime", None, "onnxruntime.tools.convert_onnx_models_to_ort",
                                  "onnxruntime", ("fp32", "int8-dynamic", "int8-static"), "dynamic"),
}


def variant_name(target: Target, precision: str) -> str:
    """``executorch-fp32``, ``litert-int8-dynamic``, ``ort-mobile-int8-static``, ..."""
    return f"{Target(target).value}-{precision}"


def variant_target(entry: dict) -> Target | None:
    """The target of a manifest variant entry; None for an ONNX graph. An unknown target is a one-line error."""
    name = entry.get("target") if isinstance(entry, dict) else None
    if name is None:
        return None
    try:
        return Target(name)
    except ValueError:
        raise ConfigError(f"manifest names an unknown target {name!r}; this edgeclip knows "
                          f"{[t.value for t in Target]} (a newer edgeclip wrote it?)") from None


def target_runtime(entry: dict) -> str | None:
    """The backend of a device-format variant (.pte, .tflite, .ort, .mlpackage); None for an ONNX graph."""
    t = variant_target(entry)
    return TARGETS[t].runtime if t else None


def entry_backends(entry: dict) -> tuple[str, ...]:
    """The ONNX backends a variant is restricted to (its manifest ``"backends"``); () for any. OpenVINO's own
    variants (``bf16``: its precision hint on the fp32 graphs; ``int8-weights``: IR files) run nowhere else."""
    b = entry.get("backends") if isinstance(entry, dict) else None
    return tuple(b) if isinstance(b, list) and all(isinstance(x, str) for x in b) else ()


def runs_on_this_platform(target: Target | str) -> bool:
    """Whether ``target``'s runtime exists on this OS at all (Core ML: macOS only), installed or not."""
    platforms = TARGETS[Target(target)].platforms
    return not platforms or sys.platform in platforms


def runs_here(target: Target | str) -> bool:
    """Its Python runtime runs on this OS and is installed (``require_target(run=True)`` would pass)."""
    try:
        require_target(target, convert=False, run=True)
    except BackendError:
        return False
    return True


def require_target(target: Target | str, convert: bool = True, run: bool = False) -> None:
    """Fail in one line, before any work, when the packages ``target`` needs are not installed.

    Args:
        convert: need its converter (export). run: need its Python runtime (parity, ``runtime.load``).
    """
    t = Target(target)
    info = TARGETS[t]
    if run and not runs_on_this_platform(t):
        raise BackendError(f"{t.value} models run only on {'macOS' if t is Target.COREML else 'the device'}; "
                           f"on {sys.platform} the {info.suffix} files are conversion only")
    mods = ([info.converter] if convert else []) + ([info.runner] if run else [])
    for mod in mods:
        if importlib.util.find_spec(mod.split(".")[0]) is None:
            extra = info.extra if mod == info.converter or t is not Target.LITERT else "litert-runtime"
            how = f"pip install 'edgeclip[{extra}]'" if info.extra else "pip install onnxruntime"
            raise BackendError(f"--{t.value} needs {mod.split('.')[0]} ({how})")


def base_precision(variant: str) -> str:
    """The numeric precision a variant's name carries, which picks its parity gates: ``executorch-int8-static``
    -> ``int8-static``, ``coreml-fp16`` -> ``fp16``, ``fp32-opt`` -> ``fp32-opt``."""
    for t in sorted(Target, key=lambda t: -len(t.value)):  # "ort-mobile-" before any shorter prefix
        if variant.startswith(t.value + "-"):
            return variant[len(t.value) + 1:]
    return variant
