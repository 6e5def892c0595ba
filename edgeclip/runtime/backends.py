"""Inference backends behind one tiny interface: onnxruntime (CPU EP) and OpenVINO, both reading our ONNX files.

A session exposes the subset of ``onnxruntime.InferenceSession`` the runtime uses — ``get_inputs()`` (name,
type, shape) and ``run(None, {name: array}) -> [array]`` — so ``Runtime`` embeds the same way on either.
Which runtime runs which variant, and how a session is opened, is the format registry's answer
(``edgeclip.artifact.formats``); ``open_session`` asks it. ``resolve_choice`` turns ``backend="auto"`` /
``variant="auto"`` into the fastest passing pair recorded by ``edgeclip bench`` in the manifest. No torch here.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np

from ..errors import BackendError, ConfigError
from .session import SessionInput

__all__ = ["Backend", "open_session", "resolve_choice", "available_backends", "OpenVinoSession", "open_onnxruntime",
           "open_openvino"]


class Backend(str, Enum):
    ONNXRUNTIME = "onnxruntime"  # ONNX graphs and ORT-mobile .ort files
    OPENVINO = "openvino"  # ONNX graphs
    EXECUTORCH = "executorch"  # .pte programs (edgeclip.runtime.mobile)
    LITERT = "litert"  # .tflite models
    COREML = "coreml"  # .mlpackage (macOS only)
    TENSORRT = "tensorrt"  # .plan engines (an NVIDIA GPU)


ONNX_BACKENDS = (Backend.ONNXRUNTIME, Backend.OPENVINO)  # the two that read the ONNX graphs ("auto" picks among them)
BACKEND_NAMES = tuple(b.value for b in Backend)
AUTO = "auto"


def parse_backend(name: str) -> Backend | str:
    """``"onnxruntime"`` / ``"openvino"`` / ``"auto"``; anything else is a one-line ``ConfigError``."""
    if name == AUTO:
        return AUTO
    try:
        return Backend(name)
    except ValueError:
        raise ConfigError(f"unknown backend {name!r}; choose from {[*BACKEND_NAMES, AUTO]}") from None


def available_backends() -> list[Backend]:
    """ONNX backends installed here (onnxruntime always; OpenVINO with the ``[openvino]`` extra), found without
    importing them (``bench`` times each one in a process of its own)."""
    from ..artifact.formats import ONNX_RUNTIMES, runtime_installed
    return [Backend(r) for r in ONNX_RUNTIMES if runtime_installed(r)]


_OV_TYPES = {"f32": "tensor(float)", "i64": "tensor(int64)", "f16": "tensor(float16)", "i32": "tensor(int32)"}


class OpenVinoSession:
    """An ONNX file compiled by OpenVINO for the CPU, with onnxruntime's ``get_inputs`` / ``run`` shape.

    OpenVINO reads ONNX directly (QDQ graphs become real INT8 kernels through its low-precision transforms).
    ``threads`` sets ``INFERENCE_NUM_THREADS``; the latency hint keeps one stream, like onnxruntime.
    """

    def __init__(self, path: str | Path, threads: int | None = None, config: dict | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise BackendError("the openvino backend needs the [openvino] extra (pip install 'edgeclip[openvino]')") from None
        cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}  # no silent bf16 on AVX512-BF16 CPUs
        cfg.update(config or {})  # a variant's own settings (the bf16 variant's precision hint)
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", cfg)
        self.request = self.compiled.create_infer_request()
        self._inputs = [SessionInput(p.get_any_name(), _OV_TYPES.get(p.get_element_type().get_type_name(), "?"),
                               list(p.get_partial_shape())) for p in self.compiled.inputs]

    def get_inputs(self) -> list[SessionInput]:
        return self._inputs

    def run(self, output_names, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        res = self.request.infer({k: np.ascontiguousarray(v) for k, v in feed.items()})
        return [np.array(res[o]) for o in self.compiled.outputs]


def open_onnxruntime(path, input_name: str = "", threads: int | None = None, providers: list[str] | None = None,
                     options: dict | None = None):
    """An onnxruntime ``InferenceSession`` (CPU EP unless ``providers`` says otherwise)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])


def open_openvino(path, input_name: str = "", threads: int | None = None, providers: list[str] | None = None,
                  options: dict | None = None) -> OpenVinoSession:
    """An OpenVINO CPU session; ``options["openvino_config"]``: the variant's own properties (bf16's hint)."""
    return OpenVinoSession(path, threads, (options or {}).get("openvino_config"))


def open_session(path: str | Path, runtime: str = "onnxruntime", threads: int | None = None,
                 providers: list[str] | None = None, input_name: str = "", options: dict | None = None):
    """One encoder opened by ``runtime``, through the opener the format registry names for it. Raises
    ``BackendError`` (one line) when it cannot load.

    ``input_name``: the contract's input name, which some formats do not store (.pte, .tflite).
    ``options``: the variant's own recorded settings (``Variant.options``).
    """
    from ..artifact.formats import RUNTIMES, load_callable
    runtime = Backend(runtime).value if isinstance(runtime, Backend) else runtime
    try:
        return load_callable(RUNTIMES[runtime].opener)(path, input_name, threads, providers, options or {})
    except BackendError:
        raise
    except Exception as e:
        raise BackendError(f"{runtime} cannot load {Path(path).name}: {str(e).splitlines()[0][:200]}") from None


def resolve_choice(manifest, backend: str, variant: str, batch: int = 1) -> tuple[str, str]:
    """Fill in ``"auto"`` from the manifest's ``fastest`` record (written by ``edgeclip bench``).

    The record ranks, per batch size, every (backend, variant) that passed parity, fastest first; ``auto``
    takes the first entry compatible with what was fixed. The nearest benchmarked batch size is used.
    """
    b = parse_backend(backend)
    if b != AUTO and variant != AUTO:
        return b.value, variant
    rec = manifest.fastest.get("by_batch") or {}
    if not rec:
        raise ConfigError("the artifact has no benchmark record for backend/variant 'auto'; "
                          "run 'edgeclip bench ARTIFACT' first")
    key = min(rec, key=lambda k: (abs(int(k) - batch), int(k)))
    have = set(available_backends())
    for e in rec[key]:
        if (b == AUTO or e["backend"] == b.value) and (variant == AUTO or e["variant"] == variant) \
                and Backend(e["backend"]) in have:
            return e["backend"], e["variant"]
    want = f"backend={backend}, variant={variant}"
    raise ConfigError(f"the benchmark record has no passing entry for {want} at batch {key}; "
                      "run 'edgeclip bench ARTIFACT' with that backend/variant, or pick one explicitly")
