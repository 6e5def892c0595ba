"""Size vs accuracy on ShapesWorld: students at 50%, 25% and 10% of the teacher's vision tower, same budget.

Every student gets the same number of distillation steps through ``edgeclip.compress``; the 10% student is
run twice, in one stage and in the multi-stage plan ``stages="auto"`` picks (steps split across stages), so
the comparison is like for like. Accuracy retained = student / teacher on seen and held-out zero-shot top-1
and image->text R@1, all scored on the same evaluation sets in one run. Usage:
    python benchmarks/size_vs_accuracy.py --steps 300
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from _common import plot_path, write
from edgeclip import compress
from edgeclip.distill.report import shapes_eval_fn
from edgeclip.models import load_teacher
from edgeclip.models.params import count_params

METRICS = ("seen_top1", "held_out_top1", "i2t_R@1")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="reference", help="teacher spec")
    p.add_argument("--sizes", default="50%,25%,10%", help="comma list of vision budgets")
    p.add_argument("--multistage", default="10%", help="sizes also run with stages='auto' (comma list)")
    p.add_argument("--steps", type=int, default=300, help="distillation steps per student (all stages)")
    p.add_argument("--batch-size", type=int, default=128, help="pairs per step")
    p.add_argument("--samples", type=int, default=12_800, help="ShapesWorld training pairs")
    p.add_argument("--eval-images", type=int, default=2048, help="zero-shot evaluation images")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--loss", default=None, help="loss weights (default: the recipe's; the README's table: affinity=1)")
    p.add_argument("--shape", default=None, help="student shape (default: the recipe's; the README's table: deep)")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    teacher = load_teacher(a.teacher)
    eval_fn = shapes_eval_fn(n_zeroshot=a.eval_images, n_retrieval=1000)
    t_eval = eval_fn(teacher)
    tv = count_params(teacher).vision
    runs = [(s, 1) for s in a.sizes.split(",")] + [(s, "auto") for s in a.multistage.split(",") if s]
    results = {"teacher": {"eval": t_eval, "vision_params": tv}, "steps": a.steps, "batch_size": a.batch_size,
               "loss": a.loss or "default", "shape": a.shape or "default", "runs": []}
    for size, stages in runs:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            res = compress(teacher, size, data=f"shapes:{a.samples}", steps=a.steps, stages=stages, out=tmp,
                           batch_size=a.batch_size, evaluate=False, ckpt_every=10 ** 9, loss=a.loss, shape=a.shape)
            wall = time.time() - t0
        s_eval = eval_fn(res.student)
        run = {"target": size, "stages": len(res.report["plan"]), "plan": res.report["plan"],
               "vision_params": count_params(res.student).vision, "eval": s_eval, "wall_s": round(wall, 1),
               "retained": {k: round(s_eval[k] / t_eval[k], 4) if t_eval[k] else None for k in METRICS}}
        run["vision_fraction"] = round(run["vision_params"] / tv, 4)
        results["runs"].append(run)
        print(f"{size} stages={run['stages']}: {s_eval} retained {run['retained']} ({wall / 60:.1f} min)")
    write("size_vs_accuracy", results)
    _plot(results)


def _plot(r):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, len(METRICS), figsize=(12, 3.8))
    for i, k in enumerate(METRICS):
        for stages, marker in ((1, "o"), ("multi", "s")):
            pts = sorted((x["vision_fraction"] * 100, x["retained"][k] * 100) for x in r["runs"]
                         if (x["stages"] == 1) == (stages == 1) and x["retained"][k] is not None)
            if pts:
                ax[i].plot(*zip(*pts), marker=marker, ls="-" if stages == 1 else "none",
                           label="one stage" if stages == 1 else "multi-stage")
        ax[i].axhline(100, ls="--", c="k", lw=0.8)
        ax[i].set(xlabel="student vision params (% of teacher)", ylabel="retained (%)", title=k)
    ax[0].legend()
    fig.suptitle(f"ShapesWorld, {r['steps']} distillation steps per student")
    fig.tight_layout()
    fig.savefig(plot_path("size_vs_accuracy"), dpi=110)


if __name__ == "__main__":
    main()
