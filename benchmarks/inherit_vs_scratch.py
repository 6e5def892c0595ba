"""Inheritance vs scratch on ShapesWorld: held-out zero-shot top-1 against steps, same student, same budget.

Runs manual (leading / magnitude) inheritance, auto (L0) inheritance and random init side by side, evaluating
every --eval-every steps, and reports the speed-up: steps scratch needs for its final accuracy divided by the
steps each method needs to reach it. Usage:
    python benchmarks/inherit_vs_scratch.py --steps 300 --target 25%
"""
from __future__ import annotations

import argparse
import copy

import torch

from _common import plot_path, write
from edgeclip.data.pairs import ShapesPairs
from edgeclip.distill.losses import affinity_kl, parse_loss
from edgeclip.data.loader import Batches
from edgeclip.distill import DistillConfig, TeacherCache, distill
from edgeclip.evaluate import embed_images, embed_texts, evaluate_shapes, shapes_eval_sets
from edgeclip.inherit import inherit_weights
from edgeclip.distill.prune import AutoConfig, prune_and_fuse
from edgeclip.models import get_tokenizer, load_teacher, model_config
from edgeclip.models.io import image_transform, preprocess_cfg
from edgeclip.models.params import student_config


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="reference", help="teacher spec")
    p.add_argument("--target", default="25%", help="vision budget of the student")
    p.add_argument("--steps", type=int, default=300, help="distillation steps per method")
    p.add_argument("--eval-every", type=int, default=50, help="evaluation interval (steps)")
    p.add_argument("--fine-until", type=int, default=100, help="also evaluate every --fine-every steps up to here")
    p.add_argument("--fine-every", type=int, default=10, help="the fine grid's interval (steps)")
    p.add_argument("--loss", default=None, help="loss weights (default: the recipe's, edgeclip.distill.recipe)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch-size", type=int, default=128, help="pairs per step")
    p.add_argument("--samples", type=int, default=12_800, help="ShapesWorld training pairs")
    p.add_argument("--auto-steps", type=int, default=100, help="prune-phase steps of the auto method")
    p.add_argument("--methods", default="manual-leading,manual-magnitude,auto,scratch",
                   help="comma list of manual-leading, manual-magnitude, auto, auto-per-layer, scratch")
    p.add_argument("--eval-images", type=int, default=2048, help="zero-shot evaluation images")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p.parse_args(argv)


def step0(student, teacher, n: int) -> dict:
    s = shapes_eval_sets(n, 1000)
    tok_s, tok_t = get_tokenizer(student), get_tokenizer(teacher)
    si, st = embed_images(student, s["zs_images"][:512]), embed_texts(student, tok_s, s["prompts"])
    ti, tt = embed_images(teacher, s["zs_images"][:512]), embed_texts(teacher, tok_t, s["prompts"])
    agree = (si @ st.T).argmax(1).eq((ti @ tt.T).argmax(1)).float().mean().item() * 100
    ri, rt = embed_images(student, s["ret_images"][:256]), embed_texts(student, tok_s, s["ret_captions"][:256])
    qi, qt = embed_images(teacher, s["ret_images"][:256]), embed_texts(teacher, tok_t, s["ret_captions"][:256])
    return {"affinity_kl": affinity_kl(ri, rt, qi, qt), "top1_agreement": agree}


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    teacher = load_teacher(a.teacher)
    cfg = student_config(model_config(teacher), a.target)  # "25%" is relative to the teacher
    pairs = ShapesPairs(a.samples, cfg["vision_cfg"]["image_size"])
    tf = image_transform(preprocess_cfg(teacher))
    cache = TeacherCache()
    results = {"target": a.target, "student_cfg": cfg, "steps": a.steps, "loss": parse_loss(a.loss),
               "device": a.device, "methods": {}}

    def eval_fn(m):
        z = evaluate_shapes(m, get_tokenizer(m), n_zeroshot=a.eval_images, n_retrieval=500).zero_shot
        return {"seen": z["seen_top1"], "held_out": z["held_out_top1"]}

    t_eval = eval_fn(teacher)
    results["teacher"] = t_eval
    for method in a.methods.split(","):
        if method in ("auto", "auto-per-layer"):  # tied masks (uniform student) or untied (per-layer sizes)
            student, _ = prune_and_fuse(teacher, cfg, pairs, tf, teacher, AutoConfig(
                steps=a.auto_steps, warmup=a.auto_steps // 2, batch_size=a.batch_size,
                tie_layers=method == "auto"))
        else:
            kind, _, width = method.partition("-")
            student, _ = inherit_weights(teacher, cfg, method=kind, width=width or "leading")
        s0 = step0(student, teacher, a.eval_images)
        batches = Batches(pairs, a.batch_size, 0, tf, get_tokenizer(teacher), get_tokenizer(student))
        dcfg = DistillConfig(steps=a.steps, batch_size=a.batch_size, eval_every=a.eval_every, warmup=30,
                             eval_steps=tuple(range(a.fine_every, a.fine_until + 1, a.fine_every)),
                             loss=parse_loss(a.loss), device=a.device)
        first = {"step": 0, **eval_fn(student)}  # the inherited (or random) weights before any step
        student, hist = distill(copy.deepcopy(student), teacher, batches, dcfg, cache=cache, eval_fn=eval_fn,
                                desc=method)
        student.cpu(), teacher.cpu()  # the next method inherits from the teacher on the CPU
        results["methods"][method] = {"step0": s0, "per_layer": model_config(student).get("edgeclip_layers"),
                                      "evals": [first, *hist.evals], "loss": hist.loss[::10],
                                      "wall_s": hist.wall_s}
        print(method, s0, hist.evals[-1])
    scratch = results["methods"].get("scratch")
    if scratch:
        final = scratch["evals"][-1]["held_out"]
        s_steps = next(e["step"] for e in scratch["evals"] if e["held_out"] >= final)
        for m, r in results["methods"].items():
            hit = next((e["step"] for e in r["evals"] if e["held_out"] >= final), None)
            r["steps_to_scratch_final"] = hit
            r["speedup_vs_scratch"] = (s_steps / hit) if hit else None
    write("inherit_vs_scratch", results)
    _plot(results)


def _plot(r):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for m, d in r["methods"].items():
        steps = [e["step"] for e in d["evals"]]
        ax[0].plot(steps, [e["held_out"] for e in d["evals"]], marker="o", label=m)
        ax[1].plot(steps, [e["seen"] for e in d["evals"]], marker="o", label=m)
    for i, k in enumerate(("held_out", "seen")):
        ax[i].axhline(r["teacher"][k], ls="--", c="k", lw=0.8, label="teacher")
        ax[i].set(xlabel="distillation steps", ylabel=f"{k} zero-shot top-1 (%)", title=f"{k} combinations")
    ax[0].legend()
    fig.tight_layout()
    fig.savefig(plot_path("inherit_vs_scratch"), dpi=110)


if __name__ == "__main__":
    main()
