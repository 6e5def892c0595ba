"""Zero-shot accuracy, retrieval recall and teacher-student agreement from embeddings, in numpy only.

Why numpy: the same scores read PyTorch embeddings (``edgeclip.evaluate.embed``) and an exported artifact's
(``edgeclip.runtime``, which has no torch), so this module must import without torch. Inputs are L2-normalised
embeddings as numpy arrays or anything ``np.asarray`` reads (a CPU torch tensor is turned into one by duck typing).
Ranking ties are broken by the lower index (a stable sort), so a score never depends on the sorting algorithm.
"""
from __future__ import annotations

import numpy as np

__all__ = ["zero_shot_metrics", "retrieval_metrics", "agreement_metrics", "topk_indices"]

_ROWS = 512  # rows ranked at once: bounds topk_indices's memory at _ROWS x columns int64


def _np(x) -> np.ndarray:
    """float32 array of embeddings (a torch tensor is detached and moved to the CPU first, without importing torch)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores of every row, best first: [R, C] --> [R, min(k, C)].

    Equal scores keep their column order (stable sort), so ties are scored the same on every machine.
    """
    k = min(k, scores.shape[1])
    out = np.empty((scores.shape[0], k), dtype=np.int64)
    for i in range(0, len(scores), _ROWS):
        out[i:i + _ROWS] = np.argsort(-scores[i:i + _ROWS], axis=1, kind="stable")[:, :k]
    return out


def zero_shot_metrics(image_emb, class_emb, labels, groups: dict[str, np.ndarray] | None = None) -> dict:
    """Top-1/top-5 accuracy (%) of ``image_emb`` [N, D] against ``class_emb`` [C, D].

    Args:
        image_emb: normalised image embeddings [N, D].
        class_emb: normalised class-prompt embeddings [C, D].
        labels: the class index of each image [N].
        groups: optional named subsets (boolean masks [N]); each adds ``{name}_top1`` / ``{name}_top5``.

    Returns:
        ``{"top1", "top5", "n"}`` plus the groups' keys.
    """
    logits = _np(image_emb) @ _np(class_emb).T  # [N, C]
    labels = np.asarray(labels).astype(np.int64)
    top5 = topk_indices(logits, 5)
    hit1 = top5[:, 0] == labels
    hit5 = (top5 == labels[:, None]).any(1)
    out = {"top1": 100 * float(hit1.mean()), "top5": 100 * float(hit5.mean()), "n": len(labels)}
    for name, mask in (groups or {}).items():
        m = np.asarray(mask, dtype=bool)
        out[f"{name}_top1"] = 100 * float(hit1[m].mean())
        out[f"{name}_top5"] = 100 * float(hit5[m].mean())
    return out


def retrieval_metrics(image_emb, text_emb, captions: list[str] | None = None, ks=(1, 5, 10),
                      text_image=None) -> dict:
    """Recall@k (%) both ways: ``{"i2t_R@k", "t2i_R@k"}`` for each k in ``ks``.

    With ``text_image`` (the image index of each text: several captions per image, as in COCO / Flickr30k),
    hits follow clip_benchmark: image->text counts when any of the image's captions is in the top k,
    text->image when the caption's own image is. Without it the N images and N texts are paired and a hit is
    any retrieved item whose caption equals the query's (identical captions are equally right).
    """
    sim = _np(image_emb) @ _np(text_emb).T  # [images, texts]
    kmax = max(ks)
    if text_image is not None:
        owner = np.asarray(text_image).astype(np.int64)  # [texts]
        hits = {"i2t": owner[topk_indices(sim, kmax)] == np.arange(sim.shape[0])[:, None],
                "t2i": topk_indices(sim.T, kmax) == owner[:, None]}
    else:
        ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
        cap = np.array([ids[c] for c in captions])  # equal captions share an id
        hits = {name: cap[topk_indices(s, kmax)] == cap[:, None] for name, s in (("i2t", sim), ("t2i", sim.T))}
    return {f"{name}_R@{k}": 100 * float(h[:, :k].any(1).mean()) for name, h in hits.items() for k in ks}


def agreement_metrics(t_img, t_txt, s_img, s_txt) -> dict:
    """How closely a student reproduces its teacher's image-to-text similarity rows.

    Returns ``top1_agreement`` (% of images whose best text is the same) and ``sim_row_cosine`` (mean cosine
    between the teacher's and the student's similarity rows).
    """
    t_sim, s_sim = _np(t_img) @ _np(t_txt).T, _np(s_img) @ _np(s_txt).T  # [N, T] each
    top1 = float((t_sim.argmax(1) == s_sim.argmax(1)).mean())
    norms = np.linalg.norm(t_sim, axis=1) * np.linalg.norm(s_sim, axis=1)
    row_cos = float(((t_sim * s_sim).sum(1) / np.maximum(norms, 1e-8)).mean())
    return {"top1_agreement": 100 * top1, "sim_row_cosine": row_cos}
