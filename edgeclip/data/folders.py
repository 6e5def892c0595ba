"""The one reader of image folders (``edgeclip eval --data DIR``, parity photos, INT8 calibration, the demo).

A folder is read by one convention:

- with a ``manifest.csv``: its rows, in order. The image is the first of ``PATH_COLUMNS`` the header has (a
  path relative to the folder), the label the first non-empty of ``LABEL_COLUMNS`` (an ImageNet sample's
  ``filepath,wnid,class_name`` reads as path + class name);
- without one: every image file below the folder (sorted), labelled by its sub-folder (one sub-folder per
  class); files directly in the folder have no label.

Reading paths never decodes an image; ``read_images`` decodes them with ``edgeclip.imageio.open_image`` and
skips (and counts) the missing and the corrupt.
"""
from __future__ import annotations

import csv
from pathlib import Path

from tqdm import tqdm

from .pairs import IMAGE_EXTS
from .skips import SkipCounter
from ..errors import ConfigError, DataError
from ..imageio import open_image

__all__ = ["MANIFEST", "PATH_COLUMNS", "LABEL_COLUMNS", "folder_items", "rename_classes", "read_images"]

MANIFEST = "manifest.csv"
PATH_COLUMNS = ("filepath", "file", "filename", "path", "image")  # open_clip's CSV key first
LABEL_COLUMNS = ("class_name", "label", "class", "title", "caption")


def folder_items(folder: str | Path, limit: int | None = None,
                 labelled_only: bool = False) -> list[tuple[Path, str | None]]:
    """(image path, label or None) of every item of an image folder, by the module's convention.

    Args:
        folder: the image folder.
        limit: keep the first ``limit`` items (after dropping unlabelled ones when ``labelled_only``).
        labelled_only: drop items without a label (zero-shot evaluation needs one per image).

    Raises:
        ConfigError: ``folder`` is not a folder, or its manifest has no image-path column.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"image folder {str(folder)!r} not found")
    man = folder / MANIFEST
    if man.is_file():
        rows = _manifest_rows(man)
    else:
        rows = [(p, p.parent.name if p.parent != folder else None) for p in sorted(folder.rglob("*"))
                if p.suffix.lower() in IMAGE_EXTS and p.is_file()]
    if labelled_only:
        rows = [r for r in rows if r[1]]
    return rows[:limit]


def _manifest_rows(man: Path) -> list[tuple[Path, str | None]]:
    with open(man, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        path_col = next((c for c in PATH_COLUMNS if c in cols), None)
        if path_col is None:
            raise ConfigError(f"{str(man)!r} has no image column; name one of {', '.join(PATH_COLUMNS)}")
        label_cols = [c for c in LABEL_COLUMNS if c in cols]
        return [(man.parent / r[path_col], next((r[c].strip() for c in label_cols if (r[c] or "").strip()), None))
                for r in reader if (r[path_col] or "").strip()]


def rename_classes(rows: list[tuple[Path, str | None]], class_names_file: str | Path):
    """Labels replaced by the names in a class file (one per line, in the sorted order of the labels), e.g.
    WordNet-id folders named by ``classnames.txt``.

    Raises:
        DataError: the file has another number of names than there are labels.
    """
    names = [l.strip() for l in Path(class_names_file).read_text().splitlines() if l.strip()]
    labels = sorted({lab for _, lab in rows if lab})
    if len(names) != len(labels):
        raise DataError(f"class file has {len(names)} names for {len(labels)} classes")
    new = dict(zip(labels, names))
    return [(p, new.get(lab)) for p, lab in rows]


def read_images(rows):
    """Decode ``(path, tag)`` rows (``folder_items``' labels, or a CSV's captions per image) as 8-bit RGB PIL
    images: (images, their tags, skipped), where the missing and the unreadable are left out and counted by
    reason in ``skipped`` (a ``SkipCounter``)."""
    images, tags, skipped = [], [], SkipCounter()
    for path, tag in tqdm(rows, desc="read images", unit="img", leave=False, mininterval=1):
        if not path.is_file():
            skipped.add("missing file")
            continue
        try:
            images.append(open_image(path))
        except Exception:  # corrupt, truncated or over the pixel cap: skipped and counted, never fatal
            skipped.add("corrupt image")
            continue
        tags.append(tag)
    return images, tags, skipped
