"""``compress()``: teacher + budget + data -> trained student folder + report (plan, params, losses, metrics).

The orchestration only: the settings live in ``options`` (three groups that check themselves), the run folder's
life cycle in ``run_folder``, the report's markdown and plots in ``report``.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..outputs import one_writer, replace_with, write_json, write_text
from ..errors import ConfigError
from ..models import get_tokenizer, load_teacher, model_config, model_meta, save_student
from ..models.io import image_transform, preprocess_cfg
from ..models.weights import check_finite
from ..models.params import budget_spec, config_params, count_params, parse_budget
from .options import RunConfig, Recipe, Schedule, Settings
from .report import report_markdown, shapes_eval_fn, write_plots
from .run_folder import checkpoint_summary, claim_output, write_run_json
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


def _is_shapes(pairs) -> bool:
    from ..data.pairs import ShapesPairs
    return isinstance(pairs, ShapesPairs)


def compress(teacher, target_params, data=None, *, out: str | Path = "runs/student", resume: bool = False,
             overwrite: bool = False, recipe: Recipe | None = None, schedule: Schedule | None = None,
             run: RunConfig | None = None, **settings) -> CompressResult:
    """Distil ``teacher`` into a student of ``target_params``: TinyCLIP's weight inheritance and multi-stage
    plans, trained with the loss terms of the recipe (by default ``recipe.DEFAULT_LOSS``, the measured best mix).

    Args:
        teacher: anything ``load_teacher`` accepts, or a loaded canonical CLIP.
        target_params: ``"8M"``, ``"500k"``, ``"25%"``, an int, or ``{"image": ..., "text": ...}``
            (see ``parse_budget``).
        data: ``"shapes"`` / ``"shapes:N"`` (ShapesWorld), a CSV/TSV (``filepath,title``), webdataset shards
            (``.tar``, a folder, ``shards/{000..099}.tar``, ``pipe:CMD``), or any object with ``__len__`` and
            ``load(i) -> (PIL image, caption) | None``. Required unless the teacher is the reference (or a student
            of a ShapesWorld run): ShapesWorld is its world only.
        out: output folder: ``run.json`` (marks it as a run from the first step on and records its settings),
            ``student/``, ``stages/``, ``ckpt/``, ``report.json``, ``report.md`` (+ PNG plots beside it when
            matplotlib is installed). Must be new, empty, or a run (``resume``/``overwrite``).
        resume: continue from the checkpoints in ``out/ckpt`` (same result as an uninterrupted run).
        overwrite: replace an earlier run in ``out`` (see ``run_folder.claim_output``: the old run stays until
            the new one is complete). Without it (or ``resume``) an existing run, or any non-empty folder, is
            refused.
        recipe: what the student is and learns (``options.Recipe``: method, stages, shape, depth, width,
            tie_layers, prune_steps, loss, views).
        schedule: how it is optimised (``options.Schedule``: steps, epochs, batch_size, lr, seed, eval_every,
            ckpt_every).
        run: where the run executes (``options.RunConfig``: device, precision, workers, decode, cache_teacher,
            teacher_store, evaluate, hf, keep_ckpt).
        **settings: any field of the three groups by name (``steps=800, method="auto"``), applied on top of them.

    Returns:
        ``CompressResult`` with the student (eval mode), the output folder and the report dict.

    Raises:
        ConfigError / DataError / InheritError on bad input, before anything is written; ConfigError when
        ``out`` may not be written (``edgeclip.outputs.check_output``), before anything is loaded. TypeError
        for a keyword that is no setting.

    Example:
        >>> res = compress("reference", "25%", data="shapes", steps=800)  # doctest: +SKIP
        >>> res = compress("reference", "25%", data="shapes", recipe=Recipe(method="auto"))  # doctest: +SKIP
    """
    from ..data.pairs import open_pairs, shapes_count

    from ..data.loader import check_workers

    t_start = time.time()
    opts = Settings(recipe or Recipe(), schedule or Schedule(), run or RunConfig()).with_flat(**settings)
    opts.cross_check()
    recipe, schedule, run = opts.recipe, opts.schedule, opts.run  # what the student is, how it learns, where
    budget_spec(target_params)
    shapes_count(data)
    from ..data.gpu_decode import check_gpu_decode
    check_gpu_decode(run.decode, run.device)  # --decode gpu without CUDA: one line, before the output is claimed
    if overwrite and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each rank would stage its own copy
        raise ConfigError("--overwrite is not supported under torchrun; remove the earlier run or pick a new --out")
    # one writer per --out (rank 0 of a torchrun job speaks for it): a second run is refused, not mixed in
    with one_writer(out, enabled=os.environ.get("RANK", "0") == "0"):
        final, out = claim_output(out, teacher, data, resume, overwrite)  # every rank, before the process group
        device = ddp_env.check_device(run.device)
        workers = check_workers(run.workers)
        device = ddp_env.init_from_env(device)
        rank, world, main = ddp_env.rank(), ddp_env.world(), ddp_env.is_main()
        if schedule.batch_size % world:
            raise ConfigError(f"batch size {schedule.batch_size} is not divisible by the {world} ranks")
        teacher_arg = teacher
        if isinstance(teacher, torch.nn.Module):
            check_finite(teacher.state_dict(), "the teacher")
        else:
            teacher = load_teacher(teacher)
        t_cfg = model_config(teacher)
        t_pre = preprocess_cfg(teacher)
        target_arg, target_params = target_params, parse_budget(target_params, config_params(t_cfg))
        start = _vocab_start(teacher, recipe, out)  # the teacher with a pruned vocabulary, when one is asked for
        plan = plan_stages(model_config(start), target_params, recipe.stages, shape=recipe.shape)
        data_arg, data = data, default_data(data, teacher)
        pairs = open_pairs(data, t_pre["size"] if isinstance(t_pre["size"], int) else t_pre["size"][0])
        stream = getattr(pairs, "streaming", False)
        if stream and recipe.method == "auto":
            raise ConfigError("method auto prunes on index-addressable data (shapes, CSV); use manual with shards")
        if run.decode == "gpu" and not stream:
            raise ConfigError("--decode gpu is supported for webdataset shards only; CSV and shapes decode on the CPU")
        if stream and schedule.epochs is not None:
            raise ConfigError("--epochs needs a dataset of known length; give --steps for webdataset shards")
        batch_size = schedule.batch_size if stream else _fit_batch(schedule.batch_size, len(pairs))
        steps = schedule.steps if schedule.epochs is None else max(1, round(schedule.epochs * len(pairs) / batch_size))
        if steps < len(plan):
            raise ConfigError(f"{steps} steps cannot train the {len(plan)} stages of the plan; ask for at least "
                              f"{len(plan)} steps or fewer stages")
        per_stage = [steps // len(plan) + (1 if i < steps % len(plan) else 0) for i in range(len(plan))]
        ckpt_recipe = recipe.checkpoint_key()  # stored with each checkpoint: a resume must train the same way
        if resume and recipe.method != "auto":  # auto students take their fused config only after pruning: checked on load
            for st in plan:
                check_resume(out / "ckpt" / f"stage{st.index}.pt", st.cfg, ckpt_recipe)
        if main:
            print("plan: " + " -> ".join(["teacher"] + [f"{s.vision / 1e6:.2f}M" for s in plan]))
            for st in plan:
                print("  " + st.describe())
        cfg = DistillConfig(batch_size=batch_size, lr=schedule.lr, seed=schedule.seed, device=device,
                            eval_every=schedule.eval_every, ckpt_every=schedule.ckpt_every, workers=workers,
                            precision=run.precision, loss=recipe.loss)
        tf = image_transform(t_pre)
        if run.teacher_store is not None:
            from .store import TeacherStore
            cache = TeacherStore.open(run.teacher_store, teacher, t_pre)
        else:
            cache = TeacherCache() if run.cache_teacher else NoCache()  # None would make the trainer cache in memory
            if run.cache_teacher:  # saved with each checkpoint: recomputing it after a kill differs by ulps
                cache.path = out / "ckpt" / f"teacher-cache-r{rank}.npz"
                if resume and cache.path.is_file():
                    cache = TeacherCache(cache.path)
        eval_fn = shapes_eval_fn() if run.evaluate and _is_shapes(pairs) else None
        if main:
            write_run_json(out, teacher_arg, target_arg, data_arg, opts)

        source = StageData(pairs, tf, teacher, batch_size, schedule.seed, recipe.views, workers, device, run.decode,
                           rank, world)
        how = Inheritance(recipe.method, recipe.depth, recipe.width, schedule.seed, device, recipe.tie_layers,
                          recipe.prune_steps)

        def run_stages():
            prev, stage_reports = start, []
            for st in plan:
                last = st.index == len(plan)  # only the last stage may leave per-layer sizes
                student, inh = how.make(prev, st.cfg, source, per_layer_ok=last)
                if getattr(prev, "edgeclip_bpe", None) is not None:  # its tokenizer travels with each student
                    student.edgeclip_bpe = prev.edgeclip_bpe
                batches = source.batches(student)
                n = per_stage[st.index - 1]
                stage_cfg = replace(cfg, seed=schedule.seed + st.index, steps=n, warmup=min(50, max(1, n // 10)))
                student, hist = distill(student, teacher, batches, stage_cfg,
                                        ckpt=out / "ckpt" / f"stage{st.index}.pt", cache=cache, resume=resume,
                                        eval_fn=eval_fn, desc=f"stage {st.index}/{len(plan)}",
                                        recipe=ckpt_recipe)
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
        save_student(prev, out / "student", preprocess_cfg=t_pre, hf=run.hf, overwrite=True,  # out was checked above
                     extra={"data": pairs.describe()})
        report = {
            "edgeclip_output": "run",
            "teacher": {"config": t_cfg, "params": count_params(teacher).__dict__},
            "student": {"config": model_config(prev), "params": count_params(prev).__dict__},
            "target_params": str(target_arg), "method": recipe.method, "data": pairs.describe(),
            "recipe": {**ckpt_recipe, "shape": recipe.shape},
            "settings": opts.to_dict(),  # everything that repeats the run (seed included); also in run.json
            "skipped_items": dict(getattr(pairs, "skipped", None).counts) if hasattr(pairs, "skipped") else {},
            "plan": [s.describe() for s in plan], "stages": stage_reports,
            "vocab": {"tokens": prev.token_embedding.num_embeddings, "teacher_tokens":
                      teacher.token_embedding.num_embeddings, "size": recipe.vocab, "corpus": recipe.vocab_corpus},
            "teacher_cache": {"hits": cache.hits, "misses": cache.misses} if cache else None,
            "teacher_store": run.teacher_store,
            "ranks": world, "workers": workers, "precision": run.precision, "device": device,
        }
        if eval_fn:
            report["eval"] = {"teacher": eval_fn(teacher), "student": eval_fn(prev)}
        report["ckpt"] = checkpoint_summary(out / "ckpt", run.keep_ckpt)
        report["wall_s"] = time.time() - t_start
        report["plots"] = write_plots(report, out)
        write_json(out / "report.json", report)
        write_text(out / "report.md", report_markdown(report))
        if out != final:  # the new run is complete: swap it in for the old one
            replace_with(out, final)
            out.parent.rmdir()
        if getattr(prev, "edgeclip_bpe", None) is not None:  # the student's own copy, where the run now lives
            prev.edgeclip_bpe = final / "student" / prev.edgeclip_bpe.name
        return CompressResult(prev, final, report)


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


def _vocab_start(teacher, recipe, out: Path):
    """What stage 1 inherits from: the teacher, or (``recipe.vocab`` / ``vocab_corpus``) a copy of it whose token
    embedding keeps only the pruned vocabulary's rows, inherited by token string. The teacher itself, with its own
    tokenizer, still gives the targets; the merges file is kept in the run folder (``vocab/``)."""
    if recipe.vocab is None and recipe.vocab_corpus is None:
        return teacher
    import copy

    from ..models.vocab import BYTE_TOKENS, prune_vocabulary, read_corpus
    corpus = read_corpus(recipe.vocab_corpus) if recipe.vocab_corpus is not None else None
    keep = recipe.vocab - BYTE_TOKENS - 2 if recipe.vocab is not None else None
    start = prune_vocabulary(copy.deepcopy(teacher), keep, corpus, workdir=out / "vocab")
    print(f"vocabulary: {start.token_embedding.num_embeddings:,} of {teacher.token_embedding.num_embeddings:,} "
          "tokens, rows inherited from the teacher by token string")
    return start


def default_data(data, teacher):
    """ShapesWorld only for teachers of that world (the reference and students distilled on it)."""
    if data is not None:
        return data
    meta = model_meta(teacher)
    if "reference_teacher" in meta or str(meta.get("data", "")).startswith("ShapesWorld"):
        return "shapes"
    raise ConfigError("data is required for this teacher: pass a CSV (data='pairs.csv', open_clip's "
                      "filepath/title columns; --data on the CLI), webdataset shards (data='shards/'), or "
                      "data='shapes' to train on ShapesWorld anyway")


def _fit_batch(batch_size: int, n: int) -> int:
    """A batch cannot hold more distinct pairs than the data has (repeats teach nothing); at least 2 are needed."""
    from ..errors import DataError
    if n < 2:
        raise DataError(f"the dataset has {n} pair(s); distillation needs at least 2 (the affinity loss compares "
                        "pairs within a batch)")
    if batch_size > n:
        print(f"note: batch size {batch_size} is larger than the {n} pairs in the data; using {n}", file=sys.stderr)
    return min(batch_size, n)
