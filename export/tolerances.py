"""The parity gates, per precision, in one place (design §5). A gate is (metric, comparison, bound)."""
from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    FP32 = "fp32"
    FP32_OPT = "fp32-opt"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"
    INT8_STATIC = "int8-static"


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
GATES[Precision.INT8_STATIC] = GATES[Precision.INT8_DYNAMIC]


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
