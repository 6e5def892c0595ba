"""Automatic weight inheritance (TinyCLIP / CoFi): learn hard-concrete L0 masks under a Lagrangian sparsity
target, then fuse the deterministic masks into a dense, standard open_clip model. (The prune-phase training
loop lives in ``edgeclip.distill.prune``, beside the other training code.)

Masks per tower: the shared hidden (residual) dimension, heads and MLP units (per layer, or shared across
layers with ``tie_layers=True``). The hidden mask scales every write into the residual stream (``ln_pre`` /
embeddings, attention ``out_proj``, MLP ``c_proj``); LayerNorms take their statistics over the kept channels
only, so dropping the masked channels changes nothing. Head and MLP-unit masks scale activations right before
the next linear layer, where ``fuse`` folds their values. With ``tie_layers=True`` the fused config is
uniform (the same head and MLP counts in every layer, width = heads x head width), so plain open_clip loads
it; with ``tie_layers=False`` each layer keeps its own head and MLP counts and the result is saved with
those exact shapes (``edgeclip.models.nonuniform``; loads through edgeclip). The MLP units are solved so
the fused tower meets the target within +-1%.
Paper: https://arxiv.org/abs/2309.12314 (TinyCLIP), https://arxiv.org/abs/2204.00408 (CoFi).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from ..errors import InheritError
from ..models.factory import create_model, model_config
from ..models.nonuniform import KEY
from ..models.params import block_params, config_params, parse_budget, per_width_params, text_params, vision_params
from ..models.towers import TextCfg, VisionCfg

L, R, BETA, EPS = -0.1, 1.1, 2 / 3, 1e-6


class HardConcrete(torch.nn.Module):
    """A vector of hard-concrete gates (Louizos et al. 2018): l=-0.1, r=1.1, beta=2/3, log-alpha init 10."""

    def __init__(self, *shape: int, init: float = 10.0):
        super().__init__()
        self.log_alpha = torch.nn.Parameter(torch.full(shape, init))

    def forward(self) -> torch.Tensor:
        if self.training:
            u = torch.rand_like(self.log_alpha).clamp(EPS, 1 - EPS)
            s = torch.sigmoid((u.log() - (1 - u).log() + self.log_alpha) / BETA)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (R - L) + L).clamp(0, 1)

    def prob_nonzero(self) -> torch.Tensor:
        return torch.sigmoid(self.log_alpha - BETA * math.log(-L / R))

    def clamp_(self) -> None:
        with torch.no_grad():
            self.log_alpha.clamp_(-10, 10)


def _tower_dims(cfg: dict, tower: str) -> tuple[int, int, int, int]:
    """(layers, width, head width, mlp units) of a tower config."""
    t = VisionCfg.of(cfg["vision_cfg"]) if tower == "vision" else TextCfg.of(cfg["text_cfg"])
    return t.layers, t.width, t.head_width, t.mlp_width


class TowerMasks(torch.nn.Module):
    def __init__(self, cfg: dict, tower: str, tie_layers: bool):
        super().__init__()
        self.tower, self.cfg, self.tie = tower, cfg, tie_layers
        self.layers, self.width, self.hw, self.mlp = _tower_dims(cfg, tower)
        n = 1 if tie_layers else self.layers
        self.hidden = HardConcrete(self.width)
        self.heads = HardConcrete(n, self.width // self.hw)
        self.units = HardConcrete(n, self.mlp)
        self.fixed: dict | None = None  # deterministic masks once fixed

    def sample(self) -> dict[str, torch.Tensor]:
        if self.fixed is not None:
            return self.fixed
        h, a, m = self.hidden(), self.heads(), self.units()
        return {"hidden": h, "heads": a.expand(self.layers, -1), "units": m.expand(self.layers, -1)}

    def expected_params(self) -> torch.Tensor:
        """Differentiable expected parameter count of the tower (embeddings and projections included)."""
        w = self.hidden.prob_nonzero().sum()
        heads = self.heads.prob_nonzero().sum(-1).expand(self.layers)
        units = self.units.prob_nonzero().sum(-1).expand(self.layers)
        inner = heads * self.hw
        blocks = block_params(w, inner, units).sum()  # the count of models.params, on expected sizes
        return blocks + w * per_width_params(self._base(), self.tower, self.cfg["embed_dim"]) + self._fixed_params()

    def _fixed_params(self) -> int:
        return 0 if self.tower == "vision" else 1

    def fix(self, target: int) -> tuple[dict, list[dict] | None]:
        """Deterministic masks meeting ``target`` params, kept in ``self.fixed``.

        Width comes from the hidden gates (whole heads). Tied masks give a uniform tower: the width's head
        count in every layer, the MLP count solved for the target, top-k by log-alpha. Untied masks keep
        round(expected) heads per layer (>= 1) and spend the rest of the target on the globally
        highest-scoring MLP units (>= 1 per layer). Returns the tower config and the per-layer sizes (``None``
        when uniform).
        """
        with torch.no_grad():
            w_exp = self.hidden.prob_nonzero().sum().item()
            n_heads = max(1, min(self.width // self.hw, round(w_exp / self.hw)))
            by_gate = sorted(range(1, self.width // self.hw + 1), key=lambda k: (abs(k - n_heads), -k))
            for h in by_gate:  # the width the gates suggest first, then the nearest widths
                heads, units = self._budget(h, target)
                if units is not None:
                    break
            else:
                raise InheritError(f"auto pruning cannot reach {target:,} {self.tower} params")
            w = h * self.hw
            keep_w = self.hidden.log_alpha.topk(w).indices.sort().values
            hid = torch.zeros(self.width)
            hid[keep_w] = _gate_value(self.hidden.log_alpha[keep_w])
            la_h = self.heads.log_alpha.expand(self.layers, -1)
            la_m = self.units.log_alpha.expand(self.layers, -1)
            head_m = torch.zeros(self.layers, self.width // self.hw)
            unit_m = torch.zeros(self.layers, self.mlp)
            for i, k in enumerate(heads):
                idx = la_h[i].topk(k).indices
                head_m[i, idx] = _gate_value(la_h[i, idx])
            for i, u in enumerate(units):
                idx = la_m[i].topk(u).indices
                unit_m[i, idx] = _gate_value(la_m[i, idx])
        self.fixed = {"hidden": hid, "heads": head_m, "units": unit_m}
        tower_cfg = {**self._base(), "width": w, "mlp_ratio": (max(units) + 0.5) / w}
        if self.tower == "text":
            tower_cfg["heads"] = h
        uniform = len(set(heads)) == 1 and len(set(units)) == 1 and heads[0] == h
        return tower_cfg, None if uniform else [{"heads": k, "mlp": u} for k, u in zip(heads, units)]

    def _base(self) -> dict:
        return dict(self.cfg["vision_cfg" if self.tower == "vision" else "text_cfg"])

    def _budget(self, h: int, target: int) -> tuple[list[int], list[int] | None]:
        """Per-layer head and MLP-unit counts at width ``h`` heads meeting ``target`` (units ``None`` if not)."""
        w = h * self.hw
        count = vision_params if self.tower == "vision" else text_params
        no_blocks = count({**self._base(), "width": w, "layers": 0}, self.cfg["embed_dim"])
        if self.tie:
            heads = [h] * self.layers
        else:
            exp = self.heads.prob_nonzero().sum(-1).round().long().clamp(1, self.width // self.hw)
            heads = exp.tolist()
        attn = sum(block_params(w, k * self.hw, 0) for k in heads)
        total = round((target - no_blocks - attn) / (2 * w + 1))
        if not self.layers <= total <= self.layers * self.mlp:
            return heads, None
        if self.tie:
            return heads, [min(self.mlp, round(total / self.layers))] * self.layers
        la = self.units.log_alpha.detach()
        chosen = torch.zeros_like(la, dtype=torch.bool)
        chosen[torch.arange(self.layers), la.argmax(-1)] = True  # every layer keeps at least one unit
        rest = la.masked_fill(chosen, float("-inf")).flatten().topk(total - self.layers).indices
        chosen.view(-1)[rest] = True
        return heads, chosen.sum(-1).tolist()


def _gate_value(log_alpha: torch.Tensor) -> torch.Tensor:
    """Deterministic gate value of kept entries (never exactly 0, so a kept entry stays kept)."""
    return (torch.sigmoid(log_alpha) * (R - L) + L).clamp(1e-3, 1)


def _masked_ln(x: torch.Tensor, ln: torch.nn.LayerNorm, keep: torch.Tensor) -> torch.Tensor:
    """LayerNorm whose statistics use only the channels with ``keep`` > 0; other channels come out 0."""
    k = (keep > 0).to(x.dtype)
    n = k.sum()
    mean = (x * k).sum(-1, keepdim=True) / n
    var = (((x - mean) * k) ** 2).sum(-1, keepdim=True) / n
    return ((x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias) * k


def _blocks(x, resblocks, m, hw, attn_mask=None):
    for i, blk in enumerate(resblocks):
        B, N, W = x.shape
        h = _masked_ln(x, blk.ln_1, m["hidden"])
        qkv = F.linear(h, blk.attn.in_proj_weight, blk.attn.in_proj_bias)  # [B, N, 3W]
        q, k, v = qkv.view(B, N, 3, W // hw, hw).permute(2, 0, 3, 1, 4)  # 3 x [B, H, N, hw]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, H, N, hw]
        o = (o * m["heads"][i].view(1, -1, 1, 1)).transpose(1, 2).reshape(B, N, W)
        x = x + blk.attn.out_proj(o) * m["hidden"]
        h = blk.mlp.gelu(blk.mlp.c_fc(_masked_ln(x, blk.ln_2, m["hidden"]))) * m["units"][i]
        x = x + blk.mlp.c_proj(h) * m["hidden"]
    return x


class MaskedCLIP(torch.nn.Module):
    """A canonical CLIP whose forward applies L0 masks; ``encode_image`` / ``encode_text`` like open_clip."""

    def __init__(self, clip, tie_layers: bool = True):
        super().__init__()
        self.clip, self.cfg = clip, model_config(clip)
        if self.cfg.get(KEY):
            raise InheritError("cannot prune a model with per-layer sizes again; prune its uniform parent")
        self.masks = torch.nn.ModuleDict({t: TowerMasks(self.cfg, t, tie_layers) for t in ("vision", "text")})

    def encode_image(self, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        v, m = self.clip.visual, self.masks["vision"].sample()
        x = v.conv1(x).flatten(2).transpose(1, 2)  # [B, grid^2, W]
        x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), x], 1) + v.positional_embedding
        x = _masked_ln(x, v.ln_pre, m["hidden"]) * m["hidden"]
        x = _blocks(x, v.transformer.resblocks, m, self.masks["vision"].hw)
        x = _masked_ln(x, v.ln_post, m["hidden"])[:, 0] @ v.proj
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        c, m = self.clip, self.masks["text"].sample()
        x = (c.token_embedding(ids) + c.positional_embedding) * m["hidden"]
        x = _blocks(x, c.transformer.resblocks, m, self.masks["text"].hw, attn_mask=c.attn_mask)
        x = _masked_ln(x, c.ln_final, m["hidden"])
        x = x[torch.arange(x.shape[0]), ids.argmax(-1)] @ c.text_projection
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, image, text):
        return self.encode_image(image, True), self.encode_text(text, True), None

    def expected_params(self) -> dict[str, torch.Tensor]:
        return {t: m.expected_params() for t, m in self.masks.items()}


def _fold_tower(sd: dict, blocks: str, m: dict, hw: int, tower: str) -> dict:
    """Slice kept channels/heads/units and fold the mask values into the following (or writing) layers."""
    keep = m["hidden"].nonzero().squeeze(1)
    s = m["hidden"][keep]
    out = {}
    n_layers = m["heads"].shape[0]
    for i in range(n_layers):
        b = f"{blocks}.{i}."
        heads = m["heads"][i].nonzero().squeeze(1)
        dims = (heads[:, None] * hw + torch.arange(hw)).reshape(-1)
        W = sd[b + "attn.out_proj.weight"].shape[0]
        rows = torch.cat([dims + j * W for j in range(3)])
        units = m["units"][i].nonzero().squeeze(1)
        head_val = m["heads"][i][heads].repeat_interleave(hw)
        for ln in ("ln_1", "ln_2"):
            out[b + f"{ln}.weight"], out[b + f"{ln}.bias"] = sd[b + f"{ln}.weight"][keep], sd[b + f"{ln}.bias"][keep]
        out[b + "attn.in_proj_weight"] = sd[b + "attn.in_proj_weight"][rows][:, keep]
        out[b + "attn.in_proj_bias"] = sd[b + "attn.in_proj_bias"][rows]
        out[b + "attn.out_proj.weight"] = sd[b + "attn.out_proj.weight"][keep][:, dims] * head_val * s[:, None]
        out[b + "attn.out_proj.bias"] = sd[b + "attn.out_proj.bias"][keep] * s
        out[b + "mlp.c_fc.weight"] = sd[b + "mlp.c_fc.weight"][units][:, keep]
        out[b + "mlp.c_fc.bias"] = sd[b + "mlp.c_fc.bias"][units]
        out[b + "mlp.c_proj.weight"] = sd[b + "mlp.c_proj.weight"][keep][:, units] * m["units"][i][units] * s[:, None]
        out[b + "mlp.c_proj.bias"] = sd[b + "mlp.c_proj.bias"][keep] * s
    if tower == "vision":
        out["visual.conv1.weight"] = sd["visual.conv1.weight"][keep]
        out["visual.class_embedding"] = sd["visual.class_embedding"][keep]
        out["visual.positional_embedding"] = sd["visual.positional_embedding"][:, keep]
        out["visual.ln_pre.weight"] = sd["visual.ln_pre.weight"][keep] * s
        out["visual.ln_pre.bias"] = sd["visual.ln_pre.bias"][keep] * s
        out["visual.ln_post.weight"], out["visual.ln_post.bias"] = sd["visual.ln_post.weight"][keep], sd["visual.ln_post.bias"][keep]
        out["visual.proj"] = sd["visual.proj"][keep]
    else:
        out["token_embedding.weight"] = sd["token_embedding.weight"][:, keep] * s
        out["positional_embedding"] = sd["positional_embedding"][:, keep] * s
        out["ln_final.weight"], out["ln_final.bias"] = sd["ln_final.weight"][keep], sd["ln_final.bias"][keep]
        out["text_projection"] = sd["text_projection"][keep]
        out["logit_scale"] = sd["logit_scale"]
    return out


def fuse(masked: MaskedCLIP, target) -> torch.nn.Module:
    """Fix deterministic masks meeting ``target`` (see ``parse_budget``) and fold them into a dense open_clip
    CLIP (with per-layer sizes when the masks were untied and layers differ, see ``models.nonuniform``).
    The result equals ``masked`` in eval (same fixed masks) to float precision."""
    budget = parse_budget(target)
    cfg = copy.deepcopy(masked.cfg)
    tv, tt = config_params(cfg)
    text_target = budget.text if budget.text is not None else round(tt * budget.image / tv)
    cfg["vision_cfg"], v_layers = masked.masks["vision"].fix(budget.image)
    cfg["text_cfg"], t_layers = masked.masks["text"].fix(text_target)
    layers = {k: v for k, v in (("vision", v_layers), ("text", t_layers)) if v}
    if layers:
        cfg[KEY] = layers
    sd = {k: v.detach() for k, v in masked.clip.state_dict().items()}
    new = {}
    new.update(_fold_tower(sd, "visual.transformer.resblocks", masked.masks["vision"].fixed,
                           masked.masks["vision"].hw, "vision"))
    new.update(_fold_tower(sd, "transformer.resblocks", masked.masks["text"].fixed, masked.masks["text"].hw,
                           "text"))
    student = create_model(cfg)
    own = student.state_dict()
    for k, v in own.items():
        if k not in new or new[k].shape != v.shape:
            raise InheritError(f"fuse: {k!r} has shape {tuple(new[k].shape) if k in new else None}, "
                               f"expected {tuple(v.shape)}")
    student.load_state_dict(new)
    return student.eval()
