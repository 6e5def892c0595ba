"""Affinity mimicking (TinyCLIP): the student's image->text and text->image similarity distributions match the
teacher's. Pure functions: tensors in, named terms out; the caller weights them.

Shapes: ``s_img``/``s_txt`` (B, D_s) and ``t_img``/``t_txt`` (B, D_t), all L2-normalised. Under DDP pass the
columns gathered from every rank (``*_all``, (N, D)); rows stay local, so the mean over local rows, averaged by
DDP across ranks, equals the single-process loss on the whole batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def get_logits(img: torch.Tensor, txt_all: torch.Tensor, txt: torch.Tensor, img_all: torch.Tensor,
               scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Local rows x global columns: i2t (B, N) and t2i (B, N), in fp32."""
    return scale * img.float() @ txt_all.float().T, scale * txt.float() @ img_all.float().T


def soft_cross_entropy(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """-sum softmax(T) log softmax(S) per row, mean over rows (scalar)."""
    return -(teacher_logits.softmax(-1) * student_logits.log_softmax(-1)).sum(-1).mean()


def affinity_loss(s_img, s_txt, t_img, t_txt, scale: float = 50.0, s_img_all=None, s_txt_all=None,
                  t_img_all=None, t_txt_all=None, contrastive_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Affinity-mimicking loss; returns ``{"loss", "i2t", "t2i"}`` (+ ``"contrastive"`` when weighted).

    ``loss`` = 0.5 * (i2t + t2i) + contrastive_weight * CLIP loss on the ground-truth pairs.
    """
    s_img_all = s_img if s_img_all is None else s_img_all
    s_txt_all = s_txt if s_txt_all is None else s_txt_all
    t_img_all = t_img if t_img_all is None else t_img_all
    t_txt_all = t_txt if t_txt_all is None else t_txt_all
    with torch.no_grad():
        t_i2t, t_t2i = get_logits(t_img, t_txt_all, t_txt, t_img_all, scale)
    s_i2t, s_t2i = get_logits(s_img, s_txt_all, s_txt, s_img_all, scale)
    out = {"i2t": soft_cross_entropy(t_i2t, s_i2t), "t2i": soft_cross_entropy(t_t2i, s_t2i)}
    out["loss"] = 0.5 * (out["i2t"] + out["t2i"])
    if contrastive_weight:
        offset = _rank() * s_img.shape[0]
        labels = torch.arange(s_img.shape[0], device=s_img.device) + offset
        out["contrastive"] = 0.5 * (F.cross_entropy(s_i2t, labels) + F.cross_entropy(s_t2i, labels))
        out["loss"] = out["loss"] + contrastive_weight * out["contrastive"]
    return out


def affinity_kl(s_img, s_txt, t_img, t_txt, scale: float = 50.0) -> float:
    """Mean KL(teacher || student) of the two affinity distributions (nats), for reporting."""
    with torch.no_grad():
        t_i2t, t_t2i = get_logits(t_img, t_txt, t_txt, t_img, scale)
        s_i2t, s_t2i = get_logits(s_img, s_txt, s_txt, s_img, scale)
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


def _rank() -> int:
    import torch.distributed as dist
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
