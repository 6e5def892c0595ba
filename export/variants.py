"""Optimised variants of an fp32 artifact, with onnxruntime's own tooling: ORT graph-optimised fp32, fp16
(LayerNorm / Softmax / normalisation kept in fp32), INT8 dynamic and INT8 static QDQ (calibrated on photos).

The plain fp32 graphs stay untouched: TensorRT must get plain ONNX, never an ORT-optimised graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeclip.artifact import IMAGE_INPUT, IMAGE_ONNX, PREPROCESS, TEXT_INPUT, TEXT_ONNX, VOCAB
from edgeclip.errors import ExportError

from edgeclip.artifact.manifest import Variant, split_precision

from .embedding import quantize_token_embedding
from .tolerances import OPENVINO_ONLY, Precision

FP16_KEEP_FP32 = ["LayerNormalization", "Softmax", "ReduceL2", "ReduceSumSquare", "ReduceMean", "Pow", "Sqrt",
                  "Div", "Clip", "Max", "Expand", "ArgMax", "Equal", "Cast"]


def _names(variant: Precision) -> tuple[str, str]:
    ext = ".xml" if variant is Precision.INT8_WEIGHTS else ".onnx"  # OpenVINO IR (+ its .bin) for weights-only INT8
    return f"image_encoder.{variant.value}{ext}", f"text_encoder.{variant.value}{ext}"


OPENVINO_HINT = {"INFERENCE_PRECISION_HINT": "bf16"}  # the bf16 variant: OpenVINO's own precision hint


def require_openvino(variants) -> None:
    """OpenVINO's own variants need openvino (and NNCF for int8-weights): one line before any work, else."""
    import importlib.util

    from edgeclip.errors import BackendError
    want = {Precision(v) for v in variants} & OPENVINO_ONLY
    need = (["openvino"] if want else []) + (["nncf"] if Precision.INT8_WEIGHTS in want else [])
    missing = [m for m in need if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendError(f"variants {sorted(v.value for v in want)} need {' and '.join(missing)}: "
                           "pip install 'edgeclip[openvino]'")


def _ov_int8_weights(src: Path, dst: Path) -> None:
    """NNCF weight-only INT8 (asymmetric, per output channel: optimum-intel's ``--weight-format int8``) of the
    fp32 graph, saved as OpenVINO IR: ``dst`` (.xml) and its weights (.bin). Activations stay fp32."""
    import logging

    import nncf
    import openvino as ov
    logging.getLogger("nncf").setLevel(logging.WARNING)  # its per-call bit-width tables would flood the export log
    model = nncf.compress_weights(ov.Core().read_model(str(src)), mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(model, str(dst), compress_to_fp16=False)


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


def int8_dynamic(src: Path, dst: Path, every_matmul: bool = False) -> None:
    """Weights INT8, activations quantised at run time. ``every_matmul``: also the MatMuls of two activations
    (attention's QK^T and AV), which onnxruntime leaves in fp32 by default (``MatMulConstBOnly``).

    Convolutions (the patch embedding) stay fp32: onnxruntime's ConvInteger took 2.8x its fp32 Conv on ViT-B/32
    (~120 vs ~43 ms of a batch-32 call on 2 threads, a sixth of the INT8 graph's time) for 3% of the weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     op_types_to_quantize=[t for t in IntegerOpsRegistry if t != "Conv"],
                     extra_options={"MatMulConstBOnly": not every_matmul})


class _Reader:
    """CalibrationDataReader protocol: ``get_next() -> {input name: array} | None``."""

    def __init__(self, name: str, batches: list[np.ndarray]):
        self.name, self.it = name, iter(batches)

    def get_next(self):
        b = next(self.it, None)
        return None if b is None else {self.name: b}


@dataclass(frozen=True)
class Int8Recipe:
    """Knobs of post-training static INT8 (onnxruntime's quantize_static); the defaults are the shipped variant.

    keep_fp32: which MatMul/Conv nodes stay fp32 — ``()``, or any of ``"ends"`` (patch/token embedding Conv and
    the final projection) and ``"attention"`` (activation x activation MatMuls: QK^T and AV).
    """
    calibration: str = "minmax"  # minmax | entropy | percentile
    per_channel: bool = True
    symmetric_activations: bool = True  # False: asymmetric uint8 activations
    keep_fp32: tuple[str, ...] = ()
    pre_process: bool = True
    percentile: float = 99.999


def _fp32_nodes(model_path: Path, keep: tuple[str, ...]) -> list[str]:
    import onnx
    m = onnx.load(str(model_path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    consts = {n.output[0] for n in m.graph.node if n.op_type == "Constant"}
    gemms = [n for n in m.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    out = []
    if "ends" in keep and gemms:
        out += [gemms[0].name, gemms[-1].name]
    if "attention" in keep:
        out += [n.name for n in gemms if n.op_type == "MatMul" and not any(i in inits or i in consts for i in n.input)]
    return out


def _int8_static(src: Path, dst: Path, name: str, batches: list[np.ndarray], recipe: Int8Recipe = Int8Recipe()) -> None:
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[recipe.calibration]
    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        try:
            if not recipe.pre_process:
                raise ValueError("pre-processing off")
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:
            pre = src  # pre-processing is an optimisation; quantise the plain graph if it fails
        extra = {"ActivationSymmetric": recipe.symmetric_activations, "WeightSymmetric": True}
        if recipe.calibration == "percentile":
            extra["CalibPercentile"] = recipe.percentile
        quantize_static(str(pre), str(dst), _Reader(name, batches), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8 if recipe.symmetric_activations else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=recipe.per_channel,
                        op_types_to_quantize=["MatMul", "Gemm", "Conv"], calibrate_method=method,
                        nodes_to_exclude=_fp32_nodes(pre, recipe.keep_fp32) or None, extra_options=extra)


def _int8_nncf(src: Path, dst: Path, name: str, batches: list[np.ndarray], fast_bias: bool = True) -> None:
    """NNCF post-training quantization of the ONNX graph (transformer preset: SmoothQuant-free, attention-aware
    placement) into a QDQ ONNX file that both onnxruntime and OpenVINO run."""
    try:
        import nncf
    except ImportError:
        raise ExportError("NNCF PTQ needs the nncf package (pip install nncf)") from None
    import onnx
    model = onnx.load(str(src))
    q = nncf.quantize(model, nncf.Dataset(batches, lambda b: {name: b}), model_type=nncf.ModelType.TRANSFORMER,
                      subset_size=sum(len(b) for b in batches), fast_bias_correction=fast_bias)
    onnx.save(q, str(dst))


def add_int8_variant(artifact_dir: str | Path, variant: str, calib_pixels: np.ndarray, calib_ids: np.ndarray,
                     recipe: Int8Recipe | str = Int8Recipe()) -> Variant:
    """Quantise both fp32 encoders in ``artifact_dir`` with ``recipe`` (an ``Int8Recipe`` or ``"nncf"``) into the
    files of a new named variant; returns its record (the caller puts it in the manifest it writes).

    Calibration: ``calib_pixels`` [N, 3, H, W] float32 (preprocessed), ``calib_ids`` [M, L] int64.
    """
    d = Path(artifact_dir)
    img, txt = f"image_encoder.{variant}.onnx", f"text_encoder.{variant}.onnx"
    try:
        _static_pair(d, img, txt, _chunks(calib_pixels, 8), _chunks(calib_ids, 16), recipe)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"building variant {variant} failed: {str(e).splitlines()[0][:240]}") from None
    return Variant("onnx", *split_precision(variant), image=img, text=txt)


def _chunks(a: np.ndarray, n: int) -> list[np.ndarray]:
    return [a[i:i + n] for i in range(0, len(a), n)]


def _static_pair(d: Path, img: str, txt: str, px: list[np.ndarray], ids: list[np.ndarray],
                 recipe: Int8Recipe | str = Int8Recipe()) -> None:
    """Both encoders calibrated on their batches into ``img`` / ``txt`` (``recipe`` "nncf": NNCF's PTQ)."""
    for src, dst, name, batches in ((IMAGE_ONNX, img, IMAGE_INPUT.name, px), (TEXT_ONNX, txt, TEXT_INPUT.name, ids)):
        if recipe == "nncf":
            _int8_nncf(d / src, d / dst, name, batches)
        else:
            _int8_static(d / src, d / dst, name, batches, recipe)


def calibration_inputs(artifact_dir: Path, calib_images: list | None,
                       context_length: int) -> tuple[np.ndarray, np.ndarray]:
    """What every static INT8 variant (ONNX, ExecuTorch) calibrates on: the calibration photos through the
    artifact's own preprocessing, [N, 3, H, W] float32, and the parity prompts' ids, [M, L] int64.

    Raises:
        ExportError: no calibration photos were given.
    """
    import json

    from edgeclip.runtime.preprocess import Preprocess
    from edgeclip.runtime.tokenizer import Tokenizer

    from .parity import PROMPTS
    if not calib_images:
        raise ExportError("int8-static needs calibration photos (--calib DIR)")
    d = Path(artifact_dir)
    pre = Preprocess(json.loads((d / PREPROCESS).read_text()))
    tok = Tokenizer(d / VOCAB, context_length)
    return pre.batch(calib_images), tok(PROMPTS)


def build_variants(artifact_dir: str | Path, variants: list[Precision | str],
                   calib: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Variant]:
    """Write the requested variants beside the fp32 graphs; returns their records (the manifest is the caller's).

    Args:
        artifact_dir: a folder holding the fp32 graphs (``image_encoder.onnx`` / ``text_encoder.onnx``).
        variants: any of ``fp32-opt``, ``fp16``, ``int8-dynamic``, ``int8-dynamic-full``, ``int8-static``, and
            OpenVINO's own ``bf16`` / ``int8-weights`` (``require_openvino``).
        calib: (pixels, ids) from ``calibration_inputs`` for ``int8-static``.
    """
    d = Path(artifact_dir)
    added = {}
    for v in map(Precision, variants):
        if v is Precision.FP32:
            continue
        img, txt = _names(v)
        try:
            if v is Precision.BF16:  # no files of its own: the fp32 graphs, compiled by OpenVINO in bf16
                img, txt = IMAGE_ONNX, TEXT_ONNX
            elif v is Precision.INT8_WEIGHTS:
                _ov_int8_weights(d / IMAGE_ONNX, d / img)
                _ov_int8_weights(d / TEXT_ONNX, d / txt)
            elif v is Precision.FP32_OPT:
                _ort_optimize(d / IMAGE_ONNX, d / img)
                _ort_optimize(d / TEXT_ONNX, d / txt)
            elif v is Precision.FP16:
                _fp16(d / IMAGE_ONNX, d / img)
                _fp16(d / TEXT_ONNX, d / txt)
            elif v in (Precision.INT8_DYNAMIC, Precision.INT8_DYNAMIC_FULL):
                int8_dynamic(d / IMAGE_ONNX, d / img, v is Precision.INT8_DYNAMIC_FULL)
                int8_dynamic(d / TEXT_ONNX, d / txt, v is Precision.INT8_DYNAMIC_FULL)
            elif v is Precision.INT8_STATIC:
                if calib is None:
                    raise ExportError("int8-static needs calibration photos (--calib DIR)")
                px, ids = calib
                _static_pair(d, img, txt, _chunks(px, 8), [ids])  # the parity prompts as one text batch
                quantize_token_embedding(d / txt)  # per-row INT8: the quantizer leaves the table fp32
        except ExportError:
            raise
        except Exception as e:
            raise ExportError(f"building variant {v.value} failed: {str(e).splitlines()[0][:240]}") from None
        fmt = "openvino-ir" if v is Precision.INT8_WEIGHTS else "onnx"
        rec = Variant(fmt, *split_precision(v.value), image=img, text=txt,
                      backends=("openvino",) if v in OPENVINO_ONLY else ())
        if v is Precision.BF16:
            rec.options["openvino_config"] = dict(OPENVINO_HINT)
        added[v.value] = rec
    return added
