"""Retention vs budget: the 50%, 25% and 10% (multi-stage) students with the default recipe at 800 and 3,200
steps, with the retained accuracy of the 3,200-step runs along the way (one curve per budget).

Retained = student / teacher on seen and held-out zero-shot top-1 and R@1, scored on the same evaluation sets
in one run; the goal (issue #17) is >= 99 / 95 / 80% at 50 / 25 / 10% after 3,200 steps. Usage:
    python benchmarks/retention.py --jobs 6 --device cuda
"""
from __future__ import annotations

import argparse
import re

from _runs import METRICS, Run, common_args, metric_panels, pct, run_all, save_panels
from edgeclip.distill.losses import format_loss
from edgeclip.distill.recipe import DEFAULT_LOSS, DEFAULT_SHAPE, DEFAULT_VIEWS

GOAL = {"50%": 0.99, "25%": 0.95, "10%": 0.80}


def _name(value: str) -> str:
    """--name is a file name inside results/, never a path."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise argparse.ArgumentTypeError(f"must be letters, digits, '_' or '-' (a file name in results/), got {value!r}")
    return value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p, steps=3200)
    p.add_argument("--short", type=int, default=800, help="the shorter run's steps")
    p.add_argument("--eval-every", type=int, default=200, help="evaluation interval of the long runs (the curve)")
    p.add_argument("--targets", default=",".join(GOAL), help="comma list of budgets (the goal is set for 50%%, "
                   "25%% and 10%%)")
    p.add_argument("--loss", default=format_loss(DEFAULT_LOSS), help="loss weights (default: the recipe's)")
    p.add_argument("--views", type=int, default=DEFAULT_VIEWS, help="views per sample (default: the recipe's)")
    p.add_argument("--shape", default=DEFAULT_SHAPE, help="student shape (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run")
    p.add_argument("--name", default="retention", type=_name, help="results name (results/NAME.json/.png): variants of "
                   "the recipe go beside the default's")
    a = p.parse_args(argv)
    goal = {t: GOAL.get(t) for t in a.targets.split(",")}
    runs = [Run(f"{t} | {n} steps", target=t, loss=a.loss, views=a.views, shape=a.shape, steps=n, seed=a.seed,
                stages="auto", eval_every=a.eval_every if n == a.steps else 0, extra={"budget": t})
            for n in (a.steps, a.short) if n for t in goal]
    recipe = {"loss": a.loss, "views": a.views, "shape": a.shape, "seed": a.seed}
    run_all(a.name, runs, a, {"recipe": recipe, "goal": goal, "steps": [a.short, a.steps]},
            lambda r: _plot(r, a.name))


def _plot(r, name="retention"):
    fig, ax = metric_panels()
    for i, k in enumerate(METRICS):
        for n, (budget, goal) in enumerate(r["goal"].items()):
            c = f"C{n}"
            for x in r["runs"]:
                if x["extra"]["budget"] != budget:
                    continue
                if x["curve"]:
                    ax[i].plot([e["step"] for e in x["curve"]], [pct(e["retained"], k) for e in x["curve"]], c=c,
                               label=f"{budget} ({x['stages'] if x['stages'] != 'auto' else len(x['plan'])} st.)")
                ax[i].plot([x["steps"]], [pct(x["retained"], k)], "o", c=c, mfc="none" if not x["curve"] else c)
            if goal is not None:
                ax[i].axhline(goal * 100, ls=":", c=c, lw=0.8)
        ax[i].set(xlabel="steps")
    if ax[0].get_legend_handles_labels()[0]:
        ax[0].legend(fontsize=8)
    rc = r["recipe"]
    save_panels(fig, ax, name, f"Retention vs steps, recipe: {rc['loss']}, {rc['views']} view(s), {rc['shape']}, "
                f"seed {rc['seed']} (dotted: goal; open circles: separate shorter runs)", fontsize=10)


if __name__ == "__main__":
    main()
