"""The prune phase of automatic inheritance: distil through sampled L0 masks under Lagrangian size control,
then fuse (``edgeclip.inherit.auto``) into a dense student."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..data.loader import Batches
from ..inherit.auto import MaskedCLIP, fuse
from ..models import get_tokenizer
from ..models.params import config_params, count_params
from .losses import affinity_loss
from .cache import TeacherCache


@dataclass
class AutoConfig:
    steps: int = 200            # prune-phase steps
    warmup: int = 100           # target ramps linearly from the teacher's size over these steps
    mask_lr: float = 0.5        # Adam lr of log-alpha (init 10: ~20 steps to reach the sensitive range)
    lambda_lr: float = 0.5      # gradient-ascent lr of the Lagrange multipliers
    model_lr: float = 1e-4      # AdamW lr of the weights during pruning
    tie_layers: bool = True     # share head/MLP masks across layers
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"



@dataclass
class PruneHistory:
    expected: list[dict]
    lambdas: list[dict]
    targets: dict


def prune(masked: MaskedCLIP, teacher, batches, targets: dict[str, int], cfg: AutoConfig) -> PruneHistory:
    """The prune phase: affinity distillation through sampled masks + Lagrangian control of expected size.

    ``targets`` are absolute parameter counts per tower; the target ramps linearly from the full size over
    ``cfg.warmup`` steps. Lagrange multipliers are updated by gradient ascent.
    """
    torch.manual_seed(cfg.seed)
    full = {t: m.expected_params().item() for t, m in masked.masks.items()}
    lam = torch.nn.ParameterDict({t: torch.nn.Parameter(torch.zeros(2)) for t in targets})
    opt_w = torch.optim.AdamW(masked.clip.parameters(), lr=cfg.model_lr, betas=(0.9, 0.98), eps=1e-6)
    opt_m = torch.optim.Adam([p for n, p in masked.masks.named_parameters()], lr=cfg.mask_lr)
    opt_l = torch.optim.SGD(lam.parameters(), lr=cfg.lambda_lr)
    cache, hist = TeacherCache(), PruneHistory([], [], dict(targets))
    masked.train()
    for step in tqdm(range(cfg.steps), desc="prune (L0 masks)", mininterval=2, leave=False):
        keys, px, t_ids, s_ids = batches(step)
        t_img, t_txt = cache.get(teacher, keys, px, t_ids)
        s_img, s_txt, _ = masked(px, s_ids)
        loss = affinity_loss(s_img, s_txt, t_img, t_txt)["loss"]
        ramp = min(1.0, (step + 1) / max(1, cfg.warmup))
        exp = masked.expected_params()
        for t, tgt in targets.items():
            s_hat = exp[t] / full[t]
            t_rel = 1 - ramp * (1 - tgt / full[t])
            gap = s_hat - t_rel
            loss = loss + lam[t][0] * gap + lam[t][1] * gap ** 2
        for o in (opt_w, opt_m, opt_l):
            o.zero_grad(set_to_none=True)
        loss.backward()
        for p in lam.parameters():  # gradient ascent on the multipliers
            p.grad.neg_()
        opt_w.step()
        opt_m.step()
        opt_l.step()
        for m in masked.masks.values():
            for g in (m.hidden, m.heads, m.units):
                g.clamp_()
        hist.expected.append({t: round(v.item()) for t, v in exp.items()})
        hist.lambdas.append({t: lam[t].detach().tolist() for t in targets})
    masked.eval()
    return hist


def prune_and_fuse(prev, student_cfg: dict, pairs, image_transform, teacher, cfg: AutoConfig):
    """Auto inheritance for ``compress``: prune ``prev`` towards ``student_cfg``'s size, fuse, report."""
    v, t = config_params(student_cfg)
    masked = MaskedCLIP(copy.deepcopy(prev).float(), tie_layers=cfg.tie_layers)
    batches = Batches(pairs, cfg.batch_size, cfg.seed + 1000, image_transform, get_tokenizer(teacher),
                      get_tokenizer(prev))
    hist = prune(masked, teacher, batches, {"vision": v, "text": t}, cfg)
    student = fuse(masked, {"image": v, "text": t})
    c = count_params(student)
    return student, {"method": "auto", "tie_layers": cfg.tie_layers, "prune_steps": cfg.steps,
                     "targets": {"vision": v, "text": t}, "fused": {"vision": c.vision, "text": c.text},
                     "expected_final": hist.expected[-1] if hist.expected else None,
                     "lambda_final": hist.lambdas[-1] if hist.lambdas else None}
