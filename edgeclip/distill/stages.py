"""Multi-stage plans: cut at most ~50% of the vision parameters per stage (TinyCLIP's progressive shrinking)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from ..limits import STAGES
from ..models.params import config_params, parse_budget, student_config

MAX_CUT = 0.5


@dataclass(frozen=True)
class Stage:
    index: int
    target_vision: int
    cfg: dict
    vision: int
    text: int

    def describe(self) -> str:
        v, t = self.cfg["vision_cfg"], self.cfg["text_cfg"]
        return (f"stage {self.index}: vision {self.vision / 1e6:.2f}M (layers {v['layers']}, width {v['width']}), "
                f"text {self.text / 1e6:.2f}M (layers {t['layers']}, width {t['width']})")


def plan_stages(teacher_cfg: dict, target, stages: int | str = "auto", shape: str = "auto") -> list[Stage]:
    """Geometric plan from the teacher to ``target``; ``stages="auto"`` keeps every cut at or below ~50%.

    The final student is solved first, directly from the teacher (``ConfigError`` naming the nearest sizes if
    the target is infeasible); intermediate stages take the nearest size that still contains it (at least as
    deep and as wide), so the plan can always be chained and ends exactly at the one-stage student. ``shape``:
    which student of the budget (``models.params.student_config``).
    """
    tv, tt = config_params(teacher_cfg)
    budget = parse_budget(target, (tv, tt))
    frac = budget.image / tv
    if stages != "auto" and not STAGES.holds(stages):
        raise ConfigError(f"stages must be 'auto' or {STAGES.describe()}, got {stages!r}")
    final = student_config(teacher_cfg, budget, shape=shape)
    n = max(1, math.ceil(math.log(frac) / math.log(1 - MAX_CUT) - 0.1)) if stages == "auto" else stages
    plan, prev = [], teacher_cfg
    for k in range(1, n + 1):  # each stage is solved inside the previous one, so inheritance can chain
        tgt = round(tv * frac ** (k / n))
        text = None if budget.text is None else round(tt * (budget.text / tt) ** (k / n))
        cfg = final if k == n else student_config(prev, {"image": tgt, **({"text": text} if text else {})},
                                                  strict=False, floor=final, shape=shape)
        v, t = config_params(cfg)
        plan.append(Stage(k, tgt, cfg, v, t))
        prev = cfg
    return plan
