"""Parity of exported artifacts against PyTorch fp32 on real photos and adversarial prompts.

Reports per tower: max / mean / p99 |delta| of normalised embeddings, NaN/Inf count, min / mean cosine; and for
the pair: top-1 agreement and top-5 overlap of image->text retrieval, zero-shot accuracy delta when labels
exist. ``check_parity`` raises ``ParityError`` naming every failed gate.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgeclip.errors import ConfigError, ParityError

from .tolerances import Precision, check_gates

PROMPTS = [
    "", "a photo of a dog", "a photo of a cat", "a red star on the left and a small blue circle",
    "une photo d'un château près de la mer", "日本の寺院の写真", "emoji test 🐶🐱🚗", "ÄÖÜ straße naïve café",
    "dog " * 60, "a very long caption " + "that keeps going and going " * 12, "the the the the the the the the",
    "!!!???...,,,", "   spaces   everywhere   ", "A PHOTO IN CAPITAL LETTERS", "&amp; html &lt;entities&gt;",
    "a close-up of a bird", "a blurry photo of a car", "a drawing of a house", "a photo of food", "a mountain",
]


@dataclass
class ParityReport:
    variant: str
    images: int
    texts: int
    metrics: dict = field(default_factory=dict)  # tower -> metrics
    failed: list[str] = field(default_factory=list)
    backend: str = "onnxruntime"

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def load_photos(folder: str | Path | None, limit: int = 64):
    """Images (PIL) and labels from an image folder; ``manifest.csv`` with a label column is used when present."""
    from edgeclip.data.pairs import IMAGE_EXTS, open_image
    if folder is None:
        return [], []
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"image folder {str(folder)!r} not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS)[:limit]
    labels = {}
    man = folder / "manifest.csv"
    if man.is_file():
        with open(man, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                name = next((row[k] for k in ("filepath", "file", "filename", "path", "image") if k in row), None)
                lab = next((row[k] for k in ("label", "class_name", "class", "title", "caption") if k in row), None)
                if name and lab:
                    labels[Path(name).name] = lab
    imgs, labs = [], []
    for p in files:
        try:
            imgs.append(open_image(p))
            labs.append(labels.get(p.name))
        except Exception:
            continue
    if not imgs:
        raise ConfigError(f"no readable images in {str(folder)!r}")
    return imgs, labs


def _diff_metrics(ref: np.ndarray, got: np.ndarray) -> dict:
    nonfinite = int((~np.isfinite(got)).sum())
    got = np.nan_to_num(got)
    d = np.abs(ref - got)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)
    return {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()), "p99_abs_diff":
            float(np.percentile(d, 99)), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
            "nonfinite": nonfinite}


def _synthetic_images(size: int, n: int = 16):
    from edgeclip.data.shapes import ShapesWorld
    from PIL import Image
    imgs, _, _ = ShapesWorld("retrieval", 32).batch(0, n)
    return [Image.fromarray(i).resize((size, size)) for i in imgs]


def compare(model, rt, images, prompts: list[str], labels=None, batch_sizes=(1, 7, 32)) -> dict:
    """Torch fp32 vs an opened runtime on the same preprocessing and tokens. Returns metrics per tower."""
    from edgeclip.models import get_tokenizer
    pixels = rt.preprocess.batch(images)
    ids = rt.tokenizer(prompts)
    ref_ids = get_tokenizer(model)(prompts).numpy()
    if not np.array_equal(ids, ref_ids):
        raise ParityError("artifact tokenizer differs from the model's tokenizer (context length or vocabulary)")
    with torch.no_grad():
        ref_i = model.encode_image(torch.from_numpy(pixels), normalize=True).numpy()
        ref_t = model.encode_text(torch.from_numpy(ids), normalize=True).numpy()
    got_i = _batched(rt.embed_pixels, pixels, batch_sizes)
    got_t = _batched(rt.embed_ids, ids, batch_sizes)
    out = {"image": _diff_metrics(ref_i, got_i), "text": _diff_metrics(ref_t, got_t)}
    ref_sim, got_sim = ref_i @ ref_t.T, np.nan_to_num(got_i) @ np.nan_to_num(got_t).T
    top1 = float((ref_sim.argmax(1) == got_sim.argmax(1)).mean() * 100)
    k = min(5, ref_sim.shape[1])
    r5, g5 = np.argsort(-ref_sim, 1)[:, :k], np.argsort(-got_sim, 1)[:, :k]
    overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(r5, g5)]) * 100)
    out["retrieval"] = {"top1_agreement": top1, "top5_overlap": overlap}
    if labels and all(labels):
        classes = sorted(set(labels))
        cls_ids = rt.tokenizer([f"a photo of a {c}" for c in classes])
        with torch.no_grad():
            ref_c = model.encode_text(torch.from_numpy(cls_ids), normalize=True).numpy()
        got_c = rt.embed_ids(cls_ids)
        y = np.array([classes.index(l) for l in labels])
        acc_ref = float(((ref_i @ ref_c.T).argmax(1) == y).mean() * 100)
        acc_got = float(((np.nan_to_num(got_i) @ np.nan_to_num(got_c).T).argmax(1) == y).mean() * 100)
        out["retrieval"].update(zero_shot_ref=acc_ref, zero_shot_artifact=acc_got, zero_shot_delta=abs(acc_ref - acc_got))
    return out


def _batched(fn, x: np.ndarray, batch_sizes) -> np.ndarray:
    """Run with mixed batch sizes (1, odd, large) so every dynamic-batch path is exercised."""
    out, i, j = [], 0, 0
    while i < len(x):
        b = batch_sizes[j % len(batch_sizes)]
        out.append(fn(x[i:i + b], b))
        i, j = i + b, j + 1
    return np.concatenate(out)


def check_parity(artifact_dir: str | Path, model, variant: str = "fp32", images_dir: str | Path | None = None,
                 max_images: int = 64, raise_on_fail: bool = True, backend: str = "onnxruntime") -> ParityReport:
    """Compare one artifact variant, run by ``backend``, with ``model`` (PyTorch fp32); apply its precision's gates.

    Raises:
        ParityError: a gate failed (message lists each failed gate, its value and its bound).
    """
    from edgeclip.runtime import load
    rt = load(artifact_dir, variant, backend=backend)
    model = model.float().eval()
    images, labels = load_photos(images_dir, max_images)
    if not images:
        images, labels = _synthetic_images(rt.preprocess.size), []
    metrics = compare(model, rt, images, PROMPTS, labels)
    precision = Precision(variant if variant in Precision._value2member_map_ else
                          "int8-static" if variant.startswith("int8") else "fp32")  # named INT8 recipes: INT8 gates
    report = ParityReport(variant, len(images), len(PROMPTS), metrics, check_gates(precision, metrics), rt.backend)
    if raise_on_fail and not report.passed:
        raise ParityError(f"parity of {variant} failed: " + "; ".join(report.failed))
    return report


def parity_markdown(reports: list[ParityReport]) -> str:
    lines = ["| variant | tower | max abs Δ | p99 abs Δ | min cos | mean cos | NaN/Inf | top-1 agr. | top-5 ovl. | "
             "zero-shot Δ | verdict |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in reports:
        ret = r.metrics.get("retrieval", {})
        for tower in ("image", "text"):
            m = r.metrics[tower]
            zs = ret.get("zero_shot_delta")
            name = r.variant if r.backend == "onnxruntime" else f"{r.variant} ({r.backend})"
            lines.append(f"| {name} | {tower} | {m['max_abs_diff']:.2e} | {m['p99_abs_diff']:.2e} | "
                         f"{m['min_cosine']:.6f} | {m['mean_cosine']:.6f} | {m['nonfinite']} | "
                         f"{ret.get('top1_agreement', 0):.1f}% | {ret.get('top5_overlap', 0):.1f}% | "
                         f"{'' if zs is None else f'{zs:.2f} pt'} | {'pass' if r.passed else 'FAIL'} |")
    return "\n".join(lines) + "\n"
