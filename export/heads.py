"""Label heads: a zero-shot classifier stored in the artifact (``edgeclip export --labels FILE``).

The class embeddings are the student's own text tower in PyTorch fp32, each label's prompts (``templates``)
embedded, normalised, averaged and normalised again: open_clip's ``build_zero_shot_classifier``. With a head, the
runtime classifies images with the image encoder alone (``Runtime.classify``): no text tower, no tokenizer.
Files: ``label_head.npy`` (float32 [N, D]) and ``labels.json`` (the labels and templates), hashed like the rest.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeclip.errors import ConfigError

__all__ = ["read_head", "read_labels", "read_templates", "write_head", "MAX_LABELS", "DEFAULT_TEMPLATES", "HEAD_NPY", "LABELS_JSON"]

MAX_LABELS = 100_000  # 100k x 512 fp32 is 205 MB: a larger head belongs in an index, not in an artifact
DEFAULT_TEMPLATES = ("a photo of a {}.",)
HEAD_NPY, LABELS_JSON = "label_head.npy", "labels.json"


def _lines(path: str | Path, what: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file {str(path)!r} does not exist")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {what} file {str(path)!r}: {e}") from None
    while lines and not lines[-1].strip():  # a final newline (or several) is not a blank label
        lines.pop()
    if not lines:
        raise ConfigError(f"{what} file {str(path)!r} is empty")
    blank = [i + 1 for i, ln in enumerate(lines) if not ln.strip()]
    if blank:
        raise ConfigError(f"{what} file {str(path)!r} has a blank line (line {blank[0]}); one {what[:-1]} per line")
    return [ln.strip() for ln in lines]


def read_labels(path: str | Path) -> list[str]:
    """One label per line: no blank lines, no duplicates, at most ``MAX_LABELS``; one line for anything else."""
    labels = _lines(path, "labels")
    if len(labels) > MAX_LABELS:
        raise ConfigError(f"labels file {str(path)!r} holds {len(labels):,} labels; the limit is {MAX_LABELS:,} "
                          "(a head that large belongs in an Index)")
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        if lab in seen:
            raise ConfigError(f"labels file {str(path)!r} repeats {lab!r} (lines {seen[lab] + 1} and {i + 1})")
        seen[lab] = i
    return labels


def read_templates(path: str | Path | None) -> list[str]:
    """Prompt templates, one per line, each with one ``{}`` for the label; ``DEFAULT_TEMPLATES`` when None."""
    if path is None:
        return list(DEFAULT_TEMPLATES)
    templates = _lines(path, "templates")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ConfigError(f"template {bad[0]!r} must hold exactly one '{{}}' for the label")
    return templates


def read_head(labels: str | Path | None, templates: str | Path | None) -> tuple[list[str], list[str]] | None:
    """(labels, templates) of a head asked for, checked before anything is loaded; None when none is."""
    if labels is None:
        if templates is not None:
            raise ConfigError("--templates needs --labels (the templates are the label head's prompts)")
        return None
    return read_labels(labels), read_templates(templates)


def write_head(model, out: Path, labels: list[str], templates: list[str]) -> dict:
    """Embed ``labels`` x ``templates`` with ``model``'s text tower (fp32) into ``out``; returns the manifest's head."""
    import torch
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    from edgeclip.models import get_tokenizer
    with torch.no_grad():
        w = build_zero_shot_classifier(model.float().eval(), get_tokenizer(model), labels, templates,
                                       num_classes_per_batch=64, device="cpu")  # [D, N], normalised
    np.save(out / HEAD_NPY, np.ascontiguousarray(w.T.numpy(), np.float32))
    (out / LABELS_JSON).write_text(json.dumps({"labels": labels, "templates": templates}, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
    return {"embeddings": HEAD_NPY, "labels": LABELS_JSON, "count": len(labels), "templates": templates,
            "bytes": (out / HEAD_NPY).stat().st_size + (out / LABELS_JSON).stat().st_size}
