"""Non-uniform students: per-layer head and MLP-unit counts, as left by auto pruning with ``tie_layers=False``.

The config is a standard open_clip config plus ``edgeclip_layers = {"vision": [{"heads": h, "mlp": m}, ...],
"text": [...]}`` (one entry per layer). The model is open_clip's ``CLIP`` built from the standard part, with
each block's attention and MLP swapped for modules of the exact per-layer size. State-dict keys and the
forward contract are open_clip's, so edgeclip's loaders, distillation and ONNX export work unchanged; plain
open_clip cannot build these (its blocks are uniform), and there is no HF ``CLIPModel`` equivalent.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .params import head_width

KEY = "edgeclip_layers"
TOWERS = {"vision": "vision_cfg", "text": "text_cfg"}


class PrunedAttention(torch.nn.Module):
    """Multi-head self-attention with ``heads x head_width`` inner dims decoupled from the residual width.

    Same parameter names as ``nn.MultiheadAttention`` (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) and
    the same call signature as open_clip uses it (batch first, returns ``(out, None)``).
    """

    def __init__(self, width: int, heads: int, head_width: int):
        super().__init__()
        self.heads, self.head_width = heads, head_width
        inner = heads * head_width
        self.in_proj_weight = torch.nn.Parameter(torch.empty(3 * inner, width))
        self.in_proj_bias = torch.nn.Parameter(torch.zeros(3 * inner))
        self.out_proj = torch.nn.Linear(inner, width)
        torch.nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, q_x, k_x=None, v_x=None, need_weights: bool = False, attn_mask=None):
        B, N, _ = q_x.shape
        qkv = F.linear(q_x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(B, N, 3, self.heads, self.head_width).permute(2, 0, 3, 1, 4)  # 3 x [B, H, N, hw]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(o.transpose(1, 2).reshape(B, N, -1)), None


def check_layers(cfg: dict) -> dict:
    """Validate ``cfg[KEY]``: one ``{"heads", "mlp"}`` entry of positive ints per layer of each tower."""
    spec = cfg[KEY]
    if not isinstance(spec, dict) or set(spec) - set(TOWERS):
        raise ConfigError(f"{KEY} must map 'vision'/'text' to per-layer lists, got {spec!r:.80}")
    for tower, layers in spec.items():
        n = cfg[TOWERS[tower]]["layers"]
        if not isinstance(layers, list) or len(layers) != n:
            raise ConfigError(f"{KEY}[{tower!r}] needs one entry per layer ({n})")
        for i, e in enumerate(layers):
            ok = isinstance(e, dict) and set(e) == {"heads", "mlp"} and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in e.values())
            if not ok:
                raise ConfigError(f"{KEY}[{tower!r}][{i}] must be {{'heads': int >= 1, 'mlp': int >= 1}}, got {e!r}")
    return spec


def apply_layers(clip, cfg: dict) -> None:
    """Swap each block's attention and MLP for modules of the per-layer sizes in ``cfg[KEY]`` (in place)."""
    for tower, layers in check_layers(cfg).items():
        blocks = (clip.visual.transformer if tower == "vision" else clip.transformer).resblocks
        hw, width = head_width(cfg[TOWERS[tower]], tower), cfg[TOWERS[tower]]["width"]
        for blk, e in zip(blocks, layers):
            blk.attn = PrunedAttention(width, e["heads"], hw)
            blk.mlp.c_fc = torch.nn.Linear(width, e["mlp"])
            blk.mlp.c_proj = torch.nn.Linear(e["mlp"], width)

