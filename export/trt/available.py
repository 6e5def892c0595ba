"""Is TensorRT usable here? The library must import and an NVIDIA GPU must be present; otherwise one clear line.

``edgeclip export --trt`` calls ``require_tensorrt`` before loading the model, so a machine without either fails
in a second instead of after the ONNX export.
"""
from __future__ import annotations

from types import ModuleType

from edgeclip.errors import BackendError

INSTALL_HINT = "pip install 'edgeclip[trt]' from NVIDIA's index, on a machine with an NVIDIA GPU"


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module (imported here, not at module level: it is an optional extra).

    Raises:
        BackendError: TensorRT is not installed, or is installed but fails to import (e.g. missing CUDA libraries).
    """
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
    was built for, so the manifest records it).

    Raises:
        BackendError: no NVIDIA GPU is visible.
    """
    import torch
    if not torch.cuda.is_available():
        raise BackendError("TensorRT needs an NVIDIA GPU, and none is available here")
    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def tensorrt_version() -> str:
    """The installed TensorRT's version string (the build plan keys on its major version).

    Raises:
        BackendError: TensorRT is not installed or does not import.
    """
    return import_tensorrt().__version__


def require_tensorrt() -> tuple[ModuleType, str]:
    """Both checks, library first: ``(tensorrt module, compute capability)``.

    Raises:
        BackendError: TensorRT or a GPU is missing (one line naming which).
    """
    return import_tensorrt(), gpu_capability()
