"""Optimised variants of an fp32 artifact, with onnxruntime's own tooling: ORT graph-optimised fp32, fp16
(LayerNorm / Softmax / normalisation kept in fp32), INT8 dynamic and INT8 static QDQ (calibrated on photos).

The plain fp32 graphs stay untouched: TensorRT must get plain ONNX, never an ORT-optimised graph.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeclip.errors import ExportError

from .onnx_export import IMAGE_ONNX, TEXT_ONNX, read_manifest, update_manifest
from .tolerances import Precision

FP16_KEEP_FP32 = ["LayerNormalization", "Softmax", "ReduceL2", "ReduceSumSquare", "ReduceMean", "Pow", "Sqrt",
                  "Div", "Clip", "Max", "Expand", "ArgMax", "Equal", "Cast"]


def _names(variant: Precision) -> tuple[str, str]:
    return f"image_encoder.{variant.value}.onnx", f"text_encoder.{variant.value}.onnx"


def _ort_optimize(src: Path, dst: Path) -> None:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def _fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    m = onnx.load(str(src))
    m16 = convert_float_to_float16(m, keep_io_types=True, op_block_list=FP16_KEEP_FP32)
    onnx.save(m16, str(dst))


def _int8_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


class _Reader:
    """CalibrationDataReader protocol: ``get_next() -> {input name: array} | None``."""

    def __init__(self, name: str, batches: list[np.ndarray]):
        self.name, self.it = name, iter(batches)

    def get_next(self):
        b = next(self.it, None)
        return None if b is None else {self.name: b}


def _int8_static(src: Path, dst: Path, name: str, batches: list[np.ndarray]) -> None:
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:
            pre = src  # pre-processing is an optimisation; quantise the plain graph if it fails
        quantize_static(str(pre), str(dst), _Reader(name, batches), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=["MatMul", "Gemm", "Conv"],
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})


def build_variants(artifact_dir: str | Path, variants: list[Precision | str],
                   calib_images: list | None = None) -> dict[str, dict]:
    """Write the requested variants beside the fp32 graphs and register them in the manifest.

    Args:
        artifact_dir: folder written by ``export_onnx``.
        variants: any of ``fp32-opt``, ``fp16``, ``int8-dynamic``, ``int8-static``.
        calib_images: PIL images for ``int8-static`` calibration (real photos).
    """
    from edgeclip.runtime.preprocess import Preprocess
    from edgeclip.runtime.tokenizer import Tokenizer
    d = Path(artifact_dir)
    m = read_manifest(d)
    added = {}
    for v in map(Precision, variants):
        if v is Precision.FP32:
            continue
        img, txt = _names(v)
        try:
            if v is Precision.FP32_OPT:
                _ort_optimize(d / IMAGE_ONNX, d / img)
                _ort_optimize(d / TEXT_ONNX, d / txt)
            elif v is Precision.FP16:
                _fp16(d / IMAGE_ONNX, d / img)
                _fp16(d / TEXT_ONNX, d / txt)
            elif v is Precision.INT8_DYNAMIC:
                _int8_dynamic(d / IMAGE_ONNX, d / img)
                _int8_dynamic(d / TEXT_ONNX, d / txt)
            elif v is Precision.INT8_STATIC:
                if not calib_images:
                    raise ExportError("int8-static needs calibration photos (--calib DIR)")
                import json
                pre = Preprocess(json.loads((d / "preprocess.json").read_text()))
                px = pre.batch(calib_images)
                _int8_static(d / IMAGE_ONNX, d / img, "pixel_values", [px[i:i + 8] for i in range(0, len(px), 8)])
                from .parity import PROMPTS
                tok = Tokenizer(d / "bpe_simple_vocab_16e6.txt.gz", m["context_length"])
                _int8_static(d / TEXT_ONNX, d / txt, "input_ids", [tok(PROMPTS)])
        except ExportError:
            raise
        except Exception as e:
            raise ExportError(f"building variant {v.value} failed: {str(e).splitlines()[0][:240]}") from None
        added[v.value] = {"image": img, "text": txt}
    update_manifest(d, variants=added)
    return added
