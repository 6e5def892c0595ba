"""Training speed beside open_clip's own distillation loop (issue #24): pairs/s and retained zero-shot, one run.

The same teacher (the reference, which open_clip loads as ``local-dir:``), the same student architecture and start
weights (manual inheritance, saved as an open_clip folder), the same data (ShapesWorld rendered to PNG + a
``filepath,title`` CSV that both read), batch 128, fp32, the same threads and DataLoader workers, the same peak lr,
warm-up, weight decay, AdamW betas and gradient clip. Arms, each in a fresh process, alternated A B C D per round:
  (a) open_clip   python -m open_clip_train.main --distill-model local-dir:TEACHER (DistillClipLoss: CLIP loss +
                  KL to the teacher's logits; the teacher runs every step)
  (b) affinity    edgeclip compress --loss affinity=1, teacher cache off (the teacher runs every step)
  (c) default     edgeclip compress, the default recipe (in-memory teacher cache: epoch 2 on never runs it)
  (d) store       the default recipe reading a teacher store written by 'edgeclip teach' beforehand (timed apart)
Speed: pairs/s from each loop's own per-step wall times (open_clip's logged batch time with --log-every-n-steps 1;
edgeclip's report step_s), data loading and checkpoints included, scoring excluded; "after warm-up" skips the
first --warmup-steps, "epoch 2+" skips the first epoch. Quality: every arm's final student is scored on the same
ShapesWorld evaluation sets as the teacher in this run (retained = student / teacher), after the same pairs.
Usage:  python benchmarks/vs_open_clip.py [--samples 3840] [--epochs 2] [--rounds 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import plot_path, write

ROOT = Path(__file__).resolve().parents[1]
TEACHER_DIR = ROOT / "edgeclip" / "assets" / "reference_teacher"
ARMS = ("open_clip", "affinity", "default", "store")
LABELS = {"open_clip": "(a) open_clip_train distill", "affinity": "(b) edgeclip affinity, no cache",
          "default": "(c) edgeclip default recipe", "store": "(d) default + teacher store"}
METRICS = ("seen_top1", "held_out_top1", "i2t_R@1", "t2i_R@1")
# open_clip_train's log line for one step: "Train Epoch: 0 [ 128/3840 (3%)] ... Batch (t): 0.912, ..."
STEP_LINE = re.compile(r"Train Epoch: (\d+) \[\s*(\d+)/\s*(\d+).*?Batch \(t\): ([\d.]+)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=3840, help="ShapesWorld training pairs (one epoch)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per arm (>= 2: the cache arms need epoch 2)")
    p.add_argument("--batch-size", type=int, default=128, help="pairs per step")
    p.add_argument("--rounds", type=int, default=3, help="passes over the arms (order alternates)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (every arm; benchmarks/gpu_check.py uses cuda)")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every arm")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers in every arm")
    p.add_argument("--warmup-steps", type=int, default=5, help="steps left out of 'after warm-up'")
    p.add_argument("--target", default="25%", help="student budget (manual inheritance, deep shape)")
    p.add_argument("--eval-images", type=int, default=2048, help="zero-shot evaluation images")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma list of {ARMS}")
    p.add_argument("--name", default="vs_open_clip", help="results file stem")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    return p.parse_args(argv)


def _env(a) -> dict:
    n = str(a.threads)
    env = {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "PYTHONUNBUFFERED": "1"}
    if a.device == "cpu":  # open_clip_train takes a visible GPU by itself
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def prepare(work: Path, a) -> dict:
    """PNG + CSV data, the inherited student's open_clip folder, and the teacher store (its time is recorded)."""
    from edgeclip.data.pairs import ShapesPairs
    from edgeclip.inherit import inherit_weights
    from edgeclip.models import load_teacher, model_config, save_student
    from edgeclip.models.io import preprocess_cfg
    from edgeclip.models.params import student_config
    imgs = work / "images"
    imgs.mkdir(parents=True, exist_ok=True)
    pairs, rows = ShapesPairs(a.samples), ["filepath\ttitle"]  # tab-separated: open_clip's default separator
    for i in range(len(pairs)):
        img, cap = pairs.load(i)
        path = imgs / f"{i:06d}.png"
        img.save(path)
        rows.append(f"{path}\t{cap}")
    (work / "train.tsv").write_text("\n".join(rows) + "\n")
    teacher = load_teacher("reference")
    student, _ = inherit_weights(teacher, student_config(model_config(teacher), a.target, shape="deep"))
    save_student(student, work / "student_start", preprocess_cfg=preprocess_cfg(teacher))
    t0 = time.time()
    subprocess.run([str(Path(sys.executable).parent / "edgeclip"), "teach", "reference", "--data",
                    str(work / "train.tsv"), "--out", str(work / "store"), "--workers", str(a.workers), "--device",
                    a.device], check=True, env=_env(a), stdout=subprocess.DEVNULL)
    return {"teach_s": round(time.time() - t0, 1), "data": str(work / "train.tsv")}


def run_open_clip(work: Path, a, tag: str) -> dict:
    """open_clip_train's distillation loop; per-step times from its log, the final weights from its checkpoint."""
    logs = work / "oc_logs"
    cmd = [sys.executable, "-m", "open_clip_train.main", "--model", f"local-dir:{work / 'student_start'}",
           "--distill-model", f"local-dir:{TEACHER_DIR}", "--distill-pretrained", "local-dir",  # ignored by open_clip
           "--train-data", str(work / "train.tsv"), "--dataset-type", "csv", "--csv-separator", "\t",
           "--csv-img-key", "filepath", "--csv-caption-key", "title", "--batch-size", str(a.batch_size),
           "--epochs", str(a.epochs), "--lr", "5e-4", "--warmup", "50", "--wd", "0.2", "--beta1", "0.9",
           "--beta2", "0.98", "--eps", "1e-6", "--grad-clip-norm", "5.0", "--workers", str(a.workers),
           "--precision", "fp32", "--seed", "0", "--log-every-n-steps", "1", "--save-frequency", str(a.epochs),
           "--zeroshot-frequency", "0", "--val-frequency", "0", "--report-to", "", "--logs", str(logs),
           "--name", tag]
    t0 = time.time()
    p = subprocess.run(cmd, env=_env(a), capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode:
        raise SystemExit(f"open_clip_train failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    log = (logs / tag / "out.log").read_text()
    steps = [(int(m[1]), float(m[4])) for m in STEP_LINE.finditer(log)]
    per_epoch = a.samples // a.batch_size
    ckpt = logs / tag / "checkpoints" / f"epoch_{a.epochs}.pt"
    return {"step_s": [t for _, t in steps], "epochs": [e for e, _ in steps], "steps_per_epoch": per_epoch,
            "wall_s": round(wall, 1), "weights": str(ckpt)}


def run_edgeclip(work: Path, a, arm: str, tag: str) -> dict:
    """One compress call in a fresh process (``--child``); per-step times from its report."""
    spec = {"arm": arm, "csv": str(work / "train.tsv"), "store": str(work / "store"), "out": str(work / tag),
            "samples": a.samples, "epochs": a.epochs, "batch_size": a.batch_size, "threads": a.threads,
            "workers": a.workers, "target": a.target, "device": a.device}
    t0 = time.time()
    p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=_env(a), capture_output=True,
                       text=True)
    if p.returncode:
        raise SystemExit(f"edgeclip arm {arm} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    res = json.loads((work / tag / "report.json").read_text())
    st = res["stages"][0]
    per_epoch = a.samples // a.batch_size
    return {"step_s": st["step_s"], "epochs": [i // per_epoch for i in range(len(st["step_s"]))],
            "steps_per_epoch": per_epoch, "wall_s": round(time.time() - t0, 1),
            "weights": str(work / tag / "student")}


def child(spec: dict) -> None:
    """The edgeclip arm's process: one compress call, nothing else in it."""
    import torch
    torch.set_num_threads(spec["threads"])
    from edgeclip import compress
    arm = spec["arm"]
    kw = {"affinity": {"loss": "affinity=1", "cache_teacher": False}, "default": {},
          "store": {"teacher_store": spec["store"]}}[arm]
    compress("reference", spec["target"], data=spec["csv"], epochs=spec["epochs"], stages=1, shape="deep",
             out=spec["out"], batch_size=spec["batch_size"], workers=spec["workers"], evaluate=False,
             device=spec["device"], **kw)


def score(arm_res: dict, a, eval_fn, start: Path) -> dict:
    """Load one arm's final weights into the student architecture and score it."""
    import torch
    from edgeclip.models import load_student
    if arm_res["weights"].endswith(".pt"):  # open_clip_train's checkpoint: {"epoch", "name", "state_dict", ...}
        model = load_student(start)
        sd = torch.load(arm_res["weights"], map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    else:
        model = load_student(arm_res["weights"])
    return eval_fn(model.eval())


def rate(step_s: list[float], batch: int, skip: int) -> float | None:
    """Pairs per second over the steps after the first ``skip``."""
    t = step_s[skip:]
    return round(batch * len(t) / sum(t), 2) if t else None


def summarise(runs: list[dict], a) -> dict:
    out = {}
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        if not rs:
            continue
        warm = [rate(r["step_s"], a.batch_size, a.warmup_steps) for r in rs]
        ep2 = [rate(r["step_s"], a.batch_size, r["steps_per_epoch"]) for r in rs]
        out[arm] = {"label": LABELS[arm], "rounds": len(rs),
                    "pairs_per_s_after_warmup": warm, "pairs_per_s_epoch2": ep2,
                    "median_after_warmup": statistics.median(warm), "median_epoch2": statistics.median(ep2),
                    "retained": rs[-1]["retained"], "eval": rs[-1]["eval"]}
    if "open_clip" in out:
        base_w, base_2 = out["open_clip"]["median_after_warmup"], out["open_clip"]["median_epoch2"]
        for arm, s in out.items():
            s["x_open_clip_after_warmup"] = round(s["median_after_warmup"] / base_w, 3)
            s["x_open_clip_epoch2"] = round(s["median_epoch2"] / base_2, 3)
    return out


def plot(res: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = res["summary"]
    arms = list(s)
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    x = range(len(arms))
    ax[0].bar([i - 0.2 for i in x], [s[k]["median_after_warmup"] for k in arms], 0.4, label="after warm-up")
    ax[0].bar([i + 0.2 for i in x], [s[k]["median_epoch2"] for k in arms], 0.4, label="epoch 2+")
    for arm_i, k in enumerate(arms):  # every round's value, so the spread is visible
        ax[0].scatter([arm_i - 0.2] * s[k]["rounds"], s[k]["pairs_per_s_after_warmup"], c="k", s=8, zorder=3)
        ax[0].scatter([arm_i + 0.2] * s[k]["rounds"], s[k]["pairs_per_s_epoch2"], c="k", s=8, zorder=3)
    ax[0].set_xticks(list(x), [LABELS[k] for k in arms], rotation=20, ha="right", fontsize=8)
    ax[0].set(ylabel="pairs/s (median of rounds)", title="training speed, same hardware, threads and data")
    ax[0].legend()
    w = 0.8 / len(METRICS)
    for j, m in enumerate(METRICS):
        ax[1].bar([i + j * w for i in x], [100 * (s[k]["retained"].get(m) or 0) for k in arms], w, label=m)
    ax[1].axhline(100, ls="--", c="k", lw=0.8)
    ax[1].set_xticks([i + w * 1.5 for i in x], [LABELS[k] for k in arms], rotation=20, ha="right", fontsize=8)
    ax[1].set(ylabel="retained (%)", title=f"after the same {res['pairs']} pairs")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plot_path(res["name"]), dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    a = parse_args(argv)
    arms = [x for x in a.arms.split(",") if x]
    if bad := [x for x in arms if x not in ARMS]:
        raise SystemExit(f"unknown arm(s) {bad}; choose from {ARMS}")
    if a.epochs < 2:
        raise SystemExit("--epochs must be >= 2 (the cache arms are measured from epoch 2)")
    import torch
    torch.set_num_threads(a.threads)
    from edgeclip.distill.report import shapes_eval_fn
    from edgeclip.models import load_teacher
    if a.work is not None and Path(a.work).exists() and any(Path(a.work).iterdir()):
        raise SystemExit(f"--work {a.work!r} is not empty: give a new or empty folder (its files would be replaced)")
    tmp = tempfile.TemporaryDirectory() if a.work is None else None
    work = Path(a.work or tmp.name)
    prep = prepare(work, a)
    eval_fn = shapes_eval_fn(n_zeroshot=a.eval_images, n_retrieval=1000)
    t_eval = eval_fn(load_teacher("reference"))
    res = {"name": a.name, "options": vars(a), "prepare": prep, "teacher_eval": t_eval,
           "pairs": a.samples // a.batch_size * a.batch_size * a.epochs, "runs": []}
    for rnd in range(a.rounds):
        order = arms if rnd % 2 == 0 else arms[::-1]  # A B C D, then D C B A: drift hits every arm alike
        for arm in order:
            tag = f"{arm}_r{rnd}"
            r = run_open_clip(work, a, tag) if arm == "open_clip" else run_edgeclip(work, a, arm, tag)
            r["eval"] = score(r, a, eval_fn, work / "student_start")
            r["retained"] = {k: round(r["eval"][k] / t_eval[k], 4) if t_eval[k] else None for k in METRICS}
            r.update(arm=arm, round=rnd)
            res["runs"].append(r)
            print(f"round {rnd} {arm}: {rate(r['step_s'], a.batch_size, a.warmup_steps)} pairs/s after warm-up, "
                  f"{rate(r['step_s'], a.batch_size, r['steps_per_epoch'])} epoch 2+; retained {r['retained']}",
                  flush=True)
            res["summary"] = summarise(res["runs"], a)
            write(a.name, res)
            plot(res)
    if tmp is not None:
        tmp.cleanup()
    return res


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        main()
