"""Manual weight inheritance (TinyCLIP): keep chosen layers, and leading (or largest) channels, heads, MLP units.

Depth: ``interval`` keeps layers 0, s, 2s, ... with s = floor(L_t / L_s) (TinyCLIP); ``uniform`` keeps
round(linspace(0, L_t - 1, L_s)) (first and last). Width: ``leading`` slices the first channels/heads/units
(TinyCLIP); ``magnitude`` ranks them by weight norm. One hidden-channel index set per tower is applied to every
tensor that touches its residual stream, so the student computes a consistent sub-network.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InheritError
from ..models.towers import text_cfg, vision_cfg
from .mapping import Plan

DEPTH_RULES = ("interval", "uniform")
WIDTH_RULES = ("leading", "magnitude")
_LN = ("weight", "bias")


def select_layers(n_teacher: int, n_student: int, rule: str = "interval") -> list[int]:
    if n_student > n_teacher:
        raise InheritError(f"student has {n_student} layers, teacher only {n_teacher}")
    if rule == "interval":
        s = n_teacher // n_student
        return [i * s for i in range(n_student)]
    if rule == "uniform":
        return [int(round(x)) for x in np.linspace(0, n_teacher - 1, n_student)]
    raise InheritError(f"unknown depth rule {rule!r}; choose from {DEPTH_RULES}")


def _top(scores: torch.Tensor, k: int, rule: str) -> torch.Tensor:
    if rule == "leading":
        return torch.arange(k)
    if rule == "magnitude":
        return scores.topk(k).indices.sort().values
    raise InheritError(f"unknown width rule {rule!r}; choose from {WIDTH_RULES}")


def _head_dims(heads: torch.Tensor, hw: int) -> torch.Tensor:
    """Head indices -> channel indices inside one of q/k/v (each head owns hw consecutive channels)."""
    return (heads[:, None] * hw + torch.arange(hw)[None]).reshape(-1)


def _tower_keys(prefix: str, sd: dict, layers: int):
    return [f"{prefix}transformer.resblocks.{i}." for i in range(layers)]


def _hidden_scores(sd: dict, blocks: list[str], emb_keys: list[tuple[str, int]]) -> torch.Tensor:
    """Importance of each residual channel: norms of every weight reading or writing it."""
    s = sum(sd[k].float().pow(2).sum(dim=tuple(i for i in range(sd[k].ndim) if i != d)) for k, d in emb_keys)
    for b in blocks:
        s = s + sd[b + "attn.in_proj_weight"].float().pow(2).sum(0) + sd[b + "attn.out_proj.weight"].float().pow(2).sum(1)
        s = s + sd[b + "mlp.c_fc.weight"].float().pow(2).sum(0) + sd[b + "mlp.c_proj.weight"].float().pow(2).sum(1)
    return s


def _plan_blocks(plan: Plan, sd: dict, s_blocks: list[str], t_blocks: list[str], hid: torch.Tensor,
                 heads: int, hw: int, mlp: int, rule: str) -> None:
    w_t = sd[t_blocks[0] + "attn.out_proj.weight"].shape[0]
    for sb, tb in zip(s_blocks, t_blocks):
        qkv = sd[tb + "attn.in_proj_weight"].float()
        head_score = qkv.view(3, w_t // hw, hw, -1).pow(2).sum((0, 2, 3)) + \
            sd[tb + "attn.out_proj.weight"].float().view(w_t, w_t // hw, hw).pow(2).sum((0, 2))
        hd = _head_dims(_top(head_score, heads, rule), hw)
        qkv_rows = torch.cat([hd + j * w_t for j in range(3)])
        mlp_score = sd[tb + "mlp.c_fc.weight"].float().pow(2).sum(1) + sd[tb + "mlp.c_proj.weight"].float().pow(2).sum(0)
        units = _top(mlp_score, mlp, rule)
        for p in _LN:
            plan.add(sb + f"ln_1.{p}", tb + f"ln_1.{p}", d0=hid)
            plan.add(sb + f"ln_2.{p}", tb + f"ln_2.{p}", d0=hid)
        plan.add(sb + "attn.in_proj_weight", tb + "attn.in_proj_weight", d0=qkv_rows, d1=hid)
        plan.add(sb + "attn.in_proj_bias", tb + "attn.in_proj_bias", d0=qkv_rows)
        plan.add(sb + "attn.out_proj.weight", tb + "attn.out_proj.weight", d0=hid, d1=hd)
        plan.add(sb + "attn.out_proj.bias", tb + "attn.out_proj.bias", d0=hid)
        plan.add(sb + "mlp.c_fc.weight", tb + "mlp.c_fc.weight", d0=units, d1=hid)
        plan.add(sb + "mlp.c_fc.bias", tb + "mlp.c_fc.bias", d0=units)
        plan.add(sb + "mlp.c_proj.weight", tb + "mlp.c_proj.weight", d0=hid, d1=units)
        plan.add(sb + "mlp.c_proj.bias", tb + "mlp.c_proj.bias", d0=hid)


def manual_plan(teacher_sd: dict, t_cfg: dict, s_cfg: dict, depth: str = "interval", width: str = "leading") -> Plan:
    """Build the transplant plan for both towers (see module docstring)."""
    sd, plan = teacher_sd, Plan()
    tv, sv, tt, st = vision_cfg(t_cfg), vision_cfg(s_cfg), text_cfg(t_cfg), text_cfg(s_cfg)
    for k, a, b in (("patch_size", tv.patch_size, sv.patch_size), ("image_size", tv.size, sv.size)):
        if a != b:
            raise InheritError(f"vision {k} differs (teacher {a}, student {b}); keep the teacher's")
    if st.context_length > tt.context_length or st.vocab_size != tt.vocab_size:
        raise InheritError("student text context/vocab must not exceed the teacher's")
    e = torch.arange(s_cfg["embed_dim"])  # leading embedding dims (all of them when unchanged)
    if s_cfg["embed_dim"] > t_cfg["embed_dim"]:
        raise InheritError(f"student embed_dim {s_cfg['embed_dim']} exceeds the teacher's {t_cfg['embed_dim']}")
    # --- vision tower
    t_blocks = _tower_keys("visual.", sd, tv.layers)
    keep = select_layers(tv.layers, sv.layers, depth)
    plan.layers["vision"] = keep
    if sv.head_width != tv.head_width:
        raise InheritError(f"vision head width differs (teacher {tv.head_width}, student {sv.head_width})")
    v_emb = [("visual.conv1.weight", 0), ("visual.class_embedding", 0), ("visual.positional_embedding", 1),
             ("visual.proj", 0)]
    hid = _top(_hidden_scores(sd, [t_blocks[i] for i in keep], v_emb), sv.width, width)
    plan.add("visual.conv1.weight", "visual.conv1.weight", d0=hid)
    plan.add("visual.class_embedding", "visual.class_embedding", d0=hid)
    plan.add("visual.positional_embedding", "visual.positional_embedding", d1=hid)
    for ln in ("ln_pre", "ln_post"):
        for p in _LN:
            plan.add(f"visual.{ln}.{p}", f"visual.{ln}.{p}", d0=hid)
    plan.add("visual.proj", "visual.proj", d0=hid, d1=e)
    _plan_blocks(plan, sd, _tower_keys("visual.", sd, sv.layers), [t_blocks[i] for i in keep], hid,
                 sv.heads, sv.head_width, sv.mlp_width, width)
    # --- text tower
    t_blocks = _tower_keys("", sd, tt.layers)
    keep = select_layers(tt.layers, st.layers, depth)
    plan.layers["text"] = keep
    if st.head_width != tt.head_width:
        raise InheritError(f"text head width differs (teacher {tt.head_width}, student {st.head_width})")
    t_emb = [("token_embedding.weight", 1), ("positional_embedding", 1), ("text_projection", 0)]
    hid = _top(_hidden_scores(sd, [t_blocks[i] for i in keep], t_emb), st.width, width)
    ctx = torch.arange(st.context_length)
    plan.add("token_embedding.weight", "token_embedding.weight", d1=hid)
    plan.add("positional_embedding", "positional_embedding", d0=ctx, d1=hid)
    for p in _LN:
        plan.add(f"ln_final.{p}", f"ln_final.{p}", d0=hid)
    plan.add("text_projection", "text_projection", d0=hid, d1=e)
    plan.add("logit_scale", "logit_scale")
    _plan_blocks(plan, sd, _tower_keys("", sd, st.layers), [t_blocks[i] for i in keep], hid,
                 st.heads, st.head_width, st.mlp_width, width)
    return plan
