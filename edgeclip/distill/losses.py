"""Distillation loss terms, as pure functions composed by weights (``{"affinity": 1, "feature": 2000}``).

- ``affinity`` (TinyCLIP): the student's image->text and text->image similarity distributions match the
  teacher's (soft cross entropy, both directions averaged).
- ``feature`` (CLIP-KD's FD, its best single term): MSE between the L2-normalised student and teacher embeddings,
  image and text summed; CLIP-KD weights it x2000.
- ``icl`` (CLIP-KD's interactive contrastive learning): contrastive cross entropy of the student's image
  embeddings against the teacher's text embeddings, and of the student's text against the teacher's images.
- ``contrastive``: the plain CLIP loss of the student on the ground-truth pairs.

Shapes: ``s_img``/``s_txt`` (B, D_s) and ``t_img``/``t_txt`` (B, D_t), all L2-normalised; ``feature`` and
``icl`` compare student and teacher vectors directly, so they take the student's embeddings projected to D_t
(``p_img``/``p_txt``; the student's own when D_s == D_t). Under DDP pass the columns gathered from every rank
(``*_all``, (N, D)); rows stay local, so the mean over local rows, averaged by DDP across ranks, equals the
single-process loss on the whole batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError

TERMS = ("affinity", "feature", "icl", "contrastive")


def parse_loss(spec: str | dict | None) -> dict[str, float]:
    """``"affinity=1,feature=2000"`` or ``{"affinity": 1, "feature": 2000}`` -> validated weights (> 0 kept).

    Unknown names, non-numbers, negative or non-finite weights and an all-zero mix are one-line ConfigErrors.
    """
    from .recipe import DEFAULT_LOSS
    if spec is None:
        return dict(DEFAULT_LOSS)
    if isinstance(spec, str):
        items = {}
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                raise ConfigError(f"loss {spec!r} has an empty term; write NAME=WEIGHT pairs separated by commas")
            name, eq, value = part.partition("=")
            if not eq:
                raise ConfigError(f"loss term {part!r} has no weight; write NAME=WEIGHT, e.g. affinity=1,feature=2000")
            if name.strip() in items:  # a dict cannot say a term twice; the string must not either
                raise ConfigError(f"loss term {name.strip()!r} is given twice in {spec!r}; give each term once")
            items[name.strip()] = value.strip()
        spec = items
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"loss must be NAME=WEIGHT pairs (terms: {', '.join(TERMS)}), got {spec!r}")
    out = {}
    for name, value in spec.items():
        if name not in TERMS:
            raise ConfigError(f"unknown loss term {name!r}; choose from {', '.join(TERMS)}")
        try:
            w = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"loss weight of {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"loss weight of {name!r} must be finite and >= 0, got {value!r}")
        if w > 0:
            out[name] = w
    if not out:
        raise ConfigError(f"every loss weight is 0 in {spec!r}; give at least one term a positive weight")
    return out


def format_loss(weights: dict[str, float]) -> str:
    """The CLI spelling of a weight mix (``affinity=1,feature=2000``)."""
    return ",".join(f"{k}={v:g}" for k, v in weights.items())


def soft_cross_entropy(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """-sum softmax(T) log softmax(S) per row, mean over rows (scalar)."""
    return -(teacher_logits.softmax(-1) * student_logits.log_softmax(-1)).sum(-1).mean()


def affinity_loss(s_img, s_txt, t_img, t_txt, scale: float = 50.0, s_img_all=None, s_txt_all=None,
                  t_img_all=None, t_txt_all=None) -> dict[str, torch.Tensor]:
    """Affinity mimicking; returns ``{"loss", "i2t", "t2i"}`` with ``loss`` = 0.5 * (i2t + t2i)."""
    s_img_all = s_img if s_img_all is None else s_img_all
    s_txt_all = s_txt if s_txt_all is None else s_txt_all
    t_img_all = t_img if t_img_all is None else t_img_all
    t_txt_all = t_txt if t_txt_all is None else t_txt_all
    with torch.no_grad():
        t_i2t, t_t2i = scale * t_img.float() @ t_txt_all.float().T, scale * t_txt.float() @ t_img_all.float().T
    s_i2t, s_t2i = scale * s_img.float() @ s_txt_all.float().T, scale * s_txt.float() @ s_img_all.float().T
    out = {"i2t": soft_cross_entropy(t_i2t, s_i2t), "t2i": soft_cross_entropy(t_t2i, s_t2i)}
    out["loss"] = 0.5 * (out["i2t"] + out["t2i"])
    return out


def feature_loss(p_img, p_txt, t_img, t_txt) -> torch.Tensor:
    """FD: mean squared error of the (projected, normalised) student embeddings against the teacher's, image +
    text. Zero exactly when the student's embeddings are the teacher's."""
    return F.mse_loss(p_img.float(), t_img.float().detach()) + F.mse_loss(p_txt.float(), t_txt.float().detach())


def contrastive_ce(rows: torch.Tensor, cols_all: torch.Tensor, scale: float, offset: int = 0) -> torch.Tensor:
    """Cross entropy of local rows against all columns, the matching column of row j being ``offset + j``."""
    labels = torch.arange(rows.shape[0], device=rows.device) + offset
    return F.cross_entropy(scale * rows.float() @ cols_all.float().T, labels)


def icl_loss(p_img, p_txt, t_img_all, t_txt_all, scale: float = 50.0, offset: int = 0) -> torch.Tensor:
    """ICL: student images against teacher texts and student texts against teacher images (teacher detached).
    With the teacher's own embeddings in place of the student's it is the teacher's CLIP loss."""
    return 0.5 * (contrastive_ce(p_img, t_txt_all.detach(), scale, offset)
                  + contrastive_ce(p_txt, t_img_all.detach(), scale, offset))


def clip_loss(s_img, s_txt, s_img_all, s_txt_all, scale: float = 50.0, offset: int = 0) -> torch.Tensor:
    """The CLIP loss of the student on its ground-truth pairs (symmetric cross entropy)."""
    return 0.5 * (contrastive_ce(s_img, s_txt_all, scale, offset) + contrastive_ce(s_txt, s_img_all, scale, offset))


@dataclass
class Embeddings:
    """One micro-batch's embeddings. ``*_all``: columns gathered from every rank (the local ones without DDP);
    ``p_*``: the student's projected to the teacher's dimension (its own when the dimensions agree)."""
    s_img: torch.Tensor
    s_txt: torch.Tensor
    p_img: torch.Tensor
    p_txt: torch.Tensor
    t_img: torch.Tensor
    t_txt: torch.Tensor
    s_img_all: torch.Tensor | None = None
    s_txt_all: torch.Tensor | None = None
    t_img_all: torch.Tensor | None = None
    t_txt_all: torch.Tensor | None = None
    offset: int = 0  # global index of this rank's first row

    def cols(self, name: str) -> torch.Tensor:
        own = getattr(self, name + "_all")
        return getattr(self, name) if own is None else own


def distill_loss(weights: dict[str, float], e: Embeddings, scale: float = 50.0) -> dict[str, torch.Tensor]:
    """The weighted sum ``loss`` of the terms in ``weights`` (> 0), plus each term's unweighted value."""
    out: dict[str, torch.Tensor] = {}
    if weights.get("affinity"):
        out["affinity"] = affinity_loss(e.s_img, e.s_txt, e.t_img, e.t_txt, scale, e.cols("s_img"), e.cols("s_txt"),
                                        e.cols("t_img"), e.cols("t_txt"))["loss"]
    if weights.get("feature"):
        out["feature"] = feature_loss(e.p_img, e.p_txt, e.t_img, e.t_txt)
    if weights.get("icl"):
        out["icl"] = icl_loss(e.p_img, e.p_txt, e.cols("t_img"), e.cols("t_txt"), scale, e.offset)
    if weights.get("contrastive"):
        out["contrastive"] = clip_loss(e.s_img, e.s_txt, e.cols("s_img"), e.cols("s_txt"), scale, e.offset)
    out["loss"] = sum(weights[k] * v for k, v in out.items())
    return out


def affinity_kl(s_img, s_txt, t_img, t_txt, scale: float = 50.0) -> float:
    """Mean KL(teacher || student) of the two affinity distributions (nats), for reporting."""
    with torch.no_grad():
        t_i2t, t_t2i = scale * t_img.float() @ t_txt.float().T, scale * t_txt.float() @ t_img.float().T
        s_i2t, s_t2i = scale * s_img.float() @ s_txt.float().T, scale * s_txt.float() @ s_img.float().T
        kl = [F.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="batchmean")
              for s, t in ((s_i2t, t_i2t), (s_t2i, t_t2i))]
    return float(0.5 * (kl[0] + kl[1]))


def gather_features(x: torch.Tensor, with_grad: bool) -> torch.Tensor:
    """All ranks' rows concatenated in rank order (N, D); gradients flow back to each rank's rows if asked."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    if with_grad:
        import torch.distributed.nn.functional as dnf
        return torch.cat(dnf.all_gather(x), 0)
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach())
    return torch.cat(parts, 0)

