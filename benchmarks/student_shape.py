"""The student's shape at a fixed budget: deep (the teacher's depth, narrower), wide (its width, fewer layers)
and balanced students at 25% and 10% of the vision tower, one stage each, same recipe, data, steps and seed.

The solver only offers towers within +-5% of the budget whose width is a whole number of heads; the JSON lists
those candidates, so a 'balanced' student identical to another shape is visible as such. Usage:
    python benchmarks/student_shape.py --jobs 4 --device cuda
"""
from __future__ import annotations

import argparse

from _runs import METRICS, Run, common_args, metric_panels, pct, run_all, save_panels
from edgeclip.distill.losses import format_loss
from edgeclip.distill.recipe import DEFAULT_LOSS, DEFAULT_VIEWS
from edgeclip.models import load_teacher, model_config
from edgeclip.models.params import STUDENT_SHAPES, student_config


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p)
    p.add_argument("--targets", default="25%,10%", help="comma list of vision budgets")
    a = p.parse_args(argv)
    t_cfg = model_config(load_teacher(a.teacher))
    loss, runs, solved = format_loss(DEFAULT_LOSS), [], {}
    for t in a.targets.split(","):
        seen = {}
        for shape in STUDENT_SHAPES:
            v = student_config(t_cfg, t, shape=shape)["vision_cfg"]
            solved[f"{t} {shape}"] = {"layers": v["layers"], "width": v["width"]}
            key = (v["layers"], v["width"])
            if key in seen:  # the same tower as another shape: trained once
                solved[f"{t} {shape}"]["same_as"] = seen[key]
                continue
            seen[key] = shape
            runs.append(Run(f"{t} | {shape}", target=t, loss=loss, views=DEFAULT_VIEWS, shape=shape, steps=a.steps,
                            extra={"budget": t, "shape": shape}))
    run_all("student_shape", runs, a, {"steps": a.steps, "recipe": {"loss": loss, "views": DEFAULT_VIEWS},
                                       "solved": solved}, _plot)


def _plot(r):
    import numpy as np
    runs = r["runs"]
    fig, ax = metric_panels()
    labels = [f"{x['extra']['budget']} {x['extra']['shape']}\n{x['student_config']['vision_cfg']['layers']}L x "
              f"{x['student_config']['vision_cfg']['width']}" for x in runs]
    for i, k in enumerate(METRICS):
        ax[i].bar(np.arange(len(runs)), [pct(x["retained"], k) for x in runs],
                  color=[f"C{STUDENT_SHAPES.index(x['extra']['shape'])}" for x in runs])
        ax[i].set_xticks(np.arange(len(runs)), labels, fontsize=8)
    save_panels(fig, ax, "student_shape",
                f"Student shape at a fixed budget, {r['steps']} steps, recipe {r['recipe']['loss']}")


if __name__ == "__main__":
    main()
