"""The distillation loop: AdamW + warm-up/cosine, grad clip, accumulation, teacher-embedding cache,
atomic checkpoints and exact resume (training is a pure function of the step number and the seed).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .._io import atomic_path
from ..errors import ConfigError, NonFiniteError, StorageError
from ..data.loader import Batches, BatchLoader  # noqa: F401  (Batches: re-exported for callers)
from ..models.checkpoint import config_fingerprint
from . import dist as ddp_env
from .losses import affinity_loss, gather_features


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
    contrastive_weight: float = 0.0  # weight of the ground-truth CLIP loss
    eval_every: int = 0              # run eval_fn every N steps (0: only at the end)
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
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2 and "logit" not in n]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not (p.ndim >= 2 and "logit" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.peak_lr(), betas=(0.9, 0.98), eps=1e-6)


class TeacherCache:
    """Teacher embeddings per sample index (fp16, in memory; saved/loaded as .npz). One teacher forward per
    sample: later epochs and later stages of the same teacher read the cache instead."""

    def __init__(self, path: str | Path | None = None):
        self.img: dict[int, np.ndarray] = {}
        self.txt: dict[int, np.ndarray] = {}
        self.hits = self.misses = 0
        self.path = Path(path) if path else None
        if self.path and self.path.is_file():
            z = np.load(self.path)
            self.img = dict(zip(z["keys"].tolist(), z["img"]))
            self.txt = dict(zip(z["keys"].tolist(), z["txt"]))

    def save(self) -> None:
        if not self.path or not self.img:
            return
        keys = np.array(sorted(self.img))
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, keys=keys, img=np.stack([self.img[k] for k in keys]),
                         txt=np.stack([self.txt[k] for k in keys]))

    @torch.no_grad()
    def get(self, teacher, keys: list[int], pixels: torch.Tensor, ids: torch.Tensor):
        miss = [j for j, k in enumerate(keys) if k not in self.img]
        self.misses += len(miss)
        self.hits += len(keys) - len(miss)
        if miss:
            dev = next(teacher.parameters()).device
            ti = teacher.encode_image(pixels[miss].to(dev), normalize=True).half().cpu().numpy()
            tt = teacher.encode_text(ids[miss].to(dev), normalize=True).half().cpu().numpy()
            for j, a, b in zip(miss, ti, tt):
                self.img[keys[j]], self.txt[keys[j]] = a, b
        return (torch.from_numpy(np.stack([self.img[k] for k in keys])).float(),
                torch.from_numpy(np.stack([self.txt[k] for k in keys])).float())


@dataclass
class StageHistory:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    samples_per_s: float = 0.0


def _save_ckpt(path: Path, model, opt, step: int, hist: StageHistory, data_state: dict | None = None) -> None:
    import json
    state = {"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
             "history": json.dumps(asdict(hist)), "data": json.dumps(data_state or {}),
             "model_cfg_sha256": _fingerprint(model)}
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as e:  # disk full, permissions: the last good checkpoint is untouched (atomic rename)
        raise StorageError(f"cannot write checkpoint {str(path)!r} at step {step}: {e.strerror or e}; "
                            "the previous checkpoint is intact (free space and resume)") from None


def _load_ckpt(path: Path, model, opt) -> tuple[int, StageHistory, dict]:
    import json
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"cannot resume from {str(path)!r}: {str(e).splitlines()[0][:160]}") from None
    own = model.state_dict()
    bad = [k for k in own if k not in state["model"] or state["model"][k].shape != own[k].shape]
    if bad or state.get("model_cfg_sha256", _fingerprint(model)) != _fingerprint(model):
        raise ConfigError(_RESUME_MISMATCH.format(path=str(path), what=f" (e.g. {bad[0]!r} differs)" if bad else ""))
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optim"])
    return int(state["step"]), StageHistory(**json.loads(state["history"])), json.loads(state.get("data", "{}"))


_RESUME_MISMATCH = ("cannot resume from {path!r}: it was written for another student config{what} (--target, "
                    "--stages or --method changed?); rerun with the original options, or without --resume into a "
                    "new --out")


def _fingerprint(model) -> str | None:
    cfg = getattr(model, "edgeclip_cfg", None)
    return config_fingerprint(cfg) if cfg is not None else None


def check_resume(path: str | Path, cfg: dict) -> None:
    """Before anything is trained: a checkpoint at ``path`` must belong to a student of config ``cfg``."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise ConfigError(f"cannot resume from {str(path)!r}: {str(e).splitlines()[0][:160]}") from None
    saved = state.get("model_cfg_sha256") if isinstance(state, dict) else None
    if saved is not None and saved != config_fingerprint(cfg):
        raise ConfigError(_RESUME_MISMATCH.format(path=str(path), what=""))


def _check_finite_step(step: int, terms: dict | None, student, ckpt) -> None:
    """Stop at the first NaN/Inf loss term or gradient, naming the step and the term (before the optimizer step,
    so the weights and the last checkpoint stay as they were)."""
    kept = f"; the last checkpoint {str(ckpt)!r} is intact" if ckpt and Path(ckpt).is_file() else ""
    if terms is not None:
        bad = [k for k, v in terms.items() if k != "loss" and not bool(torch.isfinite(v.detach()).all())]
        raise NonFiniteError(f"training diverged at step {step + 1}: loss term {(bad or ['loss'])[0]!r} is "
                             f"non-finite{kept}; lower --lr or check the teacher and the data")
    name = next((n for n, p in student.named_parameters()
                if p.grad is not None and not bool(torch.isfinite(p.grad).all())), "?")
    raise NonFiniteError(f"training diverged at step {step + 1}: the gradient of {name!r} is non-finite "
                         f"(loss finite){kept}; lower --lr or check the teacher and the data")


def distill(student, teacher, batches, cfg: DistillConfig, ckpt: str | Path | None = None,
            cache=None, resume: bool = False, eval_fn=None, desc: str = "distill"):
    """Train ``student`` to mimic ``teacher``'s affinities. Returns ``(student, StageHistory)``; the student is
    left in eval mode.

    ``batches``: a ``Batches`` (index-addressable data) or a ``BatchLoader``; images are decoded in
    ``cfg.workers`` DataLoader workers. ``cache``: a ``TeacherCache`` or a ``TeacherStore`` (``get`` returns the
    teacher's embeddings, running the teacher only for misses). Under torchrun every rank trains on its rows of
    the global batch; only rank 0 writes checkpoints and shows progress.
    """
    dev = torch.device(cfg.device)
    student.to(dev).train()
    teacher.to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    ddp = ddp_env.world() > 1
    # find_unused: the fixed logit scale is in the forward's outputs but not in the affinity loss
    model = torch.nn.parallel.DistributedDataParallel(student, find_unused_parameters=True) if ddp else student
    opt = make_optimizer(student, cfg)
    ckpt = Path(ckpt) if ckpt else None
    step, hist, data_state = 0, StageHistory(), {}
    if resume and ckpt and ckpt.is_file():
        step, hist, data_state = _load_ckpt(ckpt, student, opt)
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
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        keys, pixels, t_ids, s_ids = next(stream)
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=autocast):
            t_img, t_txt = cache.get(teacher, keys, pixels, t_ids)
        opt.zero_grad(set_to_none=True)
        with ddp_env.guard(f"step {step + 1}"):
            total, bad_terms = _step(model, cfg, dev, keys, pixels, s_ids, t_img.float(), t_txt.float(), autocast,
                                     amp_dtype, scaler)
        scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        if bad_terms is not None or (not scaler.is_enabled() and not bool(torch.isfinite(grad_norm))):
            _check_finite_step(step, bad_terms, student, ckpt)  # fp16: the scaler skips inf steps by design
        scaler.step(opt)
        scaler.update()
        seen += len(keys) * ddp_env.world()
        hist.steps.append(step + 1)
        hist.loss.append(total)
        bar.set_postfix(loss=f"{total:.3f}", samples_per_s=f"{seen / max(1e-9, time.time() - t_run):.0f}",
                        refresh=False)
        last = step + 1 == cfg.steps
        if main and eval_fn and ((cfg.eval_every and (step + 1) % cfg.eval_every == 0) or last):
            student.eval()
            hist.evals.append({"step": step + 1, **eval_fn(student)})
            student.train()
        if ckpt and ((step + 1) % cfg.ckpt_every == 0 or last):
            if isinstance(cache, TeacherCache) and cache.path is not None:  # every rank keeps its own cache
                cache.save()
            if main:
                hist.wall_s = time.time() - t0
                _save_ckpt(ckpt, student, opt, step + 1, hist, loader.state())
    hist.wall_s = time.time() - t0
    hist.samples_per_s = seen / max(1e-9, time.time() - t_run)
    return student.eval(), hist


def _step(model, cfg: DistillConfig, dev, keys, pixels, s_ids, t_img, t_txt, autocast, amp_dtype, scaler):
    """Forward + backward of one step (micro-batches accumulate); loss and softmax in fp32. Returns the loss and
    the loss terms of the first micro-batch whose loss was not finite (``None`` when all were)."""
    total, bad_terms = 0.0, None
    for chunk in np.array_split(np.arange(len(keys)), min(cfg.accum_steps, len(keys))):
        c = torch.as_tensor(chunk)
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=autocast):
            s_img, s_txt, _ = model(pixels[c].to(dev, non_blocking=True), s_ids[c].to(dev, non_blocking=True))
        ti, tt = t_img[c].to(dev), t_txt[c].to(dev)
        terms = affinity_loss(s_img.float(), s_txt.float(), ti, tt, cfg.logit_scale,
                              s_img_all=gather_features(s_img.float(), True),
                              s_txt_all=gather_features(s_txt.float(), True),
                              t_img_all=gather_features(ti, False), t_txt_all=gather_features(tt, False),
                              contrastive_weight=cfg.contrastive_weight)
        loss_value = terms["loss"].item()
        if not math.isfinite(loss_value) and bad_terms is None:
            bad_terms = terms  # raised after backward, so DDP ranks stay in step (their gradients go NaN too)
        scaler.scale(terms["loss"] * len(chunk) / len(keys)).backward()
        total += loss_value * len(chunk) / len(keys)
    return total, bad_terms
