"""Distillation settings and the optimisation schedule (AdamW, linear warm-up then cosine to 0)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .recipe import DEFAULT_LOSS


@dataclass
class DistillConfig:
    steps: int = 800                 # optimizer steps for this stage
    batch_size: int = 128            # pairs per optimizer step (global, across ranks and micro-batches)
    lr: float | None = None          # peak lr; None: 5e-4 * batch_size / 128
    warmup: int = 50                 # linear warm-up steps, then cosine to 0
    weight_decay: float = 0.2        # AdamW decay on matrices only (not norms, biases, logit scale)
    grad_clip: float = 5.0           # max global grad norm
    accum_steps: int = 1             # micro-batches per step (each has its own affinity matrix)
    logit_scale: float = 50.0        # fixed for teacher and student (TinyCLIP --logit-scale 50)
    loss: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS))  # term -> weight (losses.TERMS)
    eval_every: int = 0              # run eval_fn every N steps (0: only at the end)
    eval_steps: tuple[int, ...] = () # extra steps to evaluate at (a finer grid where curves move fast)
    ckpt_every: int = 100            # write a resumable checkpoint every N steps
    seed: int = 0                    # data order
    device: str = "cpu"
    precision: str = "fp32"          # fp32 | bf16 | fp16 (autocast, GPU only)
    workers: int = 0                 # DataLoader worker processes decoding images (0: in this process)

    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else 5e-4 * self.batch_size / 128


def lr_at(step: int, cfg: DistillConfig) -> float:
    peak = cfg.peak_lr()
    if step < cfg.warmup:
        return peak * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def make_optimizer(model: torch.nn.Module, cfg: DistillConfig) -> torch.optim.AdamW:
    """AdamW with decay on matrices only (norms, biases and the logit scale are not decayed).

    ``foreach=True``: torch picks the multi-tensor kernels only for CUDA tensors by default; on the CPU they give
    bit-identical updates ~18% faster (measured on the 49,408-row token embedding that dominates the step).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and "logit" not in n]
    rest = [p for n, p in named if not (p.ndim >= 2 and "logit" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.peak_lr(), betas=(0.9, 0.98), eps=1e-6, foreach=True)
