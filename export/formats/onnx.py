"""The ONNX format, the artifact's base: both fp32 graphs (always), then the ONNX variants the plan asks for
(ORT-optimised fp32, fp16, INT8 dynamic / full / static, and OpenVINO's bf16 hint on the fp32 graphs).

The graph machinery lives in ``edgeclip.export.onnx_export`` (tracing) and ``edgeclip.export.variants`` (onnxruntime's
optimiser and quantizers); this file is the exporter the registry calls. The TensorRT-readiness checks of the fp32
graphs are recorded here too (``trt_readiness``): they need no TensorRT.
"""
from __future__ import annotations

from edgeclip.artifact import IMAGE_INPUT, IMAGE_ONNX, TEXT_INPUT, TEXT_ONNX
from edgeclip.artifact.manifest import Variant

from ..onnx_export import write_base
from ..trt import trt_readiness
from ..variants import build_variants
from . import ExportBundle, FormatSettings


def build(bundle: ExportBundle, settings: FormatSettings) -> dict[str, Variant]:
    """``fp32`` (the base: graphs, tokenizer, preprocessing) and every other planned ONNX variant."""
    out = {"fp32": write_base(bundle.model, bundle.out, bundle.opset)}
    bundle.manifest.extra["trt_readiness"] = {
        tower: trt_readiness(bundle.out / f, n)
        for tower, f, n in (("image", IMAGE_ONNX, IMAGE_INPUT.name), ("text", TEXT_ONNX, TEXT_INPUT.name))}
    extra = [p for p in settings.precisions if p != "fp32"]
    if extra:
        calib = bundle.calibration() if "int8-static" in extra else None
        out.update(build_variants(bundle.out, extra, calib))
    return out
