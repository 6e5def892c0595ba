"""Zero-shot classification, image-text retrieval and teacher-student agreement, from embeddings.

Metric functions take L2-normalised embeddings (torch or numpy) so the same code scores PyTorch models and
exported ONNX artifacts. ``evaluate_shapes`` runs a model over the ShapesWorld evaluation sets.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

__all__ = ["zero_shot_metrics", "retrieval_metrics", "agreement_metrics", "embed_images", "embed_texts", "evaluate_model", "embed_pil_images",
           "evaluate_shapes", "EvalResult"]


def _batches(n: int, batch_size: int, desc: str):
    """Batch starts with a progress bar (stderr, erased when done)."""
    return tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False, mininterval=1)


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()


def zero_shot_metrics(image_emb, class_emb, labels, groups: dict[str, np.ndarray] | None = None) -> dict:
    """Top-1/top-5 accuracy (%) of image_emb [N, D] against class_emb [C, D]; optional named subsets (masks)."""
    logits = _t(image_emb) @ _t(class_emb).T
    labels = torch.as_tensor(np.asarray(labels)).long()
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hit1 = (top5[:, 0] == labels).float()
    hit5 = (top5 == labels[:, None]).any(1).float()
    out = {"top1": 100 * hit1.mean().item(), "top5": 100 * hit5.mean().item(), "n": len(labels)}
    for name, mask in (groups or {}).items():
        m = torch.as_tensor(np.asarray(mask)).bool()
        out[f"{name}_top1"] = 100 * hit1[m].mean().item()
        out[f"{name}_top5"] = 100 * hit5[m].mean().item()
    return out


def retrieval_metrics(image_emb, text_emb, captions: list[str] | None = None, ks=(1, 5, 10),
                      text_image=None) -> dict:
    """Recall@k (%) both ways.

    With ``text_image`` (the image index of each text: several captions per image, as in COCO / Flickr30k),
    hits follow clip_benchmark: image->text counts when any of the image's captions is in the top k,
    text->image when the caption's own image is. Without it the N images and N texts are paired and a hit is
    any retrieved item whose caption equals the query's (identical captions are equally right).
    """
    sim = _t(image_emb) @ _t(text_emb).T  # [images, texts]
    if text_image is not None:
        owner = torch.as_tensor(np.asarray(text_image)).long()  # [texts]
        out = {}
        i2t = owner[sim.topk(min(max(ks), sim.shape[1]), dim=1).indices] == torch.arange(sim.shape[0])[:, None]
        t2i = sim.T.topk(min(max(ks), sim.shape[0]), dim=1).indices == owner[:, None]
        for name, hits in (("i2t", i2t), ("t2i", t2i)):
            for k in ks:
                out[f"{name}_R@{k}"] = 100 * hits[:, :k].any(1).float().mean().item()
        return out
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    cap = torch.tensor([ids[c] for c in captions])
    out = {}
    for name, s in (("i2t", sim), ("t2i", sim.T)):
        ranked = s.topk(max(ks), dim=1).indices  # [N, kmax]
        same = cap[ranked] == cap[:, None]
        for k in ks:
            out[f"{name}_R@{k}"] = 100 * same[:, :k].any(1).float().mean().item()
    return out


def agreement_metrics(t_img, t_txt, s_img, s_txt) -> dict:
    """How closely a student reproduces its teacher's image-to-text similarity rows."""
    t_sim, s_sim = _t(t_img) @ _t(t_txt).T, _t(s_img) @ _t(s_txt).T
    top1 = (t_sim.argmax(1) == s_sim.argmax(1)).float().mean().item()
    row_cos = torch.nn.functional.cosine_similarity(t_sim, s_sim, dim=1).mean().item()
    return {"top1_agreement": 100 * top1, "sim_row_cosine": row_cos}


@torch.no_grad()
def embed_images(model, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """uint8 [N, H, W, 3] at the model's input size --> normalised [N, D]."""
    from .data.transforms import to_tensor
    dev = next(model.parameters()).device  # a model training on a GPU is scored where it is
    return torch.cat([model.encode_image(to_tensor(images[i:i + batch_size]).to(dev), normalize=True).float().cpu()
                      for i in _batches(len(images), batch_size, "embed images")])


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    dev = next(model.parameters()).device
    return torch.cat([model.encode_text(tokenizer(texts[i:i + batch_size]).to(dev), normalize=True).float().cpu()
                      for i in _batches(len(texts), batch_size, "embed texts")])


@dataclass
class EvalResult:
    zero_shot: dict = field(default_factory=dict)
    retrieval: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def shapes_eval_sets(n_zeroshot: int = 4096, n_retrieval: int = 1000, image_size: int = 32):
    """Rendered ShapesWorld evaluation sets (cached per process: they are deterministic)."""
    key = (n_zeroshot, n_retrieval, image_size)
    if key not in _SETS:
        from .data.shapes import ShapesWorld, class_prompts, is_held_out
        zi, _, zl = ShapesWorld("zeroshot", image_size).batch(0, n_zeroshot)
        ri, rc, _ = ShapesWorld("retrieval", image_size).batch(0, n_retrieval)
        held = np.array([is_held_out(int(l)) for l in zl])
        _SETS[key] = dict(zs_images=zi, zs_labels=zl, held=held, prompts=class_prompts(), ret_images=ri,
                          ret_captions=rc)
    return _SETS[key]


_SETS: dict = {}


def evaluate_shapes(model, tokenizer, teacher=None, teacher_tokenizer=None, n_zeroshot: int = 4096,
                    n_retrieval: int = 1000) -> EvalResult:
    """Zero-shot (all/seen/held-out) and retrieval on ShapesWorld; agreement with ``teacher`` when given."""
    image_size = model.visual.image_size[0] if hasattr(model.visual, "image_size") else 32
    s = shapes_eval_sets(n_zeroshot, n_retrieval, image_size)
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


def _folder_items(folder, class_names_file=None, limit=None):
    """ImageNet-style folder: ``manifest.csv`` (filepath + class_name/label) or one sub-folder per class."""
    import csv
    from pathlib import Path

    from .data.pairs import IMAGE_EXTS
    from .errors import DataError
    folder = Path(folder)
    man = folder / "manifest.csv"
    if man.is_file():
        with open(man, newline="", encoding="utf-8", errors="replace") as f:
            rows = [(folder / r["filepath"], r.get("class_name") or r.get("label") or r.get("title"))
                    for r in csv.DictReader(f) if r.get("filepath")]
    else:
        rows = [(p, p.parent.name) for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_EXTS]
    if class_names_file:
        names = [l.strip() for l in Path(class_names_file).read_text().splitlines() if l.strip()]
        subdirs = sorted({lab for _, lab in rows})
        if len(names) != len(subdirs):
            raise DataError(f"class file has {len(names)} names for {len(subdirs)} classes")
        rows = [(p, names[subdirs.index(lab)]) for p, lab in rows]
    rows = [r for r in rows if r[1]][:limit]
    if not rows:
        raise DataError(f"no labelled images in {str(folder)!r}")
    return rows


@torch.no_grad()
def embed_pil_images(model, images, batch_size: int = 64) -> torch.Tensor:
    """PIL images --> normalised [N, D] with the model's own eval preprocessing."""
    from .models.io import image_transform, preprocess_cfg
    tf = image_transform(preprocess_cfg(model))
    return torch.cat([model.encode_image(torch.stack([tf(i) for i in images[j:j + batch_size]]), normalize=True)
                      for j in _batches(len(images), batch_size, "embed images")])


def evaluate_model(model, data="shapes", teacher=None, class_names=None, limit=None,
                   template: str = "a photo of a {}.", csv_img_key: str = "filepath", csv_caption_key: str = "title",
                   csv_separator: str | None = None) -> dict:
    """Evaluate on ``"shapes"``, an image folder with classes (zero-shot), or a CSV of pairs (retrieval).

    A CSV (open_clip's conventions, ``csv_*`` as its ``--csv-*`` flags, or a ``CsvPairs``) may hold several captions per image:
    rows are grouped by image and scored as clip_benchmark does. ``limit`` caps the items (images for a CSV).
    Corrupt images are skipped and counted under ``"skipped"``.
    """
    from pathlib import Path

    from .data.pairs import CsvPairs, open_image
    from .models import get_tokenizer
    tok = get_tokenizer(model)
    if str(data) == "shapes":
        r = evaluate_shapes(model, tok, teacher, get_tokenizer(teacher) if teacher else None)
        return {"data": "shapes", **r.to_dict()}
    p = Path(data.path if isinstance(data, CsvPairs) else data)
    if p.is_dir():
        rows, imgs, labels, skipped = _folder_items(p, class_names, limit), [], [], 0
        for path, lab in tqdm(rows, desc="read images", unit="img", leave=False, mininterval=1):
            try:
                imgs.append(open_image(path))
                labels.append(lab)
            except Exception:
                skipped += 1
        classes = sorted(set(labels))
        y = np.array([classes.index(l) for l in labels])
        prompts = [template.format(c) for c in classes]
        img, cls = embed_pil_images(model, imgs), embed_texts(model, tok, prompts)
        out = {"data": str(p), "skipped": skipped, "zero_shot": zero_shot_metrics(img, cls, y)}
        if teacher is not None:
            out["agreement"] = agreement_metrics(embed_pil_images(teacher, imgs),
                                                 embed_texts(teacher, get_tokenizer(teacher), prompts), img, cls)
        return out
    pairs = data if isinstance(data, CsvPairs) else CsvPairs(p, csv_img_key, csv_caption_key, csv_separator)
    imgs, caps, owner = [], [], []
    for path, group in tqdm(pairs.by_image(limit), desc="read images", unit="image", leave=False, mininterval=1):
        # each image decoded and embedded once, whatever its captions
        if not path.is_file():
            pairs.skipped.add("missing file")
            continue
        try:
            imgs.append(open_image(path))
        except Exception:
            pairs.skipped.add("corrupt image")
            continue
        caps += group
        owner += [len(imgs) - 1] * len(group)
    if not imgs:
        from .errors import DataError
        raise DataError(f"no readable image-caption pairs in {str(p)!r}")
    img, txt = embed_pil_images(model, imgs), embed_texts(model, tok, caps)
    out = {"data": str(p), "images": len(imgs), "captions": len(caps), "skipped": dict(pairs.skipped.counts),
           "retrieval": retrieval_metrics(img, txt, text_image=owner)}
    if teacher is not None:
        out["agreement"] = agreement_metrics(embed_pil_images(teacher, imgs), embed_texts(teacher, get_tokenizer(teacher),
                                                                                    caps), img, txt)
    return out
