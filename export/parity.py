"""Parity of exported artifacts against PyTorch fp32 on real photos and adversarial prompts.

Reports per tower: max / mean / p99 |delta| of normalised embeddings, NaN/Inf count, min / mean cosine; and for
the pair: top-1 agreement and top-5 overlap of image->text retrieval, zero-shot accuracy delta when labels
exist. ``check_parity`` raises ``ParityError`` naming every failed gate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgeclip.errors import ConfigError, ParityError
from edgeclip.models.io import preprocess_cfg

from .tolerances import TIE_MARGIN, check_gates, gate_precision

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
    status: str = ""  # why it was not run (e.g. Core ML off macOS); then ``passed`` is None, never True
    dropped: bool = False  # an optional variant that failed its gates and was removed from the artifact

    @property
    def passed(self) -> bool | None:
        return None if self.status else not self.failed

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


class References:
    """The PyTorch fp32 side of parity, computed once per export and shared by every variant checked against it.

    Why: each variant is compared with the same model on the same pixels and token ids, so its reference
    embeddings (and the decoded parity images) are the same every time; recomputing them per variant made parity
    most of a ViT-B-32 export (issue #27). Keys are the content of the inputs, so a variant with other
    preprocessing still gets its own reference. ``seconds`` is the time spent computing them.
    """

    def __init__(self, model):
        self.model = model.float().eval()
        self._images: dict = {}
        self._pixels: dict = {}
        self._digests: dict = {}
        self._embeds: dict = {}
        self.seconds = 0.0

    def images(self, images_dir, size: int, max_images: int):
        key = (str(images_dir) if images_dir else None, size, max_images)
        if key not in self._images:
            self._images[key] = parity_images(images_dir, size, max_images)
        return self._images[key]

    def pixels(self, images: list, preprocess) -> np.ndarray:
        """``images`` through an artifact's ``preprocess``, once per export and preprocess config (ViT-B-32's 576
        parity images take ~2.5 s to decode and resize). Callers must not write into the array."""
        import json
        key = (id(images), json.dumps(preprocess.cfg, sort_keys=True))
        if key not in self._pixels or self._pixels[key][0] is not images:
            x = preprocess.batch(images)
            x.flags.writeable = False  # shared by every variant's check
            self._pixels[key] = (images, x)
        return self._pixels[key][1]

    def _digest(self, a: np.ndarray) -> tuple:
        """Content key of an input array, hashed once per array object (0.45 s for 576 images at 224 px)."""
        import hashlib
        if id(a) not in self._digests or self._digests[id(a)][0] is not a:
            self._digests[id(a)] = (a, (hashlib.blake2b(np.ascontiguousarray(a).view(np.uint8)).hexdigest(), a.shape))
        return self._digests[id(a)][1]

    def embed(self, pixels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import time
        key = (self._digest(pixels), self._digest(ids))
        if key not in self._embeds:
            t0 = time.perf_counter()
            with torch.no_grad():  # np.array: a writable copy of the shared read-only pixels, for torch
                self._embeds[key] = (self.model.encode_image(torch.from_numpy(np.array(pixels)), normalize=True)
                                     .numpy(), self.model.encode_text(torch.from_numpy(ids), normalize=True).numpy())
            self.seconds += time.perf_counter() - t0
        return self._embeds[key]


def load_photos(folder: str | Path | None, limit: int = 64):
    """Images (PIL) and labels (None where unlabelled) of the first ``limit`` items of an image folder, read by
    the one image-folder convention (``edgeclip.data.folders``); unreadable items are skipped.

    Raises:
        ConfigError: ``folder`` is not a folder, or none of its images can be read.
    """
    from edgeclip.data.folders import folder_items, read_images
    if folder is None:
        return [], []
    imgs, labels, _ = read_images(folder_items(folder, limit))
    if not imgs:
        raise ConfigError(f"no readable images in {str(folder)!r}")
    return imgs, labels


def _diff_metrics(ref: np.ndarray, got: np.ndarray) -> dict:
    nonfinite = int((~np.isfinite(got)).sum())
    got = np.nan_to_num(got)
    d = np.abs(ref - got)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)
    return {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()), "p99_abs_diff":
            float(np.percentile(d, 99)), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
            "nonfinite": nonfinite}


SHAPES_PARITY_SCENES = 512  # one disagreement moves a top-1 or zero-shot reading by < 0.2 pt: no gate flips on one


def shapes_scenes(size: int, n: int = SHAPES_PARITY_SCENES):
    """Held-out ShapesWorld evaluation scenes with their class names (the ``zeroshot`` split: every colour-shape
    class in turn, never a training image). They need no files, so parity always has enough labelled images."""
    from PIL import Image

    from edgeclip.data.shapes import CLASSES, ShapesWorld
    imgs, _, labels = ShapesWorld("zeroshot", size).batch(0, n)
    return [Image.fromarray(i) for i in imgs], [" ".join(CLASSES[int(l)]) for l in labels]


def parity_images(images_dir: str | Path | None, size: int, max_images: int = 64):
    """Photos from ``images_dir`` (when given) followed by ``SHAPES_PARITY_SCENES`` labelled ShapesWorld scenes."""
    photos, labels = load_photos(images_dir, max_images)
    scenes, scene_labels = shapes_scenes(size)
    return photos + scenes, labels + scene_labels


def compare(model, rt, images, prompts: list[str], labels=None, batch_sizes=(1, 7, 32),
            tie_margin: float = 0.0, refs: References | None = None) -> dict:
    """Torch fp32 vs an opened runtime on the same preprocessing and tokens. Returns metrics per tower.

    With ``labels`` (a class name or None per image), one "a photo of a {class}" prompt per class joins the
    texts: a labelled image's top-1 agreement and top-5 overlap are read against the class prompts, where it has
    a clear answer, and zero-shot accuracy is compared on the labelled images. A disagreement where the reference
    itself prefers its answer by at most ``tie_margin`` (cosine units) is a near-tie: counted in ``near_ties`` and
    ``top1_agreement_raw``, not in ``top1_agreement`` (see ``tolerances.TIE_MARGIN``). ``refs``: the export's
    shared ``References`` of ``model`` (None: computed here)."""
    from edgeclip.models import get_tokenizer
    labels = list(labels or [None] * len(images))
    classes = sorted({l for l in labels if l})
    texts = list(prompts) + [f"a photo of a {c}" for c in classes]
    refs = refs or References(model)
    pixels = refs.pixels(images, rt.preprocess)
    ids = rt.tokenizer(texts)
    ref_ids = get_tokenizer(model)(texts).numpy()
    if not np.array_equal(ids, ref_ids):
        raise ParityError("artifact tokenizer differs from the model's tokenizer (context length or vocabulary)")
    ref_i, ref_t = refs.embed(pixels, ids)
    got_i = _batched(rt.embed_pixels, pixels, batch_sizes)
    got_t = _batched(rt.embed_ids, ids, batch_sizes)
    out = {"image": _diff_metrics(ref_i, got_i), "text": _diff_metrics(ref_t, got_t)}
    got_i, got_t = np.nan_to_num(got_i), np.nan_to_num(got_t)
    known = np.array([l is not None and l != "" for l in labels])
    n = len(prompts)
    # Rankings are compared where they mean something: a labelled image against the class prompts (its answer is
    # among them), any other image against the prompts. The adversarial prompts are near-ties for a ShapesWorld
    # scene, whose order is rounding noise; they are gated on the text tower's own deltas above.
    agree, agree_raw, overlap, ties = [], [], [], 0
    for rows, cols in ((known, slice(n, None)), (~known, slice(0, n))):
        if not rows.any():
            continue
        ref_sim, got_sim = ref_i[rows] @ ref_t[cols].T, got_i[rows] @ got_t[cols].T
        k = min(5, ref_sim.shape[1])
        r5, g5 = np.argsort(-ref_sim, 1)[:, :k], np.argsort(-got_sim, 1)[:, :k]
        ref_top, got_top = ref_sim.argmax(1), got_sim.argmax(1)
        rows_i = np.arange(len(ref_top))
        margin = ref_sim[rows_i, ref_top] - ref_sim[rows_i, got_top]  # the reference's own preference, >= 0
        near = (ref_top != got_top) & (margin <= tie_margin)
        agree_raw += list(ref_top == got_top)
        agree += list((ref_top == got_top) | near)
        ties += int(near.sum())
        overlap += [len(set(a) & set(b)) / k for a, b in zip(r5, g5)]
    out["retrieval"] = {"top1_agreement": float(np.mean(agree) * 100), "top1_agreement_raw": float(np.mean(agree_raw) * 100),
                        "near_ties": ties, "tie_margin": tie_margin, "top5_overlap": float(np.mean(overlap) * 100)}
    if known.any():
        y = np.array([classes.index(l) for l in np.asarray(labels, dtype=object)[known]])
        acc_ref = float(((ref_i[known] @ ref_t[n:].T).argmax(1) == y).mean() * 100)
        acc_got = float(((got_i[known] @ got_t[n:].T).argmax(1) == y).mean() * 100)
        out["retrieval"].update(zero_shot_ref=acc_ref, zero_shot_artifact=acc_got, zero_shot_delta=abs(acc_ref - acc_got),
                                zero_shot_images=int(known.sum()), class_prompts=len(classes))
    return out


def _batched(fn, x: np.ndarray, batch_sizes) -> np.ndarray:
    """Run with mixed batch sizes (1, odd, large) so every dynamic-batch path is exercised."""
    out, i, j = [], 0, 0
    while i < len(x):
        b = batch_sizes[j % len(batch_sizes)]
        out.append(fn(x[i:i + b], b))
        i, j = i + b, j + 1
    return np.concatenate(out)


def check_parity(artifact: str | Path, model, variant: str = "fp32", images_dir: str | Path | None = None,
                 max_images: int = 64, raise_on_fail: bool = True, backend: str | None = None,
                 refs: References | None = None, manifest=None) -> ParityReport:
    """Compare one artifact variant, run by ``backend`` (None: the variant's own runtime), with ``model`` (PyTorch
    fp32); apply its precision's gates. ``refs``: ``References(model)`` shared by the variants of one export.
    ``manifest``: the export's own ``Manifest`` while it is being built (none is on disk yet; files unhashed).

    Raises:
        ParityError: a gate failed (message lists each failed gate, its value and its bound); the artifact's
            ``preprocess.json`` differs from the model's own preprocess config (raised even when
            ``raise_on_fail`` is False: the embedding gates would compare other pixels).
    """
    from edgeclip.runtime import load
    rt = load(artifact, variant, allow_failed_parity=True, backend=backend,  # re-checking a failed one is allowed
              **({"manifest": manifest, "verify": False} if manifest is not None else {}))
    refs = refs or References(model)
    if refs.model is not model:
        raise ValueError("check_parity: refs were computed for another model")
    pre_failed = preprocess_mismatches(rt.preprocess.cfg, preprocess_cfg(model))
    if pre_failed:  # embeddings of other pixels than the model's own mean nothing: stop here, even if not raising
        raise ParityError(f"parity of {variant} failed: " + "; ".join(pre_failed))
    images, labels = refs.images(images_dir, rt.preprocess.size, max_images)
    precision = gate_precision(rt.manifest.variant(variant).gate)
    metrics = compare(model, rt, images, PROMPTS, labels, tie_margin=TIE_MARGIN[precision], refs=refs)
    report = ParityReport(variant, len(images), len(PROMPTS), metrics, check_gates(precision, metrics), rt.backend)
    if raise_on_fail and report.passed is False:
        raise ParityError(f"parity of {variant} failed: " + "; ".join(report.failed))
    return report


def preprocess_mismatches(artifact: dict, student: dict) -> list[str]:
    """Gates on the artifact's ``preprocess.json`` against the model's own preprocess config.

    Why: parity feeds both sides the artifact's preprocessing, so an edited ``preprocess.json`` (other size,
    mean/std, interpolation, resize mode) would pass every embedding gate while the deployed runtime sees other
    pixels than the model was trained on. Missing keys take the runtime's defaults (``Preprocess``).
    """
    from edgeclip.runtime.preprocess import DEFAULTS

    def norm(cfg: dict, key: str):
        v = cfg.get(key, DEFAULTS[key])
        if key == "size":
            return [v, v] if isinstance(v, (int, float)) else list(v or [])
        return [float(x) for x in v] if key in ("mean", "std") else v

    failed = []
    for key in ("size", "mean", "std", "interpolation", "resize_mode"):
        a, s = norm(artifact, key), norm(student, key)
        same = (len(a) == len(s) and np.allclose(a, s, rtol=1e-6, atol=0)) if key in ("mean", "std") else a == s
        if not same:
            failed.append(f"preprocess.{key} {a} != model's {s}")
    return failed


def parity_markdown(reports: list[ParityReport]) -> str:
    lines = ["| variant | tower | max abs Δ | p99 abs Δ | min cos | mean cos | NaN/Inf | top-1 agr. | top-5 ovl. | "
             "zero-shot Δ | verdict |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in reports:
        if r.status:
            lines.append(f"| {r.variant} ({r.backend}) | both |  |  |  |  |  |  |  |  | {r.status} |")
            continue
        ret = r.metrics.get("retrieval", {})
        for tower in ("image", "text"):
            m = r.metrics[tower]
            zs = ret.get("zero_shot_delta")
            name = r.variant if r.backend == "onnxruntime" else f"{r.variant} ({r.backend})"
            lines.append(f"| {name} | {tower} | {m['max_abs_diff']:.2e} | {m['p99_abs_diff']:.2e} | "
                         f"{m['min_cosine']:.6f} | {m['mean_cosine']:.6f} | {m['nonfinite']} | "
                         f"{_agreement(ret)} | {ret.get('top5_overlap', 0):.1f}% | "
                         f"{'' if zs is None else f'{zs:.2f} pt'} | "
                         f"{'pass' if r.passed else 'FAIL: dropped (optional)' if r.dropped else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def _agreement(ret: dict) -> str:
    """Top-1 agreement, with the raw figure and the near-ties beside it when some were set aside."""
    text = f"{ret.get('top1_agreement', 0):.1f}%"
    if ret.get("near_ties"):
        text += f" ({ret['top1_agreement_raw']:.1f}% raw, {ret['near_ties']} near-ties)"
    return text
