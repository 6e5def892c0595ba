"""TensorRT engines from an artifact's ONNX graphs (UNTESTED on these machines: TensorRT cannot be installed here).

Written against the documented TensorRT Python API; what needs no TensorRT is tested. One module per idea:

- ``available``: is TensorRT importable and is there an NVIDIA GPU (``require_tensorrt``, ``tensorrt_version``):
  one clear ``BackendError`` line when not, before any work.
- ``run``: ``EngineRunner`` runs one engine; ``TensorRtSession`` is the session the format registry opens for a
  ``tensorrt-*`` variant (``rt.load(a, variant="tensorrt-fp16")``), so parity and the runtime use it like any other.
- ``readiness``: checks on an ONNX graph that need no TensorRT (``trt_readiness``, recorded in every manifest).
- ``build``: what to ask TensorRT for, per major version (``plan_build``, pure), and ``build_engine``.

Precision keys on the TensorRT major version: TensorRT 10 uses builder flags (``BuilderFlag.FP16`` / ``INT8``);
TensorRT 11 removed them, so fp16 is built from a graph with explicit casts (our ``fp16`` variant) and INT8 from a
Q/DQ graph (our ``int8-static`` variant), as a strongly typed network. The batch is the only dynamic dimension (one
optimisation profile). The timing cache is persisted beside the engine; the manifest records the TensorRT version
and GPU compute capability, because an engine only runs on the same TensorRT version and GPU architecture.
"""
from __future__ import annotations

from .available import gpu_capability, import_tensorrt, require_tensorrt, tensorrt_version
from .build import BuildPlan, build_engine, plan_build
from .readiness import trt_readiness
from .run import EngineRunner, TensorRtSession

__all__ = ["require_tensorrt", "import_tensorrt", "gpu_capability", "tensorrt_version", "trt_readiness", "BuildPlan",
           "plan_build", "build_engine", "EngineRunner", "TensorRtSession"]
