"""Is TensorRT usable here? The library must import and an NVIDIA GPU must be present; otherwise one clear line.
The checks live beside the engine runner (``run``), which makes them before opening an engine; ``edgeclip export
--trt`` makes them before loading the model, so a machine without either fails in a second.
"""
from .run import INSTALL_HINT, gpu_capability, import_tensorrt, require_tensorrt, tensorrt_version

__all__ = ["INSTALL_HINT", "gpu_capability", "import_tensorrt", "require_tensorrt", "tensorrt_version"]
