"""The parity gates, per precision, in one place (design §5). A gate is (metric, comparison, bound)."""
from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    FP32 = "fp32"
    FP32_OPT = "fp32-opt"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"
    INT8_STATIC = "int8-static"
    INT8_DYNAMIC_FULL = "int8-dynamic-full"  # every MatMul INT8, attention's QK^T and AV too (optimum's recipe)
    BF16 = "bf16"  # OpenVINO only: the fp32 graphs run with its bf16 inference-precision hint
    INT8_WEIGHTS = "int8-weights"  # OpenVINO only: NNCF weight-only INT8 (IR files), activations in fp32


# Variants built only to be tried: one that fails its gates is dropped from the artifact (recorded, never loadable),
# and the export does not fail for it. The full-MatMul recipe is faster where it keeps accuracy, not everywhere.
OPTIONAL = frozenset({Precision.INT8_DYNAMIC_FULL})


_FP32 = [("max_abs_diff", "<=", 1e-4), ("min_cosine", ">=", 0.99999), ("top1_agreement", ">=", 99.9),
         ("nonfinite", "<=", 0)]
GATES: dict[Precision, list[tuple[str, str, float]]] = {
    Precision.FP32: _FP32,
    Precision.FP32_OPT: _FP32,
    Precision.FP16: [("max_abs_diff", "<=", 5e-3), ("min_cosine", ">=", 0.999), ("top1_agreement", ">=", 99.0),
                     ("zero_shot_delta", "<=", 0.3), ("nonfinite", "<=", 0)],
    Precision.INT8_DYNAMIC: [("mean_cosine", ">=", 0.99), ("min_cosine", ">=", 0.97), ("top1_agreement", ">=", 95.0),
                             ("zero_shot_delta", "<=", 1.0), ("nonfinite", "<=", 0)],
}
GATES[Precision.INT8_STATIC] = GATES[Precision.INT8_DYNAMIC_FULL] = GATES[Precision.INT8_DYNAMIC]
GATES[Precision.INT8_WEIGHTS] = GATES[Precision.INT8_DYNAMIC]  # weights-only INT8 is held to INT8's gates
# bf16 keeps fp32's exponent with an 8-bit significand: each rounding is up to 2^-9 relative (fp16: 2^-11), so the
# element bound is 4x fp16's; cosine, agreement and zero-shot keep fp16's bounds (OpenVINO accumulates in fp32, and
# a bf16 embedding that moved further would change what the user sees). OpenVINO measured cosine 0.99995 against
# fp32 on an AVX512-BF16 CPU (issue #27).
GATES[Precision.BF16] = [("max_abs_diff", "<=", 2e-2), ("min_cosine", ">=", 0.999), ("top1_agreement", ">=", 99.0),
                         ("zero_shot_delta", "<=", 0.3), ("nonfinite", "<=", 0)]
OPENVINO_ONLY = frozenset({Precision.BF16, Precision.INT8_WEIGHTS})  # variants no other backend runs

# Near-ties in top-1 agreement, in cosine-similarity units (the reference's own preference between its answer and
# the artifact's). A flip between two texts the fp32 model itself scores closer than this is rounding, not an
# error of the artifact: it is reported (``near_ties``, ``top1_agreement_raw``) but not counted against the gate.
# The bounds sit at the similarity change each precision is allowed to make (fp16 max |delta| 5e-3 per element
# and INT8 cosine >= 0.97 give far larger changes), measured flips were all below them (fp16 <= 1.8e-4, INT8
# <= 2.0e-3 on 512 ShapesWorld scenes); zero-shot delta and the cosine gates still bound every image.
TIE_MARGIN: dict[Precision, float] = {Precision.FP32: 1e-5, Precision.FP32_OPT: 1e-5, Precision.FP16: 1e-3,
                                      Precision.INT8_DYNAMIC: 1e-2, Precision.INT8_STATIC: 1e-2,
                                      Precision.INT8_DYNAMIC_FULL: 1e-2, Precision.INT8_WEIGHTS: 1e-2,
                                      Precision.BF16: 4e-3}


def gate_precision(p: str) -> Precision:
    """The gates a variant is held to, by its ``Variant.gate`` (precision and recipe: ``int8-static``, ``fp16``);
    named INT8 recipes (``int8-attn``, ...) take the INT8 gates, anything else fp32's."""
    if p in Precision._value2member_map_:
        return Precision(p)
    return Precision.INT8_STATIC if p.startswith("int8") else Precision.FP32


def check_gates(precision: Precision | str, metrics: dict) -> list[str]:
    """Names of the failed gates, e.g. ``['image.min_cosine 0.91 < 0.97']``; metrics absent are not gated."""
    failed = []
    for tower, m in metrics.items():
        for key, op, bound in GATES[Precision(precision)]:
            if key not in m or m[key] is None:
                continue
            ok = m[key] <= bound if op == "<=" else m[key] >= bound
            if not ok:
                failed.append(f"{tower}.{key} {m[key]:.6g} {'>' if op == '<=' else '<'} {bound:g}")
    return failed
