"""Image-caption datasets for distillation: ShapesWorld, CSV (open_clip's ``filepath,title``), webdataset tars.

ShapesWorld and CSV are index-addressable (``len`` + ``load(i)``) so training is a pure function of the step
number, which is what makes resume-after-kill exact; webdataset shards stream (``data/wds.py``). A corrupt or
missing image is skipped and counted, never a crash.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from PIL import Image

from ..errors import DataError
from ..imageio import open_image  # noqa: F401  (one decoding rule for training and runtime)
from .skips import SkipCounter  # noqa: F401  (re-exported: readers count skipped items)
from .shapes import ShapesWorld

Image.MAX_IMAGE_PIXELS = 64_000_000  # decompression-bomb guard: larger images are skipped as corrupt
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


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


CSV_SEPARATORS = "\t,;|"  # what the sniffer chooses from; open_clip's own default is a tab


def sniff_separator(text: str, img_key: str = "filepath", caption_key: str = "title") -> str:
    """The separator of a CSV text: the one that splits the header into both key columns, else what
    ``csv.Sniffer`` finds among tab / comma / semicolon / pipe, else a tab (open_clip's ``--csv-separator``)."""
    header = text.split("\n", 1)[0].rstrip("\r")
    for sep in CSV_SEPARATORS:
        cols = [c.strip().strip('"') for c in header.split(sep)]
        if img_key in cols and caption_key in cols:
            return sep
    try:
        return csv.Sniffer().sniff(text[:16384], delimiters=CSV_SEPARATORS).delimiter
    except csv.Error:
        return "\t"


class CsvPairs:
    """open_clip-style CSV: one row per pair, image path column + caption column (paths relative to the CSV).

    Same conventions as open_clip's ``--csv-separator`` / ``--csv-img-key`` / ``--csv-caption-key`` (defaults
    ``filepath`` / ``title``), whatever the file's extension; the separator is sniffed when not given and a
    UTF-8 byte-order mark (Excel's "CSV UTF-8") is accepted."""

    def __init__(self, path: str | os.PathLike, img_key: str = "filepath", caption_key: str = "title",
                 sep: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"CSV {str(path)!r} not found")
        text = self.path.read_bytes().decode("utf-8-sig", errors="replace")
        sep = {"\\t": "\t", "tab": "\t"}.get(sep, sep)  # '\\t' as typed on a command line means a tab
        if sep is not None and len(sep) != 1:
            raise DataError(f"CSV separator must be one character, got {sep!r}")
        self.sep = sep or sniff_separator(text, img_key, caption_key)
        try:
            rows = list(csv.DictReader(io.StringIO(text), delimiter=self.sep))
        except csv.Error as e:
            raise DataError(f"CSV {str(path)!r} is malformed: {e}") from None
        if not rows:
            raise DataError(f"CSV {str(path)!r} has no rows")
        if img_key not in rows[0] or caption_key not in rows[0]:
            raise DataError(f"CSV {str(path)!r} needs columns {img_key!r} and {caption_key!r} (separator "
                            f"{self.sep!r}), has {list(rows[0])}; pass --csv-img-key/--csv-caption-key/"
                            "--csv-separator")
        self.rows = [(r[img_key], r[caption_key]) for r in rows if r.get(img_key)]
        self.skipped = SkipCounter()

    def image_path(self, i: int) -> Path:
        rel = self.rows[i][0]
        return Path(rel) if Path(rel).is_absolute() else self.path.parent / rel

    def by_image(self, limit: int | None = None) -> list[tuple[Path, list[str]]]:
        """Rows grouped by image (first-seen order), for retrieval with several captions per image (COCO,
        Flickr30k); empty captions are skipped and counted. ``limit`` caps the number of images."""
        groups: dict[Path, list[str]] = {}
        for i, (_, cap) in enumerate(self.rows):
            if not (cap or "").strip():
                self.skipped.add("empty caption")
                continue
            p = self.image_path(i)
            if p not in groups and limit is not None and len(groups) >= limit:
                continue
            groups.setdefault(p, []).append(cap)
        return list(groups.items())

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, i: int):
        cap, p = self.rows[i][1], self.image_path(i)
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
    from ..limits import SHAPES_PAIRS
    if not SHAPES_PAIRS.holds(int(n) if n.isdigit() and n.isascii() else None):
        raise DataError(f"bad data {s!r}: {SHAPES_PAIRS.name} must be {SHAPES_PAIRS.describe()}")
    return int(n)


def open_pairs(data, image_size: int = 32, csv_img_key: str = "filepath", csv_caption_key: str = "title",
               csv_separator: str | None = None):
    """``"shapes"`` / ``"shapes:N"`` | CSV/TSV path | webdataset shards (a ``.tar``, a folder of them, a brace
    pattern ``shards/{000..099}.tar``, ``pipe:CMD``) | a dataset object.

    The ``csv_*`` options are open_clip's ``--csv-img-key`` / ``--csv-caption-key`` / ``--csv-separator``."""
    if (hasattr(data, "load") and hasattr(data, "__len__")) or getattr(data, "streaming", False):
        return data
    s = str(data)
    n = shapes_count(s)
    if n is not None:
        return ShapesPairs(n, image_size)
    p = Path(s)
    if p.suffix.lower() in (".csv", ".tsv", ".txt"):
        return CsvPairs(p, csv_img_key, csv_caption_key, csv_separator)
    if s.startswith("pipe:") or "{" in s or "::" in s or s.endswith(".tar") or (p.is_dir() and any(p.glob("*.tar"))):
        from .wds import WdsPairs
        return WdsPairs(s)
    raise DataError(f"cannot read data {s!r}: use 'shapes', a .csv/.tsv file or webdataset .tar shards")
