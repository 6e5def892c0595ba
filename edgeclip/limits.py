"""The declared range of every numeric setting: one home that the CLI's argparse types and the Python API's checks
both read, so ``--seed -1`` and ``Schedule(seed=-1)`` fail with the same line.

Why bounds above as well as below: a value past what a 2-core, 24 GiB machine (or any sane run) can hold, such as a
batch of a billion pairs, fails in one line before anything is loaded, instead of exhausting memory an hour in.
Resource counts the machine can cap (``workers``) have no bound above: the loader caps them with a note.
Free-text options (paths, model specs) are ``Text``: they must not be empty; what they name is checked when opened.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Range:
    """A whole or real number in [lo, hi] (``hi=None``: no bound above); also an argparse ``type``."""
    name: str
    kind: type                  # int or float
    lo: float
    hi: float | None = None
    why: str = ""               # appended to the error: what the bound protects

    def describe(self) -> str:
        def num(x) -> str:
            return f"{int(x):,}" if self.kind is int else f"{x:g}"
        if self.kind is float and 0 < self.lo < 1e-5:
            return "a positive finite number" + ("" if self.hi is None else f" up to {num(self.hi)}")
        what = "an integer" if self.kind is int else "a finite number"
        if self.hi is None:
            return f"{what} >= {num(self.lo)}"
        return f"{what} from {num(self.lo)} to {num(self.hi)}"

    def holds(self, value) -> bool:
        ok_type = isinstance(value, int) if self.kind is int else isinstance(value, (int, float))
        return ok_type and not isinstance(value, bool) and math.isfinite(value) and value >= self.lo \
            and (self.hi is None or value <= self.hi)

    def check(self, value, name: str | None = None):
        """``value`` itself when inside the range, else one ``ConfigError`` line naming the setting."""
        if not self.holds(value):
            raise ConfigError(f"{name or self.name} must be {self.describe()}{self.why}, got {value!r}")
        return value

    def parse(self, text: str):
        """The number a command-line string means, checked (``1e3`` is no integer; ``nan`` is not finite)."""
        try:
            value = self.kind(text.strip()) if text.strip() else None
        except ValueError:
            value = None
        if value is None:
            raise ConfigError(f"{self.name} must be {self.describe()}{self.why}, got {text!r}")
        return self.check(value)

    def __call__(self, text: str):  # argparse type: its error becomes argparse's one usage line
        try:
            return self.parse(text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None


@dataclass(frozen=True)
class RangeList:
    """Comma-separated whole numbers, each inside ``item`` (``--batches 1,8,32``); returns the list."""
    item: Range

    def __call__(self, text: str) -> list:
        parts = text.split(",")
        try:
            return [self.item.parse(p) for p in parts]
        except ConfigError:
            raise argparse.ArgumentTypeError(f"must be comma-separated values, each {self.item.describe()}"
                                             f"{self.item.why}, got {text!r}") from None


@dataclass(frozen=True)
class Text:
    """A free-text option (a path, a model spec, an address): any non-empty string without NUL bytes."""
    what: str

    def __call__(self, text: str) -> str:
        if not text.strip() or "\0" in text:
            raise argparse.ArgumentTypeError(f"must be {self.what}, got {text!r}")
        return text


def check_device_name(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (whether that GPU exists is asked when the run starts)."""
    d = str(device)
    if d != "cpu" and not (d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit() and d[5:].isascii())):
        raise ConfigError(f"unknown device {d!r}; use cpu, cuda or cuda:N")
    return d


# compress's schedule and recipe (edgeclip.distill.options) and the CLI flags that set them
STEPS = Range("steps", int, 1, 10**8)
PRUNE_STEPS = Range("prune_steps", int, 1, 10**8)
EPOCHS = Range("epochs", float, 1e-6, 1e6)
BATCH = Range("batch_size", int, 2, 65_536, " (the affinity loss compares pairs within a batch)")
LR = Range("lr", float, 1e-12, 1.0)
SEED = Range("seed", int, 0, 2**32 - 1, " (numpy and torch seeds are 32-bit, non-negative)")
EVAL_EVERY = Range("eval_every", int, 0)  # intervals: a huge one means "never" (benchmarks pass 10**9)
CKPT_EVERY = Range("ckpt_every", int, 1)
STAGES = Range("stages", int, 1, 16)
VIEWS = Range("views", int, 1, 64, " (1: no augmentation)")
# a pruned vocabulary, in tokens: CLIP's 512 byte tokens + SOT/EOT at least, all of its BPE at most (the 48,894
# merges open_clip reads: 49152 - 256 - 2, plus those 514)
VOCAB = Range("vocab", int, 512 + 2, 512 + (49152 - 256 - 2) + 2, " tokens (byte tokens + SOT/EOT, up to CLIP's BPE)")
WORKERS = Range("workers", int, 0, why=" (0: decode in the calling process)")  # capped to the cores by the loader
# the other commands
SHAPES_PAIRS = Range("N in 'shapes:N'", int, 1, 10**7, " (ShapesWorld pairs)")  # also quickstart --samples
TEACH_BATCH = Range("batch_size", int, 1, 65_536)               # teach: pairs per teacher forward
PREPARE_SIZE = Range("size", int, 16, 8192, " px (the student's shortest side)")  # prepare
JPEG_QUALITY = Range("quality", int, 1, 100, " (JPEG)")
LIMIT = Range("limit", int, 1)                                  # eval: items
PORT = Range("port", int, 1, 65_535)
BENCH_BATCH = Range("batch", int, 1, 1024)
BENCH_THREADS = Range("threads", int, 1, 256)
REPEAT = Range("repeat", int, 1, 10_000)
WARMUP = Range("warmup", int, 0, 10_000)
ROUNDS = Range("rounds", int, 1, 1_000)
