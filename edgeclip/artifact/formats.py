"""The registry of artifact formats and the runtimes that run them: one object per format, one answer per question.

Why: which file a variant is, which runtime runs it, which pip extra installs that runtime and how a session is
opened were spread over ~10 files (issue #35). Here each format states, once:

- its files (suffixes), the precisions it offers and how the batch is handled;
- the runtimes that run it (each a ``RuntimeSpec``: its module, its extra, the platforms it runs on and the
  function that opens a session), and the module its exporter needs;
- its exporter (``edgeclip.export.formats.<name>:build``), named by a string and imported only when used.

Adding a format is one exporter file and one ``Format(...)`` line in ``FORMATS``; a format of another package
registers itself (``register_format``) in a module named by ``$EDGECLIP_FORMATS`` or an ``edgeclip.formats`` entry
point (docs/development.md). No torch here: the device install asks the same registry.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import BackendError, ConfigError

__all__ = ["RuntimeSpec", "Format", "RUNTIMES", "FORMATS", "register_format", "get_format", "runtimes_for",
           "require_runtime", "runtime_installed", "runs_on_this_platform", "require_converter", "resolve",
           "variant_name", "MAX_BATCH", "ONNX_RUNTIMES"]

MAX_BATCH = 32  # ExecuTorch / Core ML plan memory for the largest batch they may see: larger inputs run in chunks


@dataclass(frozen=True)
class RuntimeSpec:
    """One inference runtime: the module it needs, the extra that installs it, where it runs, how it opens a file.

    ``opener`` is ``"module:function"`` (or a callable) with the signature
    ``open(path, input_name, threads, providers, options) -> session`` (``get_inputs()`` and ``run()``).
    """
    name: str
    module: str
    extra: str | None
    opener: str | Callable
    platforms: tuple[str, ...] = ()  # ``sys.platform`` values it runs on (empty: any)
    needs: str = ""  # said when it cannot run on this platform ("macOS", "an NVIDIA GPU")


@dataclass(frozen=True)
class Format:
    """One artifact format: its files, precisions, runtimes, converter and exporter."""
    name: str
    suffixes: tuple[str, ...]  # of each encoder file
    runtimes: tuple[str, ...]  # ``RUNTIMES`` names, the default first
    precisions: tuple[str, ...]  # the variants' gate names it can build (``fp32``, ``int8-static``, ...)
    exporter: str | Callable  # ``"module:function"``: ``build(bundle, settings) -> {name: Variant}``
    converter: str = ""  # module the export needs ("" : nothing beyond [train])
    extra: str | None = None  # pip extra that installs the converter
    batch: str = "dynamic"  # how the batch dimension is handled, for the manifest and the README
    prefix: bool = True  # variant names carry the format (``executorch-fp32``); ONNX's own do not (``fp16``)
    default: tuple[str, ...] = ("fp32",)  # built whenever the format is asked for (INT8 on request)
    from_onnx: bool = False  # converts the ONNX variants the export built (ORT-mobile), instead of the model
    description: str = ""


_ORT, _OV = "edgeclip.runtime.backends", "edgeclip.runtime.mobile"
RUNTIMES: dict[str, RuntimeSpec] = {r.name: r for r in (
    RuntimeSpec("onnxruntime", "onnxruntime", None, f"{_ORT}:open_onnxruntime"),
    RuntimeSpec("openvino", "openvino", "openvino", f"{_ORT}:open_openvino"),
    RuntimeSpec("executorch", "executorch.runtime", "executorch", f"{_OV}:ExecuTorchSession"),
    RuntimeSpec("litert", "ai_edge_litert.interpreter", "litert-runtime", f"{_OV}:LiteRtSession"),
    RuntimeSpec("coreml", "coremltools", "coreml", f"{_OV}:CoreMLSession", ("darwin",), "macOS"),
    RuntimeSpec("tensorrt", "tensorrt", "trt", "edgeclip.export.trt.run:TensorRtSession", ("linux", "win32"),
                "an NVIDIA GPU"),
)}
ONNX_RUNTIMES = ("onnxruntime", "openvino")  # the two that read ONNX graphs ("auto" picks among them)

_X = "edgeclip.export.formats"
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", (".onnx",), ONNX_RUNTIMES,
           ("fp32", "fp32-opt", "fp16", "bf16", "int8-dynamic", "int8-dynamic-full", "int8-static"),
           f"{_X}.onnx:build", prefix=False, description="ONNX graphs (the artifact's base, always written)"),
    Format("openvino-ir", (".xml", ".bin"), ("openvino",), ("int8-weights",), f"{_X}.openvino_ir:build",
           converter="nncf", extra="openvino", prefix=False, description="OpenVINO IR, NNCF weight-only INT8"),
    Format("ort-mobile", (".ort",), ("onnxruntime",), ("fp32", "int8-dynamic", "int8-static"),
           f"{_X}.ort_mobile:build", converter="onnxruntime.tools.convert_onnx_models_to_ort", from_onnx=True,
           description="onnxruntime's mobile format, with a reduced-operator config"),
    Format("executorch", (".pte",), ("executorch",), ("fp32", "int8-dynamic", "int8-static"),
           f"{_X}.executorch:build", converter="executorch.exir", extra="executorch",
           batch=f"dynamic, 1..{MAX_BATCH}", description="ExecuTorch programs, XNNPACK delegate"),
    Format("litert", (".tflite",), ("litert",), ("fp32", "int8-dynamic"), f"{_X}.litert:build",
           converter="litert_torch", extra="litert", batch="fixed 1 (the runtime runs one item per call)",
           description="LiteRT (TensorFlow Lite) flatbuffers"),
    Format("coreml", (".mlpackage",), ("coreml",), ("fp32", "fp16"), f"{_X}.coreml:build", converter="coremltools",
           extra="coreml", batch=f"dynamic, 1..{MAX_BATCH}", default=("fp32", "fp16"),
           description="Core ML ML programs (predictions: macOS)"),
    Format("tensorrt", (".plan",), ("tensorrt",), ("fp32", "fp16", "int8"), f"{_X}.tensorrt:build",
           converter="tensorrt", extra="trt", description="TensorRT engines (need TensorRT and an NVIDIA GPU)"),
)}


def register_format(fmt: Format, runtime: RuntimeSpec | None = None) -> Format:
    """Add a format (and, if it brings one, its runtime) to the registry at run time; a name taken is refused
    (registering the same object again is a no-op, so a plugin module may be imported twice)."""
    if FORMATS.get(fmt.name) is fmt:
        return fmt
    if fmt.name in FORMATS:
        raise ConfigError(f"format {fmt.name!r} is already registered")
    if runtime is not None:
        RUNTIMES.setdefault(runtime.name, runtime)
    unknown = [r for r in fmt.runtimes if r not in RUNTIMES]
    if unknown:
        raise ConfigError(f"format {fmt.name!r} names unknown runtime {unknown[0]!r}; known: {sorted(RUNTIMES)}")
    FORMATS[fmt.name] = fmt
    return fmt


PLUGINS_ENV = "EDGECLIP_FORMATS"  # comma-separated modules that register formats when imported
_plugins_loaded = False


def load_plugins() -> None:
    """Import the modules that register formats beyond the built-in ones, once per process: those named in
    ``$EDGECLIP_FORMATS`` and the ``edgeclip.formats`` entry points of installed packages. Why: a format registered
    in one process must be known to the processes it starts (``bench`` times each config in a fresh one)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    import os
    from importlib.metadata import entry_points
    for mod in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError(f"${PLUGINS_ENV} names {mod!r}, which does not import: {e}") from None
    for ep in entry_points(group="edgeclip.formats"):
        ep.load()


def get_format(name: str, where: str = "") -> Format:
    """The registered format ``name``; one line naming the known ones otherwise (a newer edgeclip wrote it?)."""
    if name not in FORMATS and isinstance(name, str):
        load_plugins()
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        pre = f"{where}: " if where else ""
        raise ConfigError(f"{pre}unknown format {name!r}; this edgeclip knows {sorted(FORMATS)} (written by a newer "
                          "edgeclip? upgrade it)") from None


def variant_name(fmt: str, gate: str) -> str:
    """The name users pass as ``variant=``: ``fp16`` for ONNX's own, ``executorch-int8-static`` for the others."""
    return f"{fmt}-{gate}" if get_format(fmt).prefix else gate


def runtimes_for(variant) -> tuple[str, ...]:
    """The runtimes that run ``variant`` (a ``Variant``), its default first: the one answer to that question."""
    own = get_format(variant.format).runtimes
    return tuple(r for r in own if r in variant.backends) if variant.backends else own


def resolve(variant, runtime: str | None) -> str:
    """The runtime that runs ``variant``: ``runtime`` when it can, its default when None; a mismatch is one line."""
    ok = runtimes_for(variant)
    if runtime is None:
        return ok[0]
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown backend {runtime!r}; choose from {[*RUNTIMES, 'auto']}")
    if runtime not in ok:
        raise ConfigError(f"a {variant.format} {variant.gate} variant runs on {' / '.join(ok)} only, not {runtime!r}")
    return runtime


def runs_on_this_platform(runtime: str) -> bool:
    """Whether ``runtime`` exists on this OS at all (Core ML: macOS only), installed or not."""
    p = RUNTIMES[runtime].platforms
    return not p or sys.platform in p


def runtime_installed(runtime: str) -> bool:
    """Its module imports here and it runs on this OS (``require_runtime`` would pass)."""
    try:
        require_runtime(runtime)
    except BackendError:
        return False
    return True


def _find(module: str) -> bool:
    if module.split(".")[0] in sys.modules:  # imported already (or put there by a test standing in for it)
        return True
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def require_runtime(runtime: str, what: str = "") -> RuntimeSpec:
    """One ``BackendError`` line, before any work, when ``runtime`` cannot run here; names the extra to install."""
    spec = RUNTIMES[runtime]
    pre = f"{what}: " if what else ""
    if not runs_on_this_platform(runtime):
        raise BackendError(f"{pre}{runtime} runs only on {spec.needs or spec.platforms}; on {sys.platform} its files "
                           "are conversion only")
    if not _find(spec.module):
        how = f"pip install 'edgeclip[{spec.extra}]'" if spec.extra else f"pip install {spec.module}"
        raise BackendError(f"{pre}the {runtime} runtime needs {spec.module.split('.')[0]} ({how})")
    return spec


def require_converter(fmt: Format) -> None:
    """One ``BackendError`` line, before an export starts, when ``fmt``'s converter is not installed."""
    if fmt.converter and not _find(fmt.converter):
        how = f"pip install 'edgeclip[{fmt.extra}]'" if fmt.extra else f"pip install {fmt.converter.split('.')[0]}"
        raise BackendError(f"--{fmt.name} needs {fmt.converter.split('.')[0]} ({how})")


def load_callable(ref: str | Callable) -> Callable[..., Any]:
    """``"module:attr"`` imported now (heavy modules load only when their format is used), or the callable itself."""
    if callable(ref):
        return ref
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)
