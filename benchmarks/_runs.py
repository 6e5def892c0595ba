"""Distillation runs for the recipe benchmarks (recipe_ablation, retention, student_shape).

Each run is one ``edgeclip.compress`` call from the reference teacher on ShapesWorld, scored on the same
evaluation sets as the teacher (>= 2,048 zero-shot images, 1,000 retrieval pairs). Runs execute in child
processes (``--jobs`` at a time; on a GPU several small students share it) and the results JSON is rewritten as
each run finishes, so a long benchmark that is stopped keeps what it measured.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

METRICS = ("seen_top1", "held_out_top1", "i2t_R@1", "t2i_R@1")


def metric_panels():
    """A figure with one panel per metric in ``METRICS``, sharing the retained-% axis (Agg: no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(1, len(METRICS), figsize=(15, 4), sharey=True)


def save_panels(fig, ax, name: str, title: str, fontsize: float | None = None) -> None:
    """Finish ``metric_panels``: each panel titled by its metric with the teacher's 100% line, then the figure's
    title, written to ``results/NAME.png``."""
    import matplotlib.pyplot as plt
    from _common import plot_path
    for i, k in enumerate(METRICS):
        ax[i].axhline(100, ls="--", c="k", lw=0.8)
        ax[i].set(title=k, ylabel="retained (%)" if i == 0 else None)
    fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    fig.savefig(plot_path(name), dpi=110)
    plt.close(fig)


def pct(retained: dict, k: str) -> float:
    """Retained ``k`` in percent for a plot (NaN where the teacher scored 0 and there is no ratio)."""
    v = retained.get(k)
    return float("nan") if v is None else v * 100


@dataclass
class Run:
    name: str
    target: str = "25%"
    loss: str = "affinity=1"
    views: int = 1
    steps: int = 800
    stages: int | str = 1
    shape: str = "deep"
    method: str = "manual"
    eval_every: int = 0
    seed: int = 0
    extra: dict = field(default_factory=dict)  # labels for plots (e.g. {"arm": "+FD"})


def common_args(p, steps: int = 800) -> None:
    p.add_argument("--teacher", default="reference", help="teacher spec (the reference teacher; a tiny one in the "
                   "smoke tests)")
    p.add_argument("--steps", type=int, default=steps, help="distillation steps per run (all stages)")
    p.add_argument("--samples", type=int, default=12_800, help="ShapesWorld training pairs")
    p.add_argument("--batch-size", type=int, default=128, help="pairs per step")
    p.add_argument("--eval-images", type=int, default=2048, help="zero-shot evaluation images (>= 2048)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (child processes)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers per run")
    p.add_argument("--only", default="", help="comma list of run names to do (default: all)")


def _one(spec: dict, opts: dict) -> dict:
    """In the child: train, score, return the result (the student is thrown away)."""
    import torch
    torch.set_num_threads(opts["threads"])
    from edgeclip import compress
    from edgeclip.distill.report import shapes_eval_fn
    from edgeclip.models import load_teacher
    from edgeclip.models.params import count_params
    run = Run(**spec)
    teacher = load_teacher(opts["teacher"])
    eval_fn = shapes_eval_fn(n_zeroshot=opts["eval_images"], n_retrieval=1000)
    t_eval = eval_fn(teacher)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        res = compress(teacher, run.target, data=f"shapes:{opts['samples']}", steps=run.steps, stages=run.stages,
                       out=Path(tmp) / "run", batch_size=opts["batch_size"], evaluate=run.eval_every > 0,
                       eval_every=run.eval_every, ckpt_every=10 ** 9, loss=run.loss, views=run.views,
                       shape=run.shape, method=run.method, seed=run.seed, device=opts["device"],
                       workers=opts["workers"], keep_ckpt=False)
    wall = time.time() - t0
    s_eval = eval_fn(res.student.cpu())
    curve, offset = [], 0
    for st in res.report["stages"]:  # cumulative steps across stages
        curve += [{**e, "step": e["step"] + offset} for e in st["evals"]]
        offset += st["loss_steps"][-1] if st["loss_steps"] else 0
    tv = count_params(teacher).vision
    return {**asdict(run), "plan": res.report["plan"], "student_config": res.report["student"]["config"],
            "vision_params": count_params(res.student).vision, "vision_fraction": round(count_params(res.student)
                                                                                       .vision / tv, 4),
            "teacher_eval": t_eval, "eval": s_eval, "wall_s": round(wall, 1),
            "retained": {k: round(s_eval[k] / t_eval[k], 4) if t_eval[k] else None for k in METRICS},
            "curve": [{"step": e["step"], "retained": {k: round(e[k] / t_eval[k], 4) for k in METRICS if t_eval[k]}}
                      for e in curve],
            "terms_final": [st["terms_final"] for st in res.report["stages"]]}


def run_all(name: str, runs: list[Run], a, meta: dict, plot) -> dict:
    """Run ``runs`` (``a.jobs`` at a time), rewriting ``results/NAME.json`` and its plot after each one."""
    from _common import write
    only = set(filter(None, a.only.split(",")))
    todo = [r for r in runs if not only or r.name in only]
    opts = {k: getattr(a, k) for k in ("teacher", "samples", "batch_size", "eval_images", "device", "threads",
                                       "workers")}
    results = {**meta, "options": opts, "runs": []}
    pending, live = list(todo), []
    with tempfile.TemporaryDirectory() as tmp:
        while pending or live:
            while pending and len(live) < a.jobs:
                r = pending.pop(0)
                out = Path(tmp) / f"{len(pending)}-{abs(hash(r.name))}.json"
                log = open(Path(tmp) / (out.stem + ".log"), "w")
                p = subprocess.Popen([sys.executable, __file__, json.dumps(asdict(r)), json.dumps(opts), str(out)],
                                     stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
                live.append((r, p, out, log, time.time()))
            time.sleep(2)
            for item in list(live):
                r, p, out, log, t0 = item
                if p.poll() is None:
                    continue
                live.remove(item)
                log.close()
                if p.returncode != 0 or not out.is_file():
                    tail = Path(log.name).read_text()[-1500:]
                    print(f"run {r.name} failed (exit {p.returncode}):\n{tail}", file=sys.stderr)
                    results.setdefault("failed", []).append({"name": r.name, "exit": p.returncode, "log": tail})
                    write(name, results)
                    continue
                res = json.loads(out.read_text())
                results["runs"].append(res)
                print(f"{r.name}: retained {res['retained']} ({(time.time() - t0) / 60:.1f} min)", flush=True)
                write(name, results)
                plot(results)
    if results.get("failed"):  # what finished is written; the benchmark still fails
        sys.exit(f"{len(results['failed'])} of {len(todo)} runs failed: {[f['name'] for f in results['failed']]}")
    return results


if __name__ == "__main__":  # child: one run
    spec, opts, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
    out.write_text(json.dumps(_one(spec, opts)))
