"""The distillation loop: AdamW + warm-up/cosine, grad clip, accumulation, the teacher's embeddings from a cache
or store, atomic checkpoints and exact resume (training is a pure function of the step number and the seed).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import NonFiniteError
from ..models import model_config
from ..data.loader import BatchLoader
from . import dist as ddp_env
from .cache import TeacherCache
from .checkpoints import StageHistory, load_ckpt, save_ckpt
from .config import DistillConfig, lr_at, make_optimizer
from .losses import Embeddings, distill_loss, gather_features


def embed_dim(model) -> int:
    """The width of a CLIP's joint embedding space (what ``encode_image`` returns)."""
    cfg = model_config(model, required=False)
    if cfg is not None:
        return int(cfg["embed_dim"])
    return int(model.text_projection.shape[1])


class Distillee(torch.nn.Module):
    """The student plus the projection to the teacher's embedding width that ``feature`` and ``icl`` compare
    through (CLIP-KD; only when the widths differ). One module, so DDP averages both gradients; the projection
    is trained with the student and dropped when the student is saved."""

    def __init__(self, student: torch.nn.Module, teacher_dim: int | None = None):
        super().__init__()
        self.student = student
        s_dim = embed_dim(student)
        self.projection = torch.nn.Linear(s_dim, teacher_dim, bias=False) \
            if teacher_dim is not None and teacher_dim != s_dim else None

    def forward(self, pixels, ids):
        img, txt, _ = self.student(pixels, ids)
        if self.projection is None:
            return img, txt, img, txt
        return img, txt, F.normalize(self.projection(img), dim=-1), F.normalize(self.projection(txt), dim=-1)


def check_finite_step(step: int, terms: dict | None, student, ckpt) -> None:
    """Stop at the first NaN/Inf loss term or gradient, naming the step and the term (before the optimizer step,
    so the weights and the last checkpoint stay as they were)."""
    kept = f"; the last checkpoint {str(ckpt)!r} is intact" if ckpt and Path(ckpt).is_file() else ""
    if terms is not None:
        bad = [k for k, v in terms.items() if k != "loss" and not bool(torch.isfinite(v.detach()).all())]
        raise NonFiniteError(f"training diverged at step {step + 1}: loss term {(bad or ['loss'])[0]!r} is "
                             f"non-finite{kept}; lower --lr or check the teacher and the data")
    name = next((n.removeprefix("student.") for n, p in student.named_parameters()
                if p.grad is not None and not bool(torch.isfinite(p.grad).all())), "?")  # the student's own names
    raise NonFiniteError(f"training diverged at step {step + 1}: the gradient of {name!r} is non-finite "
                         f"(loss finite){kept}; lower --lr or check the teacher and the data")


def distill(student, teacher, batches, cfg: DistillConfig, ckpt: str | Path | None = None,
            cache=None, resume: bool = False, eval_fn=None, desc: str = "distill",
            recipe: dict | None = None) -> tuple[torch.nn.Module, StageHistory]:
    """Train ``student`` to mimic ``teacher`` with the loss terms in ``cfg.loss``. Returns
    ``(student, StageHistory)``; the student is left in eval mode.

    ``batches``: a ``Batches`` (index-addressable data) or a ``BatchLoader``; images are decoded in
    ``cfg.workers`` DataLoader workers. ``cache``: a ``TeacherCache`` or a ``TeacherStore`` (``get`` returns the
    teacher's embeddings, running the teacher only for misses). ``recipe``: stored with the checkpoints so a
    resume with other settings is refused. Under torchrun every rank trains on its rows of the global batch;
    only rank 0 writes checkpoints and shows progress.
    """
    dev = torch.device(cfg.device)
    teacher.to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    needs_projection = bool(cfg.loss.get("feature") or cfg.loss.get("icl"))
    distillee = Distillee(student, embed_dim(teacher) if needs_projection else None).to(dev).train()
    ddp = ddp_env.world() > 1
    # find_unused: the fixed logit scale is in the forward's outputs but in no loss term
    model = torch.nn.parallel.DistributedDataParallel(distillee, find_unused_parameters=True) if ddp else distillee
    opt = make_optimizer(distillee, cfg)
    ckpt = Path(ckpt) if ckpt else None
    recipe = {"loss": cfg.loss, **(recipe or {})}
    step, hist, data_state = 0, StageHistory(), {}
    if resume and ckpt and ckpt.is_file():
        step, hist, data_state = load_ckpt(ckpt, student, opt, distillee.projection, recipe)
    cache = cache or TeacherCache()
    loader = batches if isinstance(batches, BatchLoader) else \
        BatchLoader(batches, cfg.workers, pin_memory=dev.type == "cuda")
    autocast = dev.type == "cuda" and cfg.precision in ("bf16", "fp16")
    amp_dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=autocast and cfg.precision == "fp16")
    main = ddp_env.is_main()
    t0, t_run, seen = time.time() - hist.wall_s, time.time(), 0
    bar = tqdm(range(step, cfg.steps), desc=desc, initial=step, total=cfg.steps, mininterval=2, leave=True,
               disable=not main)
    stream = loader.iterate(step, cfg.steps, data_state)
    t_step = time.time()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        keys, pixels, t_ids, s_ids = next(stream)
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=autocast):
            t_img, t_txt = cache.get(teacher, keys, pixels, t_ids)
        opt.zero_grad(set_to_none=True)
        with ddp_env.guard(f"step {step + 1}"):
            total, terms, bad_terms = _step(model, cfg, dev, keys, pixels, s_ids, t_img.float(), t_txt.float(),
                                            autocast, amp_dtype, scaler)
        scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(distillee.parameters(), cfg.grad_clip)
        if bad_terms is not None or (not scaler.is_enabled() and not bool(torch.isfinite(grad_norm))):
            check_finite_step(step, bad_terms, distillee, ckpt)  # fp16: the scaler skips inf steps by design
        scale = scaler.get_scale() if scaler.is_enabled() else None
        scaler.step(opt)
        scaler.update()
        if scale is not None and scaler.get_scale() < scale:  # the scale drops only when the step was skipped
            hist.skipped_steps += 1
        seen += len(keys) * ddp_env.world()
        hist.steps.append(step + 1)
        hist.loss.append(total)
        for k, v in terms.items():
            hist.terms.setdefault(k, []).append(v)
        bar.set_postfix(loss=f"{total:.3f}", samples_per_s=f"{seen / max(1e-9, time.time() - t_run):.0f}",
                        refresh=False)
        last = step + 1 == cfg.steps
        if main and eval_fn and ((cfg.eval_every and (step + 1) % cfg.eval_every == 0) or last
                                 or step + 1 in cfg.eval_steps):
            t_eval = time.time()
            student.eval()
            hist.evals.append({"step": step + 1, **eval_fn(student)})
            student.train()
            t_step += time.time() - t_eval  # a step's time is training, data and checkpoints, not scoring
        if ckpt and ((step + 1) % cfg.ckpt_every == 0 or last):
            if isinstance(cache, TeacherCache) and cache.path is not None:  # every rank keeps its own cache
                cache.save()
            if main:
                hist.wall_s = time.time() - t0
                save_ckpt(ckpt, student, opt, step + 1, hist, loader.state(), distillee.projection, recipe)
        now = time.time()
        hist.step_s.append(round(now - t_step, 5))
        t_step = now
    hist.wall_s = time.time() - t0
    hist.samples_per_s = seen / max(1e-9, time.time() - t_run)
    return student.eval(), hist


def _step(model, cfg: DistillConfig, dev, keys, pixels, s_ids, t_img, t_txt, autocast, amp_dtype, scaler):
    """Forward + backward of one step (micro-batches accumulate); loss and softmax in fp32. Returns the loss,
    each term's value (averaged over micro-batches) and the terms of the first micro-batch whose loss was not
    finite (``None`` when all were)."""
    total, values, bad_terms = 0.0, {}, None
    for chunk in np.array_split(np.arange(len(keys)), min(cfg.accum_steps, len(keys))):
        c = torch.as_tensor(chunk)
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=autocast):
            s_img, s_txt, p_img, p_txt = model(pixels[c].to(dev, non_blocking=True),
                                               s_ids[c].to(dev, non_blocking=True))
        ti, tt = t_img[c].to(dev), t_txt[c].to(dev)
        s_img, s_txt = s_img.float(), s_txt.float()
        e = Embeddings(s_img, s_txt, p_img.float(), p_txt.float(), ti, tt,
                       s_img_all=gather_features(s_img, True), s_txt_all=gather_features(s_txt, True),
                       t_img_all=gather_features(ti, False), t_txt_all=gather_features(tt, False),
                       offset=ddp_env.rank() * len(chunk))
        terms = distill_loss(cfg.loss, e, cfg.logit_scale)
        loss_value = terms["loss"].item()
        if not math.isfinite(loss_value) and bad_terms is None:
            bad_terms = terms  # raised after backward, so DDP ranks stay in step (their gradients go NaN too)
        scaler.scale(terms["loss"] * len(chunk) / len(keys)).backward()
        total += loss_value * len(chunk) / len(keys)
        for k, v in terms.items():
            if k != "loss":
                values[k] = values.get(k, 0.0) + v.item() * len(chunk) / len(keys)
    return total, values, bad_terms
