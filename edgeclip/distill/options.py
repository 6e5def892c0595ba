"""``compress``'s settings as three frozen groups that check themselves once: what the student is (``Recipe``), how
it is optimised (``Schedule``) and where the run happens (``RunConfig``).

Why groups: the Python API, the CLI and a ``--config`` file build the same objects, so a setting has one name, one
default and one check (in the spirit of open_clip's ``PreprocessCfg`` and timm's argument groups). ``run.json``
and ``report.json`` record them (``to_dict``), and ``read_config`` reads such a file back, so a run can be repeated
from its folder.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..errors import ConfigError
from .. import limits
from .recipe import DEFAULT_SHAPE, DEFAULT_VIEWS


def _optional(r: limits.Range, v) -> None:
    if v is not None:
        r.check(v)


def _choice(name: str, v, ok: tuple[str, ...]) -> None:
    if v not in ok:
        raise ConfigError(f"unknown {name} {v!r}; choose {', '.join(ok)}")


@dataclass(frozen=True)
class Recipe:
    """What the student is and what it learns: weight inheritance, the stage plan, its shape, the loss, the views.

    ``loss`` and ``views`` are stored with each checkpoint: a resume must train the same way.
    """
    method: str = "manual"           # manual (layer/channel selection) | auto (L0 masks, fused) | scratch
    stages: int | str = "auto"       # "auto" (<= ~50% cut per stage) or a number of stages
    shape: str = DEFAULT_SHAPE       # deep | wide | balanced | auto (models.params.STUDENT_SHAPES)
    depth: str = "interval"          # manual: which layers are kept (interval | uniform)
    width: str = "leading"           # manual: which channels are kept (leading | magnitude)
    tie_layers: bool = True          # auto: one head/MLP count for every layer of the last stage
    prune_steps: int = 200           # auto: L0-mask steps per stage before distillation
    loss: dict | str | None = None   # term -> weight, or "affinity=1,feature=2000"; None: recipe.DEFAULT_LOSS
    views: int = DEFAULT_VIEWS       # augmented views per sample (1: the plain image)
    vocab: int | None = None         # a pruned vocabulary of this many tokens (first merges by rank); None: CLIP's
    vocab_corpus: str | None = None  # ... or the merges this text file fires (one text per line); with vocab: both

    def __post_init__(self):
        from ..data.augment import check_views
        from ..models.params import check_shape
        from .losses import parse_loss
        _choice("method", self.method, ("manual", "auto", "scratch"))
        _choice("depth", self.depth, ("interval", "uniform"))
        _choice("width", self.width, ("leading", "magnitude"))
        if self.stages != "auto" and not limits.STAGES.holds(self.stages):
            raise ConfigError(f"stages must be 'auto' or {limits.STAGES.describe()}, got {self.stages!r}")
        if not isinstance(self.tie_layers, bool):
            raise ConfigError(f"tie_layers must be true or false, got {self.tie_layers!r}")
        limits.PRUNE_STEPS.check(self.prune_steps)
        check_shape(self.shape)
        check_views(self.views)
        object.__setattr__(self, "loss", parse_loss(self.loss))  # the one loss parser; a dict from here on
        _optional(limits.VOCAB, self.vocab)
        if self.vocab_corpus is not None:
            from ..models.vocab import read_corpus
            read_corpus(self.vocab_corpus)  # missing or empty: one line, before anything is loaded

    def checkpoint_key(self) -> dict:
        """What a checkpoint must have been trained with to be resumed by this recipe."""
        return {"loss": self.loss, "views": self.views}


@dataclass(frozen=True)
class Schedule:
    """How long and how the student is optimised (AdamW, warm-up then cosine; see ``config.DistillConfig``)."""
    steps: int = 800                 # optimizer steps in total, split evenly across stages
    epochs: float | None = None      # epochs over the data; overrides steps (data of known length only)
    batch_size: int = 128            # pairs per step (the affinity loss compares pairs within a batch)
    lr: float | None = None          # peak lr; None: 5e-4 * batch_size / 128
    seed: int = 0                    # init and data order
    eval_every: int = 0              # evaluate every N steps (0: at the end only)
    ckpt_every: int = 50             # steps between resumable checkpoints

    def __post_init__(self):
        for r in (limits.STEPS, limits.BATCH, limits.EVAL_EVERY, limits.CKPT_EVERY, limits.SEED):
            r.check(getattr(self, r.name))
        _optional(limits.EPOCHS, self.epochs)
        _optional(limits.LR, self.lr)


@dataclass(frozen=True)
class RunConfig:
    """Where and how the run executes; none of it changes what a CPU fp32 run computes, except ``device`` and
    ``precision`` (autocast) and ``cache_teacher=False`` (the teacher recomputed each step, equal to ulps)."""
    device: str = "cpu"              # cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)
    precision: str = "fp32"          # fp32, or bf16 / fp16 autocast on CUDA
    workers: int | None = None       # DataLoader workers decoding images; None: min(8, cores - 1)
    decode: str = "cpu"              # cpu (workers) | gpu (nvjpeg; webdataset shards on CUDA)
    cache_teacher: bool = True       # keep teacher embeddings (False: the teacher runs every step)
    teacher_store: str | None = None  # a store written by ``edgeclip teach`` for this teacher
    evaluate: bool = True            # score teacher and student on ShapesWorld's evaluation sets
    hf: bool = False                 # also save a Hugging Face CLIPModel copy (student/hf)
    keep_ckpt: bool = True           # keep OUT/ckpt after a successful run

    def __post_init__(self):
        _choice("precision", self.precision, ("fp32", "bf16", "fp16"))
        if self.precision != "fp32" and not str(self.device).startswith("cuda"):
            raise ConfigError(f"precision {self.precision} is for CUDA (autocast); on the CPU use fp32")
        _choice("decode", self.decode, ("cpu", "gpu"))
        _optional(limits.WORKERS, self.workers)  # above the machine's cores: capped when the loader starts
        for name in ("cache_teacher", "evaluate", "hf", "keep_ckpt"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.teacher_store is not None:
            object.__setattr__(self, "teacher_store", str(self.teacher_store))


NONE_IS_DEFAULT = ("views", "shape")
GROUPS = {"recipe": Recipe, "schedule": Schedule, "run": RunConfig}
FIELDS = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}  # each name in exactly one group


@dataclass(frozen=True)
class Settings:
    """The three groups of one run."""
    recipe: Recipe = field(default_factory=Recipe)
    schedule: Schedule = field(default_factory=Schedule)
    run: RunConfig = field(default_factory=RunConfig)

    def with_flat(self, **flat) -> Settings:
        """These settings with ``compress``'s flat keywords (``steps=``, ``method=``, ...) applied on top.

        Raises ``TypeError`` for a name that is in no group, as Python would for an unknown keyword.
        """
        unknown = sorted(set(flat) - set(FIELDS))
        if unknown:
            import difflib
            near = difflib.get_close_matches(unknown[0], FIELDS, n=1)
            raise TypeError(f"compress() got an unexpected keyword argument {unknown[0]!r}"
                            + (f" (did you mean {near[0]!r}?)" if near else ""))
        parts = {}
        for group in GROUPS:
            # views=None / shape=None meant "the recipe's default" before the groups: still so
            given = {k: v for k, v in flat.items() if FIELDS[k] == group and not (v is None and k in NONE_IS_DEFAULT)}
            parts[group] = replace(getattr(self, group), **given) if given else getattr(self, group)
        return Settings(**parts)

    def to_dict(self) -> dict:
        return {group: asdict(getattr(self, group)) for group in GROUPS}

    def cross_check(self) -> None:
        """The rules that join two groups."""
        r, run = self.recipe, self.run
        if run.hf and not r.tie_layers and r.method == "auto":
            raise ConfigError("per-layer students have no Hugging Face CLIPModel equivalent; drop hf or tie layers")
        if run.decode == "gpu":
            from ..data.augment import check_views
            check_views(r.views, gpu_decode=True)


RUN_JSON_KEYS = {"edgeclip_output", "started", "teacher", "target_params", "data", "seed"}  # beside the groups


def read_config(path: str | Path) -> Settings:
    """Settings from a JSON file of ``{"recipe": {...}, "schedule": {...}, "run": {...}}`` (any group may be left
    out), such as a run's own ``run.json``. Unknown groups or fields are one ``ConfigError`` line."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"cannot read config {str(p)!r}: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config {str(p)!r} must be a JSON object with 'recipe', 'schedule' and/or 'run'")
    unknown = sorted(set(doc) - set(GROUPS) - RUN_JSON_KEYS)
    if unknown:
        raise ConfigError(f"config {str(p)!r}: unknown key {unknown[0]!r}; groups are {', '.join(GROUPS)}")
    parts = {}
    for group, cls in GROUPS.items():
        values = doc.get(group, {})
        names = {f.name for f in fields(cls)}
        if not isinstance(values, dict) or set(values) - names:
            bad = sorted(set(values) - names)[0] if isinstance(values, dict) else values
            raise ConfigError(f"config {str(p)!r}: {group} has no setting {bad!r}; it has {', '.join(sorted(names))}")
        parts[group] = cls(**values)
    return Settings(**parts)
