"""Recipe ablation on the reference teacher: which loss terms and augmentation keep the most of the teacher.

The 25% student (manual inheritance, one stage), the same data, steps and seed for every arm: affinity only
(TinyCLIP) vs + feature distillation (FD, CLIP-KD's x2000) vs + interactive contrastive (ICL) vs all of them
(+ the ground-truth CLIP loss), and FD alone; each with the plain images (1 view) and with K augmented views whose
teacher embeddings are cached. Retained = student / teacher on seen and held-out zero-shot top-1 and R@1, scored
on the same evaluation sets in one run. Usage:
    python benchmarks/recipe_ablation.py --steps 800 --jobs 4 --device cuda
"""
from __future__ import annotations

import argparse

from _runs import METRICS, Run, common_args, metric_panels, pct, run_all, save_panels

ARMS = {  # name -> loss weights
    "affinity (TinyCLIP)": "affinity=1",
    "+FD": "affinity=1,feature=2000",
    "+ICL": "affinity=1,icl=1",
    "all": "affinity=1,feature=2000,icl=1,contrastive=1",
    "FD only": "feature=2000",
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p)
    p.add_argument("--target", default="25%", help="student vision budget")
    p.add_argument("--views", default="1,4", help="comma list of views per sample to cross with every arm")
    a = p.parse_args(argv)
    runs = [Run(f"{arm} | views={v}", target=a.target, loss=loss, views=int(v), steps=a.steps,
                extra={"arm": arm})
            for v in a.views.split(",") for arm, loss in ARMS.items()]
    run_all("recipe_ablation", runs, a, {"steps": a.steps, "target": a.target, "arms": ARMS}, _plot)


def _plot(r):
    import numpy as np
    runs = r["runs"]
    views = sorted({x["views"] for x in runs})
    arms = [a for a in r["arms"] if any(x["extra"]["arm"] == a for x in runs)]
    fig, ax = metric_panels()
    w = 0.8 / max(1, len(views))
    for i, k in enumerate(METRICS):
        for j, v in enumerate(views):
            vals = [next((pct(x["retained"], k) for x in runs if x["extra"]["arm"] == a and x["views"] == v),
                         np.nan) for a in arms]
            ax[i].bar(np.arange(len(arms)) + j * w, vals, w, label=f"{v} view(s)")
        ax[i].set_xticks(np.arange(len(arms)) + w * (len(views) - 1) / 2, arms, rotation=30, ha="right")
    ax[0].legend()
    save_panels(fig, ax, "recipe_ablation",
                f"Recipe ablation: {r['target']} student, {r['steps']} steps, same data and seed")


if __name__ == "__main__":
    main()
