"""edgeclip.export: a model to a checked artifact folder: plan -> build (one exporter per format) -> parity against
PyTorch -> ``manifest.json``, written once.

``export_artifact`` is the whole ``edgeclip export`` command (``pipeline``); ``export_onnx`` writes the ONNX base
alone, without gates. The formats and the runtimes that run them are the registry's (``edgeclip.artifact.formats``);
the exporters are ``edgeclip.export.formats.<name>``; the manifest is ``edgeclip.artifact.manifest``'s.
"""
from __future__ import annotations

from .onnx_export import ExportResult, export_onnx
from .parity import ParityReport, check_parity, parity_markdown
from .pipeline import ArtifactResult, export_artifact
from .tolerances import GATES, Precision, check_gates
from .trt import build_engine, plan_build, trt_readiness

__all__ = ["export_onnx", "export_artifact", "check_parity", "build_engine", "plan_build", "trt_readiness",
           "Precision", "GATES", "check_gates", "ParityReport", "ArtifactResult", "ExportResult", "parity_markdown"]
