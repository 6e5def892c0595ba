"""Evaluation: zero-shot classification, image-text retrieval and teacher-student agreement.

``evaluate_model`` (what ``edgeclip eval`` calls) picks the data: ShapesWorld, an image folder (zero-shot) or a CSV
of pairs (retrieval). The package is split by idea:

- ``metrics``: the scores, numpy only (no torch import), so PyTorch models and exported artifacts share them;
- ``embed``: normalised embeddings of a PyTorch CLIP (torch);
- ``folders``: the one image-folder reader (also used by parity, calibration and the demo);
- ``shapes``: the ShapesWorld evaluation sets and ``evaluate_shapes``.

Importing this package does not import torch: the torch names below load their module on first use.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
from ..data.folders import folder_items, read_images, rename_classes
from .metrics import agreement_metrics, retrieval_metrics, zero_shot_metrics

__all__ = ["evaluate_model", "zero_shot_metrics", "retrieval_metrics", "agreement_metrics", "embed_images",
           "embed_texts", "embed_pil_images", "evaluate_shapes", "shapes_eval_sets", "EvalResult", "folder_items",
           "read_images"]

_TORCH = {"embed_images": "embed", "embed_texts": "embed", "embed_pil_images": "embed",  # name -> submodule
          "evaluate_shapes": "shapes", "shapes_eval_sets": "shapes", "EvalResult": "shapes"}


def __getattr__(name: str):
    if name in _TORCH:
        return getattr(importlib.import_module(f"{__name__}.{_TORCH[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TORCH))


def evaluate_model(model, data="shapes", teacher=None, class_names=None, limit=None,
                   template: str = "a photo of a {}.", csv_img_key: str = "filepath", csv_caption_key: str = "title",
                   csv_separator: str | None = None) -> dict:
    """Evaluate on ``"shapes"``, an image folder with classes (zero-shot), or a CSV of pairs (retrieval).

    Args:
        model: open_clip ``CLIP`` (``edgeclip.load_student`` / ``load_teacher``).
        data: ``"shapes"``, an image folder (see ``edgeclip.data.folders``), a CSV path or a ``CsvPairs``.
        teacher: also report teacher-student agreement.
        class_names: class-name file for an image folder (``rename_classes``).
        limit: cap on the items (images for a CSV).
        template: zero-shot prompt of a class name.
        csv_img_key, csv_caption_key, csv_separator: open_clip's ``--csv-*`` conventions for a CSV path.

    Returns:
        JSON-ready dict: ``data`` plus ``zero_shot`` / ``retrieval`` / ``agreement`` and what was ``skipped``;
        zero-shot results carry ``zero_shot_prompts`` (templates, class names and the prompts built from them, in
        class order), so another client can rebuild the classifier.
        A CSV may hold several captions per image: rows are grouped by image and scored as clip_benchmark does.

    Raises:
        DataError: no labelled images in the folder, no readable pairs in the CSV, a class file that does not
            match the folder's classes.
    """
    from ..data.pairs import CsvPairs
    from ..models import get_tokenizer
    if str(data) == "shapes":
        from .shapes import evaluate_shapes
        from ..data.shapes import CLASSES, ZERO_SHOT_TEMPLATE, class_prompts
        r = evaluate_shapes(model, get_tokenizer(model), teacher, get_tokenizer(teacher) if teacher else None)
        prompts = {"templates": [ZERO_SHOT_TEMPLATE], "class_names": [f"{c} {s}" for c, s in CLASSES],
                   "prompts": class_prompts()}
        return {"data": "shapes", **r.to_dict(), "zero_shot_prompts": prompts}
    p = Path(data.path if isinstance(data, CsvPairs) else data)
    if p.is_dir():
        return _evaluate_folder(model, p, teacher, class_names, limit, template)
    pairs = data if isinstance(data, CsvPairs) else CsvPairs(p, csv_img_key, csv_caption_key, csv_separator)
    return _evaluate_pairs(model, pairs, teacher, limit)


def _evaluate_folder(model, folder: Path, teacher, class_names, limit, template: str) -> dict:
    """Zero-shot over the folder's classes, one ``template`` prompt per class."""
    from ..errors import DataError
    from ..models import get_tokenizer
    from .embed import embed_pil_images, embed_texts
    rows = folder_items(folder, labelled_only=True)
    rows = (rename_classes(rows, class_names) if class_names else rows)[:limit]
    if not rows:
        raise DataError(f"no labelled images in {str(folder)!r}")
    imgs, labels, skipped = read_images(rows)
    if not imgs:
        raise DataError(f"no readable labelled images in {str(folder)!r} (skipped: {dict(skipped.counts)})")
    classes = sorted(set(labels))
    y = np.array([classes.index(l) for l in labels])
    prompts = [template.format(c) for c in classes]
    img, cls = embed_pil_images(model, imgs), embed_texts(model, get_tokenizer(model), prompts)
    out = {"data": str(folder), "skipped": skipped.total, "zero_shot": zero_shot_metrics(img, cls, y),
           "zero_shot_prompts": {"templates": [template], "class_names": classes, "prompts": prompts}}
    if teacher is not None:
        out["agreement"] = agreement_metrics(embed_pil_images(teacher, imgs),
                                             embed_texts(teacher, get_tokenizer(teacher), prompts), img, cls)
    return out


def _evaluate_pairs(model, pairs, teacher, limit) -> dict:
    """Retrieval over a CSV's pairs, each image decoded and embedded once whatever its number of captions."""
    from ..errors import DataError
    from ..models import get_tokenizer
    from .embed import embed_pil_images, embed_texts
    imgs, groups, skipped = read_images(pairs.by_image(limit))  # (image, its captions)
    pairs.skipped.counts.update(skipped.counts)
    if not imgs:
        raise DataError(f"no readable image-caption pairs in {str(pairs.path)!r}")
    caps = [c for g in groups for c in g]
    owner = [i for i, g in enumerate(groups) for _ in g]  # the image of each caption
    img, txt = embed_pil_images(model, imgs), embed_texts(model, get_tokenizer(model), caps)
    out = {"data": str(pairs.path), "images": len(imgs), "captions": len(caps), "skipped": dict(pairs.skipped.counts),
           "retrieval": retrieval_metrics(img, txt, text_image=owner)}
    if teacher is not None:
        out["agreement"] = agreement_metrics(embed_pil_images(teacher, imgs),
                                             embed_texts(teacher, get_tokenizer(teacher), caps), img, txt)
    return out
