"""Image-caption datasets for distillation: ShapesWorld, CSV (open_clip's ``filepath,title``), webdataset tars.

ShapesWorld and CSV are index-addressable (``len`` + ``load(i)``) so training is a pure function of the step
number, which is what makes resume-after-kill exact; webdataset shards stream (``data/wds.py``). A corrupt or
missing image is skipped and counted, never a crash.
"""
from __future__ import annotations

import csv
import io
import os

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import DataError
from ..imageio import open_image  # noqa: F401  (one decoding rule for training and runtime)
from .shapes import ShapesWorld

Image.MAX_IMAGE_PIXELS = 64_000_000  # decompression-bomb guard: larger images are skipped as corrupt
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass
class SkipCounter:
    """Counts skipped items by reason; reported at the end of a run."""
    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class ShapesPairs:
    """The first ``n`` ShapesWorld training samples (seen combinations only)."""

    def __init__(self, n: int = 12_800, image_size: int = 32, offset: int = 0):
        self.world, self.n, self.offset = ShapesWorld("train", image_size), n, offset
        self.skipped = SkipCounter()

    def __len__(self) -> int:
        return self.n

    def load(self, i: int):
        img, cap, _ = self.world.sample(self.offset + i)
        return Image.fromarray(img), cap

    def describe(self) -> str:
        return f"ShapesWorld train[{self.offset}:{self.offset + self.n}]"


class CsvPairs:
    """open_clip-style CSV: one row per pair, image path column + caption column (paths relative to the CSV)."""

    def __init__(self, path: str | os.PathLike, img_key: str = "filepath", caption_key: str = "title",
                 sep: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"CSV {str(path)!r} not found")
        raw = self.path.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        sep = sep or ("\t" if self.path.suffix == ".tsv" else ",")
        try:
            rows = list(csv.DictReader(io.StringIO(text), delimiter=sep))
        except csv.Error as e:
            raise DataError(f"CSV {str(path)!r} is malformed: {e}") from None
        if not rows:
            raise DataError(f"CSV {str(path)!r} has no rows")
        if img_key not in rows[0] or caption_key not in rows[0]:
            raise DataError(f"CSV {str(path)!r} needs columns {img_key!r} and {caption_key!r}, "
                            f"has {list(rows[0])}; pass --csv-img-key/--csv-caption-key")
        self.rows = [(r[img_key], r[caption_key]) for r in rows if r.get(img_key)]
        self.skipped = SkipCounter()

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, i: int):
        rel, cap = self.rows[i]
        p = Path(rel) if Path(rel).is_absolute() else self.path.parent / rel
        if not p.is_file():
            self.skipped.add("missing file")
            return None
        if not (cap or "").strip():
            self.skipped.add("empty caption")
            return None
        try:
            return open_image(p), cap
        except Exception:
            self.skipped.add("corrupt image")
            return None

    def describe(self) -> str:
        return f"CSV {self.path} ({len(self)} rows)"


def shapes_count(data) -> int | None:
    """Pairs asked for by ``"shapes"`` / ``"shapes:N"`` (``None`` for other data); a bad N is one ``DataError``."""
    s = str(data) if isinstance(data, (str, os.PathLike)) else ""
    if s != "shapes" and not s.startswith("shapes:"):
        return None
    n = s.split(":", 1)[1].strip() if ":" in s else "12800"
    if not n.isdigit() or int(n) < 1:
        raise DataError(f"bad data {s!r}: N in 'shapes:N' must be a whole number of pairs >= 1")
    return int(n)


def open_pairs(data, image_size: int = 32):
    """``"shapes"`` / ``"shapes:N"`` | CSV/TSV path | webdataset shards (a ``.tar``, a folder of them, a brace
    pattern ``shards/{000..099}.tar``, ``pipe:CMD``) | a dataset object."""
    if (hasattr(data, "load") and hasattr(data, "__len__")) or getattr(data, "streaming", False):
        return data
    s = str(data)
    n = shapes_count(s)
    if n is not None:
        return ShapesPairs(n, image_size)
    p = Path(s)
    if p.suffix in (".csv", ".tsv"):
        return CsvPairs(p)
    if s.startswith("pipe:") or "{" in s or "::" in s or s.endswith(".tar") or (p.is_dir() and any(p.glob("*.tar"))):
        from .wds import WdsPairs
        return WdsPairs(s)
    raise DataError(f"cannot read data {s!r}: use 'shapes', a .csv/.tsv file or webdataset .tar shards")
