"""ShapesWorld evaluation: zero-shot on seen and held-out colour-shape classes, retrieval, teacher agreement."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from .embed import embed_images, embed_texts
from .metrics import agreement_metrics, retrieval_metrics, zero_shot_metrics

__all__ = ["EvalResult", "shapes_eval_sets", "evaluate_shapes"]


@dataclass
class EvalResult:
    """Metric dicts of one evaluation (empty when not measured)."""
    zero_shot: dict = field(default_factory=dict)
    retrieval: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=2)
def shapes_eval_sets(n_zeroshot: int = 4096, n_retrieval: int = 1000, image_size: int = 32) -> dict:
    """Rendered ShapesWorld evaluation sets: ``zs_images``, ``zs_labels``, ``held`` (held-out mask), ``prompts``
    (one per class), ``ret_images``, ``ret_captions``.

    Why cached: the sets are deterministic, and one process scores many models on them (``compress`` after every
    stage, the benchmarks every few steps), so each size is rendered once per process. At most two sizes are
    kept (a 32-px set is ~16 MB). The arrays are shared between callers: read them, never write into them.
    """
    from ..data.shapes import ShapesWorld, class_prompts, is_held_out
    zi, _, zl = ShapesWorld("zeroshot", image_size).batch(0, n_zeroshot)
    ri, rc, _ = ShapesWorld("retrieval", image_size).batch(0, n_retrieval)
    held = np.array([is_held_out(int(l)) for l in zl])
    return dict(zs_images=zi, zs_labels=zl, held=held, prompts=class_prompts(), ret_images=ri, ret_captions=rc)


def evaluate_shapes(model, tokenizer, teacher=None, teacher_tokenizer=None, n_zeroshot: int = 4096,
                    n_retrieval: int = 1000, sets: dict | None = None) -> EvalResult:
    """Zero-shot (all / seen / held-out) and retrieval on ShapesWorld; agreement with ``teacher`` when given.

    Args:
        model: open_clip ``CLIP``; its input size picks the render size.
        tokenizer: the model's tokenizer (``edgeclip.get_tokenizer(model)``).
        teacher: optional teacher model for ``agreement``; ``teacher_tokenizer`` defaults to ``tokenizer``.
        n_zeroshot, n_retrieval: sizes of the evaluation sets.
        sets: evaluation sets to use instead of ``shapes_eval_sets(n_zeroshot, n_retrieval, size)``.
    """
    image_size = model.visual.image_size[0] if hasattr(model.visual, "image_size") else 32
    s = sets if sets is not None else shapes_eval_sets(n_zeroshot, n_retrieval, image_size)
    img, cls = embed_images(model, s["zs_images"]), embed_texts(model, tokenizer, s["prompts"])
    res = EvalResult()
    res.zero_shot = zero_shot_metrics(img, cls, s["zs_labels"], {"seen": ~s["held"], "held_out": s["held"]})
    r_img, r_txt = embed_images(model, s["ret_images"]), embed_texts(model, tokenizer, s["ret_captions"])
    res.retrieval = retrieval_metrics(r_img, r_txt, s["ret_captions"])
    if teacher is not None:
        t_img = embed_images(teacher, s["zs_images"])
        t_cls = embed_texts(teacher, teacher_tokenizer or tokenizer, s["prompts"])
        res.agreement = agreement_metrics(t_img, t_cls, img, cls)
    return res
