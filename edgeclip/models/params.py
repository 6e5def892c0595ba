"""Parameter budgets the TinyCLIP way: "8M" is the vision tower; text counts exclude the token embedding.

``student_config`` solves for the student architecture (layers, width in whole heads, MLP ratio kept) that
meets a budget within +-5%, preferring depth (TinyCLIP's ViT-B/16 -> 8M keeps 10 of 12 layers, width 768 -> 256).
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass

from ..errors import ConfigError
from .towers import TextCfg, VisionCfg, tower_cfg

TOLERANCE = 0.05
STUDENT_SHAPES = ("auto", "deep", "wide", "balanced")  # which student of the budget the solver picks (see _preference)
MIN_DEPTH = 0.25  # "auto" cuts layers (keeps width) only down to this fraction of the teacher's depth
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}


@dataclass(frozen=True)
class ParamCount:
    vision: int
    text: int  # text tower incl. positional embedding, final LN, projection and logit scale; excl. token embedding
    token_embedding: int
    total: int

    def table(self) -> str:
        rows = [("vision", self.vision), ("text (excl. token embedding)", self.text),
                ("token embedding", self.token_embedding), ("total", self.total)]
        return "\n".join(f"{k:<30} {v:>14,} {_human(v):>8}" for k, v in rows)


@dataclass(frozen=True)
class Budget:
    image: int
    text: int | None = None  # None: shrink the text tower by the image fraction


def _human(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def count_params(model) -> ParamCount:
    """Vision / text (excl. token embedding) / token embedding / total parameter counts of a canonical CLIP."""
    vision = sum(p.numel() for p in model.visual.parameters())
    tok = model.token_embedding.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    return ParamCount(vision=vision, text=total - vision - tok, token_embedding=tok, total=total)


_HINT = "use e.g. '8M', '500k', '25%', 8000000 or '{\"image\": \"8M\", \"text\": \"3M\"}'"
_AMOUNT = re.compile(r"\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGbB%]?)\s*")


def _amount(v) -> int | float:
    """One budget value: an absolute count (int) or a fraction of the teacher's tower (float in (0, 1))."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ConfigError(f"bad parameter budget {v!r}; {_HINT}")
    m = _AMOUNT.fullmatch(v) if isinstance(v, str) else None
    if isinstance(v, str) and not m:
        raise ConfigError(f"bad parameter budget {v!r}; {_HINT}")
    x = float(m.group(1)) if m else float(v)
    if not math.isfinite(x) or x <= 0:
        raise ConfigError(f"parameter budget must be a positive number, got {v!r}; {_HINT}")
    if m and m.group(2) == "%":
        if x >= 100:
            raise ConfigError(f"a relative budget must be below 100% of the teacher, got {v!r}")
        return x / 100
    n = round(x * _UNITS[m.group(2).lower()]) if m else round(x)
    if n <= 0:
        raise ConfigError(f"parameter budget must be at least 1 parameter, got {v!r}")
    return n


def budget_spec(target) -> dict:
    """Check a budget's syntax without the teacher: ``{"image": amount, "text": amount | None}``.

    Accepts everything ``parse_budget`` does, JSON strings of dicts included (as the CLI passes them); an
    amount is an int (parameters) or a float fraction (from ``"25%"``). Raises ``ConfigError`` in one line.
    """
    if isinstance(target, Budget):
        return {"image": target.image, "text": target.text}
    if isinstance(target, str) and target.strip().startswith("{"):
        def no_constants(c):
            raise ConfigError(f"bad parameter budget {target!r}: {c} is not a size; {_HINT}")
        try:
            target = json.loads(target, parse_constant=no_constants)
        except json.JSONDecodeError as e:
            raise ConfigError(f"bad parameter budget {target!r}: not valid JSON ({e.msg} at column {e.colno}); "
                              "quote the sizes, e.g. '{\"image\": \"8M\", \"text\": \"3M\"}'") from None
    if isinstance(target, dict):
        unknown = set(target) - {"image", "vision", "text"}
        if unknown or not ({"image", "vision"} & set(target)) or {"image", "vision"} <= set(target):
            raise ConfigError(f"budget dict needs 'image' (and optionally 'text'), got keys {sorted(target)}")
        img = target.get("image", target.get("vision"))
        return {"image": _amount(img), "text": _amount(target["text"]) if target.get("text") is not None else None}
    return {"image": _amount(target), "text": None}


def parse_budget(target, teacher: tuple[int, int] | None = None) -> Budget:
    """``"8M"`` | ``"500k"`` | ``8_000_000`` | ``"25%"`` | ``{"image": "25%", "text": "3M"}`` (or its JSON) -->
    ``Budget``.

    Args:
        target: the budget; a bare value sets the vision tower (the text tower then shrinks by the same fraction).
        teacher: the teacher's (vision, text excl. token embedding) counts (``config_params``); needed for
            ``"%"`` values, and when given the budget must be below the teacher.

    Raises:
        ConfigError: malformed, non-positive, non-finite, relative without a teacher, or not below the teacher.
    """
    spec = budget_spec(target)
    out = {}
    for i, tower in enumerate(("image", "text")):
        a = spec[tower]
        if isinstance(a, float):
            if teacher is None:
                raise ConfigError(f"budget {target!r} is relative to the teacher; pass the teacher's parameter counts")
            a = max(1, round(teacher[i] * a))
        out[tower] = a
    budget = Budget(out["image"], out["text"])
    if teacher is not None:
        tv, tt = teacher
        if budget.image >= tv:
            raise ConfigError(f"target {_human(budget.image)} is not below the teacher's vision tower ({_human(tv)})")
        if budget.text is not None and budget.text > tt:
            raise ConfigError(f"text target {_human(budget.text)} exceeds the teacher's text tower ({_human(tt)})")
    return budget


def block_params(width: int, inner: int, mlp: int) -> int:
    """One residual block: ln_1, qkv (``inner`` = heads x head width), out-proj, ln_2, c_fc, c_proj."""
    return 4 * width * inner + 3 * inner + 2 * width * mlp + mlp + 6 * width


def _tower_params(layers: int, width: int, mlp: int, extra_per_width: int, fixed: int) -> int:
    return layers * block_params(width, width, mlp) + extra_per_width * width + fixed


def per_width_params(tower: dict, kind: str, embed_dim: int) -> int:
    """Parameters outside the blocks per unit of residual width (they scale with it), for ``kind`` "vision"
    (patch conv, class token, positional embedding, ln_pre + ln_post, projection) or "text" (positional
    embedding, ln_final, projection); the text tower's logit scale is the one fixed parameter on top."""
    if kind == "vision":
        v = VisionCfg.of(tower)
        return 3 * v.patch_size ** 2 + 1 + (v.grid ** 2 + 1) + 4 + embed_dim
    return TextCfg.of(tower).context_length + 2 + embed_dim


def vision_params(v: dict, embed_dim: int) -> int:
    """Analytic count of open_clip's standard ViT tower (checked against built models in the tests)."""
    c = VisionCfg.of(v)
    return _tower_params(c.layers, c.width, c.mlp_width, per_width_params(v, "vision", embed_dim), 0)


def text_params(t: dict, embed_dim: int) -> int:
    """Analytic count of open_clip's text tower, token embedding excluded (logit scale included)."""
    c = TextCfg.of(t)
    return _tower_params(c.layers, c.width, c.mlp_width, per_width_params(t, "text", embed_dim), 1)


def head_width(tower: dict, kind: str) -> int:
    """Per-head width of a ``vision_cfg`` / ``text_cfg`` (open_clip's defaults when not given)."""
    return tower_cfg(tower, kind).head_width


def _candidates(tower: dict, kind: str, embed_dim: int, floor: dict | None = None):
    t = tower_cfg(tower, kind)
    hw = t.head_width
    count = vision_params if kind == "vision" else text_params
    min_layers, min_width = (floor["layers"], floor["width"]) if floor else (1, 1)
    for layers in range(min_layers, t.layers + 1):
        for heads in range(max(1, -(-min_width // hw)), t.width // hw + 1):
            c = dict(tower, layers=layers, width=heads * hw)
            if kind == "text":
                c["heads"] = heads
            yield count(c, embed_dim), c


def check_shape(shape: str) -> str:
    if shape not in STUDENT_SHAPES:
        raise ConfigError(f"unknown student shape {shape!r}; choose {', '.join(STUDENT_SHAPES)}")
    return shape


def _preference(tower: dict, target: int, shape: str):
    """Sort key (largest wins) among the towers within tolerance: ``deep`` keeps the teacher's depth and cuts
    width (TinyCLIP's choice), ``wide`` keeps width and cuts layers, ``balanced`` cuts both by the same factor;
    ``auto`` is ``wide`` among towers keeping >= ``MIN_DEPTH`` of the teacher's layers, else ``deep``
    (benchmarks/student_shape.py on the reference teacher: at 25% a 3-layer full-width student kept more than
    the 12-layer narrow one, at 10% a 1-layer one kept far less than 10 narrow layers). Ties go to the closest
    parameter count."""
    def key(c):
        n, cfg = c
        if shape == "auto":
            deep_enough = cfg["layers"] >= MIN_DEPTH * tower["layers"]
            first = (deep_enough, cfg["width"] if deep_enough else cfg["layers"])
        elif shape == "deep":
            first = cfg["layers"]
        elif shape == "wide":
            first = cfg["width"]
        else:
            first = -abs(math.log(cfg["layers"] / tower["layers"]) - math.log(cfg["width"] / tower["width"]))
        return first, -abs(n - target)
    return key


def _solve(tower: dict, kind: str, embed_dim: int, target: int, strict: bool, floor: dict | None = None,
           shape: str = "auto") -> dict:
    cands = sorted(_candidates(tower, kind, embed_dim, floor), key=lambda x: x[0])
    ok = [c for c in cands if abs(c[0] - target) <= TOLERANCE * target]
    if ok:
        return max(ok, key=_preference(tower, target, shape))[1]
    below = [c for c in cands if c[0] < target]
    above = [c for c in cands if c[0] > target]
    near = [below[-1]] if below else []
    near += [above[0]] if above else []
    if strict or not near:
        sizes = ", ".join(f"{_human(n)} (layers={c['layers']}, width={c['width']})" for n, c in near)
        raise ConfigError(f"no {kind} tower within +-{TOLERANCE:.0%} of {_human(target)}; nearest feasible: {sizes}")
    return min(near, key=lambda c: abs(c[0] - target))[1]


def student_config(teacher_cfg: dict, target, strict: bool = True, floor: dict | None = None,
                   shape: str = "auto") -> dict:
    """Smaller config of the teacher's family meeting ``target`` (see ``parse_budget``) within +-5%.

    ``strict=False`` takes the nearest feasible size instead of failing (intermediate stages of a plan);
    ``floor`` (a config) keeps every tower at least as deep and wide as it, so that config stays reachable;
    ``shape`` picks among the sizes that fit: ``deep``, ``wide`` or ``balanced`` (``_preference``).

    Raises:
        ConfigError: target >= teacher, or no architecture within tolerance (names the nearest sizes).
    """
    e = teacher_cfg["embed_dim"]
    tv, tt = config_params(teacher_cfg)
    budget = parse_budget(target, (tv, tt))
    cfg = copy.deepcopy(teacher_cfg)
    cfg.pop("edgeclip_layers", None)
    fv, ft = (floor["vision_cfg"], floor["text_cfg"]) if floor else (None, None)
    check_shape(shape)
    cfg["vision_cfg"] = _solve(teacher_cfg["vision_cfg"], "vision", e, budget.image, strict=strict, floor=fv,
                               shape=shape)
    if budget.text is None:
        cfg["text_cfg"] = _solve(teacher_cfg["text_cfg"], "text", e, round(tt * budget.image / tv), strict=False,
                                 floor=ft, shape=shape)
    elif budget.text < tt:
        cfg["text_cfg"] = _solve(teacher_cfg["text_cfg"], "text", e, budget.text, strict=strict, floor=ft,
                                 shape=shape)
    return cfg


def config_params(cfg: dict) -> tuple[int, int]:
    """(vision, text excl. token embedding) of a config, without building it (per-layer sizes included)."""
    counts = []
    for kind, count in (("vision", vision_params), ("text", text_params)):
        tower = cfg[f"{kind}_cfg"]
        per_layer = (cfg.get("edgeclip_layers") or {}).get(kind)
        if per_layer is None:
            counts.append(count(tower, cfg["embed_dim"]))
        else:  # blocks of their own sizes on top of the tower without blocks
            hw, w = head_width(tower, kind), tower["width"]
            counts.append(count({**tower, "layers": 0}, cfg["embed_dim"])
                          + sum(block_params(w, e["heads"] * hw, e["mlp"]) for e in per_layer))
    return counts[0], counts[1]
