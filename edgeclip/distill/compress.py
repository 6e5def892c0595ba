"""``compress()``: teacher + budget + data -> trained student folder + report (plan, params, losses, metrics)."""
from __future__ import annotations

import atexit
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..outputs import check_output, drop_own_staging, output_kind, replace_with, staging_path, write_json, write_text
from ..errors import ConfigError
from ..models import REFERENCE_TEACHER, get_tokenizer, load_teacher, model_config, save_student
from ..models.io import image_transform, preprocess_cfg
from ..models.weights import check_finite
from ..models.params import budget_spec, check_shape, config_params, count_params, parse_budget
from ..data.augment import check_views
from .losses import format_loss, parse_loss
from .recipe import DEFAULT_SHAPE, DEFAULT_VIEWS
from .stages import plan_stages
from . import dist as ddp_env
from .cache import NoCache, TeacherCache
from .checkpoints import check_resume
from .config import DistillConfig
from .trainer import distill


@dataclass
class CompressResult:
    student: torch.nn.Module
    out: Path
    report: dict = field(default_factory=dict)


def _check_precision(precision: str, device: str) -> str:
    if precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"unknown precision {precision!r}; choose fp32, bf16 or fp16")
    if precision != "fp32" and not device.startswith("cuda"):
        raise ConfigError(f"precision {precision} is for CUDA (autocast); on the CPU use fp32")
    return precision


def _is_shapes(pairs) -> bool:
    from ..data.pairs import ShapesPairs
    return isinstance(pairs, ShapesPairs)


def compress(teacher, target_params, data=None, steps: int = 800, epochs: float | None = None,
             method: str = "manual", stages: int | str = "auto", out: str | Path = "runs/student",
             device: str = "cpu", batch_size: int = 128, lr: float | None = None, resume: bool = False,
             seed: int = 0, depth: str = "interval", width: str = "leading", eval_every: int = 0,
             ckpt_every: int = 50, cache_teacher: bool = True, hf: bool = False,
             evaluate: bool = True, tie_layers: bool = True, prune_steps: int = 200, workers: int | None = None,
             precision: str = "fp32", teacher_store: str | Path | None = None, keep_ckpt: bool = True,
             overwrite: bool = False, decode: str = "cpu", loss: str | dict | None = None,
             views: int | None = None, shape: str | None = None) -> CompressResult:
    """Distil ``teacher`` into a student of ``target_params``: TinyCLIP's weight inheritance and multi-stage
    plans, trained with the loss terms of ``loss`` (by default ``recipe.DEFAULT_LOSS``, the measured best mix).

    Args:
        teacher: anything ``load_teacher`` accepts, or a loaded canonical CLIP.
        target_params: ``"8M"``, ``"500k"``, an int, or ``{"image": ..., "text": ...}`` (see ``parse_budget``).
        data: ``"shapes"`` / ``"shapes:N"`` (ShapesWorld), a CSV/TSV (``filepath,title``), webdataset shards
            (``.tar``, a folder, ``shards/{000..099}.tar``, ``pipe:CMD``), or any object with ``__len__`` and
            ``load(i) -> (PIL image, caption) | None``. Required unless the teacher is the reference (or a student
            of a ShapesWorld run): ShapesWorld is its world only.
        steps: optimizer steps in total (split evenly across stages); ``epochs`` overrides it.
        method: ``"manual"`` (layer/channel selection), ``"auto"`` (L0 masks, fused), or ``"scratch"``.
        stages: ``"auto"`` (<= ~50% cut per stage) or a number of stages.
        out: output folder: ``run.json`` (marks it as a run from the first step on), ``student/``, ``stages/``,
            ``ckpt/``, ``report.json``, ``report.md`` (+ PNG plots beside it when matplotlib is installed). Must be
            new, empty, or a run (``resume``/``overwrite``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; a GPU asked for but absent is an error. Under torchrun
            each rank uses ``cuda:LOCAL_RANK`` (nccl) or the CPU (gloo).
        resume: continue from the checkpoints in ``out/ckpt`` (same result as an uninterrupted run).
        ckpt_every: steps between resumable checkpoints (written atomically).
        evaluate: score teacher and student on ShapesWorld's evaluation sets (when training on ShapesWorld).
        tie_layers: ``method="auto"`` only; ``False`` lets each layer of the last stage keep its own head and
            MLP counts (saved with exact shapes: loads through edgeclip, not plain open_clip or HF).
        prune_steps: ``method="auto"`` only; L0-mask steps per stage before distillation (target ramps over
            the first half).
        keep_ckpt: keep ``out/ckpt`` (resumable checkpoints, several times the student's size) after a
            successful run; ``False`` deletes it once the student is saved. The report states its size either way.
        overwrite: replace an earlier run in ``out`` (see ``_claim_output``: the old run stays until the new
            one is complete). Without it (or ``resume``) an existing run, or any non-empty folder, is refused.
        workers: DataLoader worker processes that decode images (default ``min(8, cores - 1)``; 0 allowed).
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` autocast on CUDA (loss and softmax stay fp32).
        teacher_store: a store written by ``edgeclip teach`` for this teacher: stored samples never run the
            teacher, misses are computed on the fly.
        loss: the loss terms and their weights, ``{"affinity": 1, "feature": 2000}`` or
            ``"affinity=1,feature=2000"`` (terms in ``edgeclip.distill.losses``); default ``recipe.DEFAULT_LOSS``.
        views: augmented views per sample (1: the plain image; K: view 0 plus K-1 random-resized crops + flips,
            each with a fixed seed, so the teacher runs once per view); default ``recipe.DEFAULT_VIEWS``.
        shape: which student of the budget: ``"deep"`` (the teacher's depth, narrower), ``"wide"`` (its width,
            fewer layers), ``"balanced"`` or ``"auto"`` (see ``models.params._preference``); default
            ``recipe.DEFAULT_SHAPE``.

    Returns:
        ``CompressResult`` with the student (eval mode), the output folder and the report dict.

    Raises:
        ConfigError / DataError / InheritError on bad input, before anything is written; ConfigError when
        ``out`` may not be written (``edgeclip.outputs.check_output``), before anything is loaded.

    Example:
        >>> res = compress("reference", "25%", data="shapes", steps=800)  # doctest: +SKIP
    """
    from ..data.pairs import open_pairs

    from ..data.loader import check_workers

    t_start = time.time()
    _check_args(target_params, data, steps, epochs, method, stages, batch_size, lr, seed, depth, width,
                eval_every, ckpt_every, prune_steps)
    loss = parse_loss(loss)
    views = check_views(DEFAULT_VIEWS if views is None else views, gpu_decode=decode == "gpu")
    shape = check_shape(DEFAULT_SHAPE if shape is None else shape)
    recipe = {"loss": loss, "views": views}  # stored with each checkpoint: a resume must train the same way
    if hf and not tie_layers and method == "auto":
        raise ConfigError("per-layer students have no Hugging Face CLIPModel equivalent; drop hf or tie layers")
    from ..data.gpu_decode import check_gpu_decode
    check_gpu_decode(decode, device)  # --decode gpu without CUDA: one line, before the output is claimed
    if overwrite and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each rank would stage its own copy
        raise ConfigError("--overwrite is not supported under torchrun; remove the earlier run or pick a new --out")
    final, out = _claim_output(out, teacher, data, resume, overwrite)  # every rank, before the process group
    device = ddp_env.check_device(device)
    precision = _check_precision(precision, device)
    workers = check_workers(workers)
    device = ddp_env.init_from_env(device)
    rank, world, main = ddp_env.rank(), ddp_env.world(), ddp_env.is_main()
    if batch_size % world:
        raise ConfigError(f"batch size {batch_size} is not divisible by the {world} ranks")
    if isinstance(teacher, torch.nn.Module):
        check_finite(teacher.state_dict(), "the teacher")
    else:
        teacher = load_teacher(teacher)
    t_cfg = model_config(teacher)
    t_pre = preprocess_cfg(teacher)
    target_arg, target_params = target_params, parse_budget(target_params, config_params(t_cfg))
    plan = plan_stages(t_cfg, target_params, stages, shape=shape)
    data = default_data(data, teacher)
    pairs = open_pairs(data, t_pre["size"] if isinstance(t_pre["size"], int) else t_pre["size"][0])
    stream = getattr(pairs, "streaming", False)
    if stream and method == "auto":
        raise ConfigError("method auto prunes on index-addressable data (shapes, CSV); use manual with shards")
    if decode == "gpu" and not stream:
        raise ConfigError("--decode gpu is supported for webdataset shards only; CSV and shapes decode on the CPU")
    if stream and epochs is not None:
        raise ConfigError("--epochs needs a dataset of known length; give --steps for webdataset shards")
    if not stream:
        batch_size = _fit_batch(batch_size, len(pairs))
    if epochs is not None:
        steps = max(1, round(epochs * len(pairs) / batch_size))
    if steps < len(plan):
        raise ConfigError(f"{steps} steps cannot train the {len(plan)} stages of the plan; ask for at least "
                          f"{len(plan)} steps or fewer stages")
    per_stage = [steps // len(plan) + (1 if i < steps % len(plan) else 0) for i in range(len(plan))]
    if resume and method != "auto":  # auto students take their fused config only after pruning: checked on load
        for st in plan:
            check_resume(out / "ckpt" / f"stage{st.index}.pt", st.cfg, recipe)
    if main:
        print("plan: " + " -> ".join(["teacher"] + [f"{s.vision / 1e6:.2f}M" for s in plan]))
        for s in plan:
            print("  " + s.describe())
    cfg = DistillConfig(batch_size=batch_size, lr=lr, seed=seed, device=device, eval_every=eval_every,
                        ckpt_every=ckpt_every, workers=workers, precision=precision, loss=loss)
    tf = image_transform(t_pre)
    if teacher_store is not None:
        from .store import TeacherStore
        cache = TeacherStore.open(teacher_store, teacher, t_pre)
    else:
        cache = TeacherCache() if cache_teacher else NoCache()  # None would make the trainer cache in memory
        if cache_teacher:  # saved with each checkpoint: recomputing it after a kill differs by ulps
            cache.path = out / "ckpt" / f"teacher-cache-r{rank}.npz"
            if resume and cache.path.is_file():
                cache = TeacherCache(cache.path)
    eval_fn = _shapes_eval_fn() if evaluate and _is_shapes(pairs) else None
    if main:
        write_json(out / "run.json", {"edgeclip_output": "run", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    source = StageData(pairs, tf, teacher, batch_size, seed, views, workers, device, decode, rank, world)
    how = Inheritance(method, depth, width, seed, device, tie_layers, prune_steps)

    def run_stages():
        prev, stage_reports = teacher, []
        for st in plan:
            last = st.index == len(plan)  # only the last stage may leave per-layer sizes
            student, inh = how.make(prev, st.cfg, source, per_layer_ok=last)
            batches = source.batches(student)
            n = per_stage[st.index - 1]
            stage_cfg = replace(cfg, seed=seed + st.index, steps=n, warmup=min(50, max(1, n // 10)))
            student, hist = distill(student, teacher, batches, stage_cfg,
                                    ckpt=out / "ckpt" / f"stage{st.index}.pt", cache=cache, resume=resume,
                                    eval_fn=eval_fn, desc=f"stage {st.index}/{len(plan)}",
                                    recipe=recipe)
            if main:
                save_student(student, out / "stages" / f"stage{st.index}", preprocess_cfg=t_pre, overwrite=True,
                             extra={"data": pairs.describe()})
            stage_reports.append({"stage": st.index, "config": st.cfg, "params": count_params(student).__dict__,
                                  "inherit": inh, "final_loss": hist.loss[-1],
                                  "loss_steps": hist.steps[:: max(1, len(hist.loss) // 50)],
                                  "loss_curve": hist.loss[:: max(1, len(hist.loss) // 50)],
                                  "terms_final": {k: v[-1] for k, v in hist.terms.items()},
                                  "term_curves": {k: v[:: max(1, len(v) // 50)] for k, v in hist.terms.items()},
                                  "evals": hist.evals, "wall_s": hist.wall_s, "samples_per_s": hist.samples_per_s,
                                  "skipped_steps": hist.skipped_steps, "step_s": hist.step_s})
            prev = student
        return prev, stage_reports

    with ddp_env.guard("compress"):  # a rank that dies: one line on the others, not a hang or a traceback
        prev, stage_reports = run_stages()
    if not main:  # only rank 0 writes the student and the report
        return CompressResult(prev, out, {})
    save_student(prev, out / "student", preprocess_cfg=t_pre, hf=hf, overwrite=True,  # out was checked above
                 extra={"data": pairs.describe()})
    report = {
        "edgeclip_output": "run",
        "teacher": {"config": t_cfg, "params": count_params(teacher).__dict__},
        "student": {"config": model_config(prev), "params": count_params(prev).__dict__},
        "target_params": str(target_arg), "method": method, "data": pairs.describe(),
        "recipe": {**recipe, "shape": shape},
        "skipped_items": dict(getattr(pairs, "skipped", None).counts) if hasattr(pairs, "skipped") else {},
        "plan": [s.describe() for s in plan], "stages": stage_reports,
        "teacher_cache": {"hits": cache.hits, "misses": cache.misses} if cache else None,
        "teacher_store": str(teacher_store) if teacher_store is not None else None,
        "ranks": world, "workers": workers, "precision": precision, "device": device,
    }
    if eval_fn:
        report["eval"] = {"teacher": eval_fn(teacher), "student": eval_fn(prev)}
    report["ckpt"] = _checkpoints(out / "ckpt", keep_ckpt)
    report["wall_s"] = time.time() - t_start
    report["plots"] = write_plots(report, out)
    write_json(out / "report.json", report)
    write_text(out / "report.md", report_markdown(report))
    if out != final:  # the new run is complete: swap it in for the old one
        replace_with(out, final)
        out.parent.rmdir()
    return CompressResult(prev, final, report)


def _claim_output(out, teacher, data, resume: bool, overwrite: bool) -> tuple[Path, Path]:
    """Check ``out`` before anything is loaded; returns (the run folder, the folder to train in now).

    Replacing an earlier run (``overwrite``): the new run, checkpoints included, is built in a hidden
    ``.OUT.tmp-PID-*`` folder beside ``out`` and swapped in only once it is complete (``replace_with``, safe
    against a crash between its renames). Until then the old run stays whole and resumable; the price is that
    an interrupted ``--overwrite`` run cannot itself be resumed (its temp folder is removed by the next write
    of ``out``, by a retry in the same process, or when the process exits).
    """
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite starts it over: pass only one")
    teacher_path = REFERENCE_TEACHER if teacher is None or str(teacher) == "reference" else teacher
    final = check_output(out, "run", overwrite=True, inputs=[teacher_path, data])  # any run passes here ...
    earlier = output_kind(final) == "run"
    if earlier and not (resume or overwrite):  # ... and is continued or replaced only when asked
        raise ConfigError(f"{str(out)!r} holds an earlier compress run; pass --resume to continue it, or "
                          "--overwrite to start over")
    if not (earlier and overwrite):
        return final, final
    drop_own_staging(final)  # an earlier attempt of this process that raised
    stage = staging_path(final)
    atexit.register(shutil.rmtree, stage.parent, True)
    return final, stage


@dataclass(frozen=True)
class StageData:
    """What every stage trains on, fixed for the whole run: the pairs and how this rank batches them."""
    pairs: object
    transform: object           # the teacher's eval preprocessing (PIL -> tensor)
    teacher: torch.nn.Module    # its tokenizer encodes the teacher's side of each batch
    batch_size: int
    seed: int
    views: int
    workers: int
    device: str
    decode: str                 # "cpu" | "gpu" (nvjpeg, webdataset shards only)
    rank: int = 0
    world: int = 1

    def batches(self, student):
        """This rank's batches for ``student``: step-addressed for index data, a worker-split stream for
        webdataset shards (``decode="gpu"``: workers hand raw JPEG bytes over, decoded on the device)."""
        from ..data.loader import Batches, BatchLoader, WdsBatches
        toks = (get_tokenizer(self.teacher), get_tokenizer(student))
        gpu = None
        if self.decode == "gpu":
            from ..data.gpu_decode import gpu_transform_of
            gpu = (gpu_transform_of(self.transform), self.device)
        common = dict(rank=self.rank, world=self.world, views=self.views)
        if getattr(self.pairs, "streaming", False):
            src = WdsBatches(self.pairs, self.batch_size, self.seed, self.transform, *toks, workers=self.workers,
                             raw_images=gpu is not None, **common)
        else:
            src = Batches(self.pairs, self.batch_size, self.seed, self.transform, *toks, **common)
        return BatchLoader(src, self.workers, pin_memory=str(self.device).startswith("cuda") and gpu is None,
                           gpu_decode=gpu)


@dataclass(frozen=True)
class Inheritance:
    """How each stage's student is made from the model before it (manual selection, L0 masks, or scratch)."""
    method: str          # manual | auto | scratch
    depth: str           # manual: interval | uniform
    width: str           # manual: leading | magnitude
    seed: int
    device: str
    tie_layers: bool     # auto: one head/MLP count for every layer
    prune_steps: int     # auto: L0-mask steps per stage

    def make(self, prev, cfg: dict, data: StageData, per_layer_ok: bool):
        """(student, inheritance report); ``per_layer_ok``: untied auto masks are allowed (the last stage)."""
        from ..inherit import inherit_weights
        if self.method == "auto":
            from .prune import AutoConfig, prune_and_fuse
            auto = AutoConfig(steps=self.prune_steps, warmup=max(1, self.prune_steps // 2), seed=self.seed,
                              device=self.device, tie_layers=self.tie_layers or not per_layer_ok)
            return prune_and_fuse(prev, cfg, data.pairs, data.transform, data.teacher, auto)
        student, rep = inherit_weights(prev, cfg, method=self.method, depth=self.depth, width=self.width,
                                       seed=self.seed)
        return student, rep.to_dict()


def default_data(data, teacher):
    """ShapesWorld only for teachers of that world (the reference and students distilled on it)."""
    if data is not None:
        return data
    meta = getattr(teacher, "edgeclip_meta", None) or {}
    if "reference_teacher" in meta or str(meta.get("data", "")).startswith("ShapesWorld"):
        return "shapes"
    raise ConfigError("data is required for this teacher: pass a CSV (data='pairs.csv', open_clip's "
                      "filepath/title columns; --data on the CLI), webdataset shards (data='shards/'), or "
                      "data='shapes' to train on ShapesWorld anyway")


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
             f"- plan: {' -> '.join(r['plan'])}" if len(r["plan"]) > 1 else f"- plan: {r['plan'][0]}"]
    if r.get("recipe"):  # reports of earlier versions have none
        lines.append(f"- recipe: loss {format_loss(r['recipe']['loss'])}, {r['recipe']['views']} view(s) per sample")
    lines += ["",
              "| | vision | text (excl. tok. emb.) | token emb. | total |", "|---|---:|---:|---:|---:|",
              f"| teacher | {tp['vision']:,} | {tp['text']:,} | {tp['token_embedding']:,} | {tp['total']:,} |",
              f"| student | {sp['vision']:,} | {sp['text']:,} | {sp['token_embedding']:,} | {sp['total']:,} |",
              f"| ratio | {sp['vision'] / tp['vision']:.1%} | {sp['text'] / tp['text']:.1%} | | "
              f"{sp['total'] / tp['total']:.1%} |", ""]
    for s in r["stages"]:
        terms = ", ".join(f"{k} {v:.4g}" for k, v in s.get("terms_final", {}).items())
        lines.append(f"- stage {s['stage']}: final loss {s['final_loss']:.4f} ({terms}), {s['wall_s'] / 60:.1f} min, "
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
    ck = r.get("ckpt")
    if ck:
        lines += ["", f"- checkpoints: `ckpt/` ({ck['bytes'] / 1e6:.0f} MB) "
                  + ("kept for `--resume`; delete it, or pass `--drop-ckpt` (`keep_ckpt=False`) next time"
                     if ck["kept"] else "deleted after the successful run (`--drop-ckpt`)")]
    plots = r.get("plots") or {}
    if plots.get("skipped"):
        lines += ["", f"- plots: {plots['skipped']}"]
    lines += [f"\n![{name}]({file})" for name, file in plots.items() if name != "skipped"]
    return "\n".join(lines) + "\n"


def _checkpoints(folder: Path, keep: bool) -> dict | None:
    """Size of the resumable checkpoints; deleted when ``keep`` is False (the run succeeded, the student is saved)."""
    import shutil
    if not folder.is_dir():
        return None
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    if not keep:
        shutil.rmtree(folder)
    return {"path": str(folder), "bytes": size, "kept": keep}


def write_plots(r: dict, out: Path) -> dict:
    """PNG plots beside ``report.md``: loss and each loss term per stage, teacher vs student metrics. ``{name: file}`` written, or
    ``{"skipped": why}`` when matplotlib is not installed (it is optional: ``pip install matplotlib``)."""
    try:  # a bare Figure renders PNG with Agg and leaves pyplot's global backend (a notebook's) alone
        from matplotlib.figure import Figure
    except ImportError:
        return {"skipped": "not drawn: matplotlib is not installed (pip install matplotlib)"}
    plots = {"loss curve": "loss.png"}
    fig = Figure(figsize=(11, 3.5))
    ax, ax_terms = fig.subplots(1, 2)
    offset = 0
    for s in r["stages"]:
        steps = s.get("loss_steps") or list(range(1, len(s["loss_curve"]) + 1))
        xs = [offset + x for x in steps]
        ax.plot(xs, s["loss_curve"], label=f"stage {s['stage']}")
        for i, (name, curve) in enumerate(s.get("term_curves", {}).items()):  # same steps as the loss curve
            ax_terms.plot(xs[:len(curve)], curve, c=f"C{i}", label=name if s["stage"] == 1 else None)
        offset += steps[-1] if steps else 0
    ax.set(xlabel="step (all stages)", ylabel="weighted sum", title="distillation loss")
    ax.legend()
    ax_terms.set(xlabel="step (all stages)", ylabel="unweighted", yscale="log", title="each loss term")
    if ax_terms.get_legend_handles_labels()[0]:
        ax_terms.legend()
    _save_fig(fig, out / plots["loss curve"])
    if "eval" in r:
        t, st = r["eval"]["teacher"], r["eval"]["student"]
        keys = [k for k in t if k in st]
        fig = Figure(figsize=(max(5, 1.2 * len(keys)), 3.5))
        ax = fig.subplots()
        x = range(len(keys))
        ax.bar([i - 0.2 for i in x], [t[k] for k in keys], 0.4, label="teacher")
        ax.bar([i + 0.2 for i in x], [st[k] for k in keys], 0.4, label="student")
        ax.set_xticks(list(x), keys, rotation=20)
        ax.set(ylabel="%", title="teacher vs student")
        ax.legend()
        plots["teacher vs student"] = "metrics.png"
        _save_fig(fig, out / plots["teacher vs student"])
    return plots


def _save_fig(fig, path: Path) -> None:
    from ..outputs import atomic_path
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
