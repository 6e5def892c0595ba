"""TensorRT engines as runtime sessions (UNTESTED on these machines: TensorRT cannot be installed here), and the
checks that TensorRT and a GPU exist.

Written against TensorRT 10's documented Python tensor API. ``rt.load(artifact, variant="tensorrt-fp16")`` opens a
``TensorRtSession`` per encoder through the format registry (its runtime entry names this module), like any other
runtime; where TensorRT or an NVIDIA GPU is missing it is one ``BackendError`` line. The engine's buffers are torch
CUDA tensors, which is why this lives with the export (``[train]``) and not in the torch-free runtime package.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from edgeclip.artifact import IMAGE_INPUT, TEXT_INPUT
from edgeclip.errors import BackendError
from edgeclip.runtime.session import SessionInput

__all__ = ["import_tensorrt", "gpu_capability", "tensorrt_version", "require_tensorrt", "EngineRunner",
           "TensorRtSession"]

INSTALL_HINT = "pip install 'edgeclip[trt]' from NVIDIA's index, on a machine with an NVIDIA GPU"


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module; one ``BackendError`` line when it is not installed or does not import."""
    try:
        import tensorrt
    except ModuleNotFoundError as e:
        if e.name != "tensorrt":
            raise BackendError(f"TensorRT is installed but does not import (no module {e.name!r}): "
                               f"reinstall it ({INSTALL_HINT})") from None
        raise BackendError(f"TensorRT is not installed ({INSTALL_HINT})") from None
    except Exception as e:  # a broken install: a missing CUDA library is an ImportError or OSError
        first = (str(e).splitlines() or [""])[0][:200]
        raise BackendError(f"TensorRT is installed but does not import ({type(e).__name__}: {first})") from None
    return tensorrt


def gpu_capability() -> str:
    """Compute capability of the current CUDA device, e.g. ``"9.0"`` (an engine runs only on the architecture it
    was built for, so the manifest records it). One ``BackendError`` line when there is no NVIDIA GPU."""
    try:
        import torch
    except ImportError:
        raise BackendError("TensorRT engines here run through torch's CUDA buffers; install the [train] extra") from None
    if not torch.cuda.is_available():
        raise BackendError("TensorRT needs an NVIDIA GPU, and none is available here")
    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def tensorrt_version() -> str:
    return import_tensorrt().__version__


def require_tensorrt() -> tuple[ModuleType, str]:
    """Both checks, library first: ``(tensorrt module, compute capability)``."""
    return import_tensorrt(), gpu_capability()


class EngineRunner:
    """Runs a serialised engine with torch CUDA tensors as buffers (TensorRT 10+ tensor API).

    ``expected`` (the variant's recorded TensorRT version and compute capability) is checked first: an engine built
    by another TensorRT version or for another GPU architecture is refused before deserializing.
    """

    def __init__(self, engine_path: str | Path, expected: dict | None = None):
        trt, cc = require_tensorrt()
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

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, ...) numpy batch -> (B, D) float32 numpy embeddings."""
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


class TensorRtSession:
    """One engine behind the session interface the runtime uses (``get_inputs`` / ``run``)."""

    def __init__(self, path: str | Path, input_name: str, threads: int | None = None, providers=None, options=None):
        self.runner = EngineRunner(path, options or None)
        spec = IMAGE_INPUT if input_name == IMAGE_INPUT.name else TEXT_INPUT
        self._inputs = [SessionInput(input_name, spec.ort_type, [None] * spec.rank)]

    def get_inputs(self) -> list[SessionInput]:
        return self._inputs

    def run(self, output_names, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feed.values()
        return [self.runner(x)]
