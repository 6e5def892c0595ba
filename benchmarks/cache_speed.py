"""Teacher-embedding cache: wall time per epoch with and without it (reference teacher, ShapesWorld).

Epoch 1 fills the cache (one teacher forward per sample); later epochs and stages read it. Usage:
    python benchmarks/cache_speed.py --samples 2560 --epochs 2
"""
from __future__ import annotations

import argparse
import time

import torch

from _common import plot_path, write
from edgeclip.data.pairs import ShapesPairs
from edgeclip.data.loader import Batches
from edgeclip.distill import DistillConfig, TeacherCache, distill
from edgeclip.inherit import inherit_weights
from edgeclip.models import get_tokenizer, load_teacher, model_config
from edgeclip.models.io import image_transform, preprocess_cfg
from edgeclip.models.params import student_config


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="reference", help="teacher spec")
    p.add_argument("--target", default="25%", help="student vision budget")
    p.add_argument("--samples", type=int, default=2560, help="pairs per epoch")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run")
    p.add_argument("--batch-size", type=int, default=128, help="pairs per step")
    return p.parse_args(argv)


def run(teacher, cfg, pairs, tf, a, cache: TeacherCache | None) -> list[float]:
    student, _ = inherit_weights(teacher, cfg)
    steps_per_epoch = a.samples // a.batch_size
    times = []
    for e in range(a.epochs):
        c = cache if cache is not None else TeacherCache()  # no cache: a fresh one every epoch
        b = Batches(pairs, a.batch_size, 0, tf, get_tokenizer(teacher), get_tokenizer(student))
        t = time.perf_counter()
        dcfg = DistillConfig(steps=steps_per_epoch, batch_size=a.batch_size, warmup=5)
        distill(student, teacher, _Offset(b, e * steps_per_epoch), dcfg, cache=c, desc=f"epoch {e}")
        times.append(time.perf_counter() - t)
    return times


class _Offset:
    """Shifts step numbers so each epoch sees its own permutation of the data."""

    def __init__(self, b, offset):
        self.b, self.offset, self.pairs = b, offset, b.pairs

    def __call__(self, step):
        return self.b(step + self.offset)


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(2)
    teacher = load_teacher(a.teacher)
    cfg = student_config(model_config(teacher), a.target)  # "25%" is relative to the teacher
    pairs = ShapesPairs(a.samples)
    tf = image_transform(preprocess_cfg(teacher))
    with_cache = run(teacher, cfg, pairs, tf, a, TeacherCache())
    without = run(teacher, cfg, pairs, tf, a, None)
    res = {"samples_per_epoch": a.samples, "epoch_s_with_cache": with_cache, "epoch_s_without_cache": without,
           "speedup_later_epochs": sum(without[1:]) / max(1e-9, sum(with_cache[1:]))}
    write("cache_speed", res)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    xs = range(1, a.epochs + 1)
    ax.plot(xs, without, "o-", label="no cache")
    ax.plot(xs, with_cache, "o-", label="teacher-embedding cache")
    ax.set(xlabel="epoch", ylabel="wall time (s)", title="distillation epoch time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot_path("cache_speed"), dpi=110)


if __name__ == "__main__":
    main()
