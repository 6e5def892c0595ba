"""Image-caption datasets for distillation: ShapesWorld, CSV (open_clip's ``filepath,title``), webdataset tars.

Every dataset is index-addressable (``len`` + ``load(i)``) so training is a pure function of the step number,
which is what makes resume-after-kill exact. A corrupt or missing image is skipped and counted, never a crash.
"""
from __future__ import annotations

import csv
import io
import os
import tarfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
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


def open_image(src) -> Image.Image:
    """Decode fully (so truncation surfaces here) and convert CMYK / greyscale / 16-bit to RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(src)
        img.load()
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        img = Image.fromarray((arr / max(arr.max(), 1) * 255).astype(np.uint8))
    return img.convert("RGB")


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


class TarPairs:
    """webdataset shards: ``.tar`` files of ``KEY.jpg|png`` + ``KEY.txt`` members (a folder or a list of tars)."""

    def __init__(self, path: str | os.PathLike):
        p = Path(path)
        shards = sorted(p.glob("*.tar")) if p.is_dir() else [p]
        if not shards or not all(s.is_file() for s in shards):
            raise DataError(f"no webdataset .tar shards at {str(path)!r}")
        self.items: list[tuple[Path, str, str]] = []  # (shard, image member, text member)
        for s in shards:
            try:
                with tarfile.open(s) as tf:
                    names = tf.getnames()
            except (tarfile.TarError, OSError) as e:
                raise DataError(f"shard {str(s)!r} is not a readable tar: {e}") from None
            by_key: dict[str, dict[str, str]] = {}
            for n in names:
                key, _, ext = n.rpartition(".")
                by_key.setdefault(key, {})[ext.lower()] = n
            for key, m in sorted(by_key.items()):
                img = next((m[e] for e in ("jpg", "jpeg", "png", "webp") if e in m), None)
                if img and "txt" in m:
                    self.items.append((s, img, m["txt"]))
        if not self.items:
            raise DataError(f"webdataset at {str(path)!r} holds no image+txt pairs")
        self.skipped = SkipCounter()

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int):
        shard, img, txt = self.items[i]
        try:
            with tarfile.open(shard) as tf:
                cap = tf.extractfile(txt).read().decode("utf-8", errors="replace").strip()
                data = tf.extractfile(img).read()
            if not cap:
                self.skipped.add("empty caption")
                return None
            return open_image(io.BytesIO(data)), cap
        except Exception:
            self.skipped.add("corrupt image")
            return None

    def describe(self) -> str:
        return f"webdataset {len(self)} pairs"


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
    """``"shapes"`` / ``"shapes:N"`` | CSV/TSV path | tar shard or folder of shards | a dataset object."""
    if hasattr(data, "load") and hasattr(data, "__len__"):
        return data
    s = str(data)
    n = shapes_count(s)
    if n is not None:
        return ShapesPairs(n, image_size)
    p = Path(s)
    if p.suffix in (".csv", ".tsv"):
        return CsvPairs(p)
    if p.suffix == ".tar" or (p.is_dir() and any(p.glob("*.tar"))):
        return TarPairs(p)
    raise DataError(f"cannot read data {s!r}: use 'shapes', a .csv/.tsv file or webdataset .tar shards")
