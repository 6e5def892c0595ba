"""``compress()``: teacher + budget + data -> trained student folder + report (plan, params, losses, metrics)."""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .._io import write_json, write_text
from ..errors import ConfigError
from ..models import get_tokenizer, load_teacher, model_config, save_student
from ..models.io import image_transform, preprocess_cfg
from ..models.checkpoint import check_finite
from ..models.params import budget_spec, config_params, count_params, parse_budget
from .stages import plan_stages
from .trainer import Batches, DistillConfig, TeacherCache, check_resume, distill


@dataclass
class CompressResult:
    student: torch.nn.Module
    out: Path
    report: dict = field(default_factory=dict)


def _check_device(device: str) -> str:
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but no CUDA GPU is available; use --device cpu")
    return str(device)


def _is_shapes(pairs) -> bool:
    from ..data.pairs import ShapesPairs
    return isinstance(pairs, ShapesPairs)


def compress(teacher, target_params, data="shapes", steps: int = 800, epochs: float | None = None,
             method: str = "manual", stages: int | str = "auto", out: str | Path = "runs/student",
             device: str = "cpu", batch_size: int = 128, lr: float | None = None, resume: bool = False,
             seed: int = 0, depth: str = "interval", width: str = "leading", eval_every: int = 0,
             ckpt_every: int = 50, cache_teacher: bool = True, hf: bool = False,
             evaluate: bool = True, tie_layers: bool = True, prune_steps: int = 200) -> CompressResult:
    """Distil ``teacher`` into a student of ``target_params`` (TinyCLIP: inheritance + affinity mimicking).

    Args:
        teacher: anything ``load_teacher`` accepts, or a loaded canonical CLIP.
        target_params: ``"8M"``, ``"500k"``, an int, or ``{"image": ..., "text": ...}`` (see ``parse_budget``).
        data: ``"shapes"`` / ``"shapes:N"`` (ShapesWorld), a CSV/TSV (``filepath,title``), webdataset tars,
            or any object with ``__len__`` and ``load(i) -> (PIL image, caption) | None``.
        steps: optimizer steps in total (split evenly across stages); ``epochs`` overrides it.
        method: ``"manual"`` (layer/channel selection), ``"auto"`` (L0 masks, fused), or ``"scratch"``.
        stages: ``"auto"`` (<= ~50% cut per stage) or a number of stages.
        out: output folder: ``student/``, ``stages/``, ``ckpt/``, ``report.json``, ``report.md``.
        device: ``"cpu"`` or ``"cuda"``; a GPU asked for but absent is an error.
        resume: continue from the checkpoints in ``out/ckpt`` (same result as an uninterrupted run).
        ckpt_every: steps between resumable checkpoints (written atomically).
        evaluate: score teacher and student on ShapesWorld's evaluation sets (when training on ShapesWorld).
        tie_layers: ``method="auto"`` only; ``False`` lets each layer of the last stage keep its own head and
            MLP counts (saved with exact shapes: loads through edgeclip, not plain open_clip or HF).
        prune_steps: ``method="auto"`` only; L0-mask steps per stage before distillation (target ramps over
            the first half).

    Returns:
        ``CompressResult`` with the student (eval mode), the output folder and the report dict.

    Raises:
        ConfigError / DataError / InheritError on bad input, before anything is written.

    Example:
        >>> res = compress("reference", "25%", data="shapes", steps=800)  # doctest: +SKIP
    """
    from ..data.pairs import open_pairs

    t_start = time.time()
    _check_args(target_params, data, steps, epochs, method, stages, batch_size, lr, seed, depth, width,
                eval_every, ckpt_every, prune_steps)
    if hf and not tie_layers and method == "auto":
        raise ConfigError("per-layer students have no Hugging Face CLIPModel equivalent; drop hf or tie layers")
    device = _check_device(device)
    if isinstance(teacher, torch.nn.Module):
        check_finite(teacher.state_dict(), "the teacher")
    else:
        teacher = load_teacher(teacher)
    t_cfg = model_config(teacher)
    t_pre = preprocess_cfg(teacher)
    target_arg, target_params = target_params, parse_budget(target_params, config_params(t_cfg))
    plan = plan_stages(t_cfg, target_params, stages)
    pairs = open_pairs(data, t_pre["size"] if isinstance(t_pre["size"], int) else t_pre["size"][0])
    batch_size = _fit_batch(batch_size, len(pairs))
    if epochs is not None:
        steps = max(1, round(epochs * len(pairs) / batch_size))
    if steps < len(plan):
        raise ConfigError(f"{steps} steps cannot train the {len(plan)} stages of the plan; ask for at least "
                          f"{len(plan)} steps or fewer stages")
    per_stage = [steps // len(plan) + (1 if i < steps % len(plan) else 0) for i in range(len(plan))]
    out = Path(out)
    if resume and method != "auto":  # auto students take their fused config only after pruning: checked on load
        for st in plan:
            check_resume(out / "ckpt" / f"stage{st.index}.pt", st.cfg)
    print("plan: " + " -> ".join(["teacher"] + [f"{s.vision / 1e6:.2f}M" for s in plan]))
    for s in plan:
        print("  " + s.describe())
    cfg = DistillConfig(batch_size=batch_size, lr=lr, seed=seed, device=device, eval_every=eval_every,
                        ckpt_every=ckpt_every)
    tf = image_transform(t_pre)
    cache = TeacherCache() if cache_teacher else None
    eval_fn = _shapes_eval_fn() if evaluate and _is_shapes(pairs) else None
    prev, stage_reports = teacher, []
    for st in plan:
        tie = tie_layers or st.index < len(plan)  # only the last stage may leave per-layer sizes
        student, inh = _make_student(prev, st.cfg, method, depth, width, seed, pairs, tf, teacher, device, tie,
                                     prune_steps)
        batches = Batches(pairs, batch_size, seed, tf, get_tokenizer(teacher), get_tokenizer(student))
        n = per_stage[st.index - 1]
        stage_cfg = replace(cfg, seed=seed + st.index, steps=n, warmup=min(50, max(1, n // 10)))
        student, hist = distill(student, teacher, batches, stage_cfg,
                                ckpt=out / "ckpt" / f"stage{st.index}.pt", cache=cache, resume=resume,
                                eval_fn=eval_fn, desc=f"stage {st.index}/{len(plan)}")
        save_student(student, out / "stages" / f"stage{st.index}", preprocess_cfg=t_pre)
        stage_reports.append({"stage": st.index, "config": st.cfg, "params": count_params(student).__dict__,
                              "inherit": inh, "final_loss": hist.loss[-1], "loss_curve": hist.loss[:: max(1, len(hist.loss) // 50)],
                              "evals": hist.evals, "wall_s": hist.wall_s, "samples_per_s": hist.samples_per_s})
        prev = student
    save_student(prev, out / "student", preprocess_cfg=t_pre, hf=hf)
    report = {
        "teacher": {"config": t_cfg, "params": count_params(teacher).__dict__},
        "student": {"config": model_config(prev), "params": count_params(prev).__dict__},
        "target_params": str(target_arg), "method": method, "data": pairs.describe(),
        "skipped_items": dict(getattr(pairs, "skipped", None).counts) if hasattr(pairs, "skipped") else {},
        "plan": [s.describe() for s in plan], "stages": stage_reports,
        "teacher_cache": {"hits": cache.hits, "misses": cache.misses} if cache else None,
    }
    if eval_fn:
        report["eval"] = {"teacher": eval_fn(teacher), "student": eval_fn(prev)}
    report["wall_s"] = time.time() - t_start
    write_json(out / "report.json", report)
    write_text(out / "report.md", report_markdown(report))
    return CompressResult(prev, out, report)


def _check_args(target, data, steps, epochs, method, stages, batch_size, lr, seed, depth, width, eval_every,
                ckpt_every, prune_steps) -> None:
    """Every argument checked before anything is loaded or written: one ``ConfigError`` line naming it."""
    from ..data.pairs import shapes_count

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_pos(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0

    budget_spec(target)
    shapes_count(data)
    for name, v, lo in (("steps", steps, 1), ("batch_size", batch_size, 2), ("eval_every", eval_every, 0),
                        ("ckpt_every", ckpt_every, 1), ("prune_steps", prune_steps, 1)):
        if not is_int(v) or v < lo:
            why = " (the affinity loss compares pairs within a batch)" if name == "batch_size" else ""
            raise ConfigError(f"{name} must be an integer >= {lo}{why}, got {v!r}")
    for name, v in (("epochs", epochs), ("lr", lr)):
        if v is not None and not is_pos(v):
            raise ConfigError(f"{name} must be a positive finite number, got {v!r}")
    if not is_int(seed):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if stages != "auto" and not (is_int(stages) and stages >= 1):
        raise ConfigError(f"stages must be 'auto' or an integer >= 1, got {stages!r}")
    for name, v, ok in (("method", method, ("manual", "auto", "scratch")), ("depth", depth, ("interval", "uniform")),
                        ("width", width, ("leading", "magnitude"))):
        if v not in ok:
            raise ConfigError(f"unknown {name} {v!r}; choose {', '.join(ok)}")


def _fit_batch(batch_size: int, n: int) -> int:
    """A batch cannot hold more distinct pairs than the data has (repeats teach nothing); at least 2 are needed."""
    from ..errors import DataError
    if n < 2:
        raise DataError(f"the dataset has {n} pair(s); distillation needs at least 2 (the affinity loss compares "
                        "pairs within a batch)")
    if batch_size > n:
        print(f"note: batch size {batch_size} is larger than the {n} pairs in the data; using {n}", file=sys.stderr)
    return min(batch_size, n)


def _make_student(prev, cfg, method, depth, width, seed, pairs, tf, teacher, device, tie_layers, prune_steps):
    from ..inherit import inherit_weights
    if method == "auto":
        from .prune import AutoConfig, prune_and_fuse
        auto = AutoConfig(steps=prune_steps, warmup=max(1, prune_steps // 2), seed=seed, device=device,
                          tie_layers=tie_layers)
        student, rep = prune_and_fuse(prev, cfg, pairs, tf, teacher, auto)
        return student, rep
    student, rep = inherit_weights(prev, cfg, method=method, depth=depth, width=width, seed=seed)
    return student, rep.to_dict()


def _shapes_eval_fn(n_zeroshot: int = 2048, n_retrieval: int = 1000):
    from ..evaluate import evaluate_shapes

    def fn(model) -> dict:
        r = evaluate_shapes(model, get_tokenizer(model), n_zeroshot=n_zeroshot, n_retrieval=n_retrieval)
        return {**{k: round(v, 2) for k, v in r.zero_shot.items() if k.endswith("top1")},
                "i2t_R@1": round(r.retrieval["i2t_R@1"], 2), "t2i_R@1": round(r.retrieval["t2i_R@1"], 2)}
    return fn


def report_markdown(r: dict) -> str:
    tp, sp = r["teacher"]["params"], r["student"]["params"]
    lines = ["# edgeclip compress report", "",
             f"- method: {r['method']}, data: {r['data']}, wall time: {r['wall_s'] / 60:.1f} min",
             f"- plan: {' -> '.join(r['plan'])}" if len(r["plan"]) > 1 else f"- plan: {r['plan'][0]}", "",
             "| | vision | text (excl. tok. emb.) | token emb. | total |", "|---|---:|---:|---:|---:|",
             f"| teacher | {tp['vision']:,} | {tp['text']:,} | {tp['token_embedding']:,} | {tp['total']:,} |",
             f"| student | {sp['vision']:,} | {sp['text']:,} | {sp['token_embedding']:,} | {sp['total']:,} |",
             f"| ratio | {sp['vision'] / tp['vision']:.1%} | {sp['text'] / tp['text']:.1%} | | "
             f"{sp['total'] / tp['total']:.1%} |", ""]
    for s in r["stages"]:
        lines.append(f"- stage {s['stage']}: final loss {s['final_loss']:.4f}, {s['wall_s'] / 60:.1f} min, "
                     f"{s['samples_per_s']:.0f} samples/s")
    if r.get("teacher_cache"):
        lines.append(f"- teacher cache: {r['teacher_cache']['hits']} hits, {r['teacher_cache']['misses']} misses")
    if r.get("skipped_items"):
        lines.append(f"- skipped items: {r['skipped_items']}")
    if "eval" in r:
        t, s = r["eval"]["teacher"], r["eval"]["student"]
        keys = [k for k in t if k in s]
        lines += ["", "| metric | teacher | student | retained |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {t[k]:.2f} | {s[k]:.2f} | {s[k] / t[k]:.1%} |" if t[k] else f"| {k} | {t[k]:.2f} | "
                  f"{s[k]:.2f} | |" for k in keys]
    return "\n".join(lines) + "\n"
