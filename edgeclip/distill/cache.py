"""Teacher embeddings per sample key, computed once: later epochs, views and stages of the same teacher read
them instead of running the teacher again."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..outputs import atomic_path


@torch.no_grad()
def teacher_embeddings(teacher, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's normalised image and text embeddings on the CPU, rounded to fp16 as every cache keeps them."""
    dev = next(teacher.parameters()).device
    return (teacher.encode_image(pixels.to(dev), normalize=True).half().cpu(),
            teacher.encode_text(ids.to(dev), normalize=True).half().cpu())


class TeacherCache:
    """Teacher embeddings per sample key (fp16, in memory; saved/loaded as .npz with the checkpoints, because
    recomputing them after a kill differs by ulps and resume must be exact)."""

    def __init__(self, path: str | Path | None = None):
        self.img: dict = {}
        self.txt: dict = {}
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
    def get(self, teacher, keys: list, pixels: torch.Tensor, ids: torch.Tensor):
        miss = [j for j, k in enumerate(keys) if k not in self.img]
        self.misses += len(miss)
        self.hits += len(keys) - len(miss)
        if miss:
            ti, tt = (t.numpy() for t in teacher_embeddings(teacher, pixels[miss], ids[miss]))
            for j, a, b in zip(miss, ti, tt):
                self.img[keys[j]], self.txt[keys[j]] = a, b
        return (torch.from_numpy(np.stack([self.img[k] for k in keys])).float(),
                torch.from_numpy(np.stack([self.txt[k] for k in keys])).float())


class NoCache:
    """``compress(cache_teacher=False)``: the teacher runs on every batch and nothing is kept (flat memory; the
    live-teacher arm of the benchmarks). Embeddings are rounded through fp16 as the cache stores them, so a run
    trains as it would with the cache (up to the teacher's last bits when a sample is batched differently)."""
    path = None

    def __init__(self):
        self.hits = self.misses = 0

    def get(self, teacher, keys: list, pixels: torch.Tensor, ids: torch.Tensor):
        self.misses += len(keys)
        ti, tt = teacher_embeddings(teacher, pixels, ids)
        return ti.float(), tt.float()
