"""How far CLIPProcessor's pixels are from open_clip's on an ``--hf`` copy, and what the model card's recipe leaves.

On the shared ImageNet photos, for the reference teacher's HF copy (32 px) and a random ViT-B-32 (224 px):
per image, the largest pixel gap (normalised units), the image-feature cosine against edgeclip's features, and
whether zero-shot top-1 over the photos' 200 class names ("a photo of a {}.") agrees; for CLIPProcessor alone
and for CLIPProcessor after the card's geometric step (``edgeclip.models.hf.hf_model_card``). Usage:
    python benchmarks/hf_preprocessing.py [--photos ../shared/data/imagenet-sample-200]
"""
from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import plot_path, write


def measure(model, photos: Path, tmp: Path) -> dict:
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize
    from transformers import CLIPModel, CLIPProcessor

    from edgeclip.evaluate.embed import embed_texts
    from edgeclip.imageio import open_image
    from edgeclip.models import get_tokenizer
    from edgeclip.models.hf import open_clip_geometry, save_hf
    from edgeclip.models.io import image_transform, preprocess_cfg

    pre = preprocess_cfg(model)
    save_hf(model, tmp)
    proc, hf = CLIPProcessor.from_pretrained(tmp), CLIPModel.from_pretrained(tmp).eval()
    rows = list(csv.DictReader(open(photos / "manifest.csv")))
    files = [photos / r["filepath"] for r in rows]
    classes = sorted({r["class_name"] for r in rows})
    text = embed_texts(model, get_tokenizer(model), [f"a photo of a {c}." for c in classes]).numpy()
    tf, geometry = image_transform(pre), open_clip_geometry(pre)
    names = {"CenterCrop": CenterCrop, "Resize": Resize, "InterpolationMode": InterpolationMode}
    ours = torch.stack([tf(open_image(p)) for p in files])
    arms = {"CLIPProcessor": proc(images=[Image.open(p) for p in files], return_tensors="pt")["pixel_values"],
            "card recipe + CLIPProcessor": proc(images=[eval(geometry, {**names, "image": Image.open(p)})
                                                        for p in files], return_tensors="pt")["pixel_values"]}
    with torch.no_grad():
        ref = model.encode_image(ours, normalize=True).numpy()
        out = {"size": pre["size"], "images": len(files), "arms": {}}
        for arm, px in arms.items():
            f = hf.get_image_features(pixel_values=px)
            f = getattr(f, "pooler_output", f).numpy()
            f /= np.linalg.norm(f, axis=1, keepdims=True)
            gap = (px - ours).abs().flatten(1).amax(1).numpy()
            cos = (f * ref).sum(1)
            out["arms"][arm] = {"pixel_max_abs_diff": float(gap.max()), "images_over_0.05": int((gap > 0.05).sum()),
                                "cosine_min": float(cos.min()), "cosine_median": float(np.median(cos)),
                                "images_cosine_below_0.9999": int((cos < 0.9999).sum()),
                                "top1_agreement": float(((f @ text.T).argmax(1) == (ref @ text.T).argmax(1)).mean()),
                                "cosines": cos.round(6).tolist()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
                    / "imagenet-sample-200")
    a = ap.parse_args()
    if not (a.photos / "manifest.csv").is_file():
        raise SystemExit(f"hf_preprocessing: error: no manifest.csv in {a.photos}")
    from edgeclip.models import create_model, load_teacher
    torch.manual_seed(0)
    models = {"reference teacher (32 px)": load_teacher("reference"), "random ViT-B-32 (224 px)":
              create_model("ViT-B-32", seed=0)}
    res = {}
    for name, m in models.items():
        with tempfile.TemporaryDirectory() as t:
            res[name] = measure(m.eval(), a.photos, Path(t) / "hf")
        for arm, r in res[name]["arms"].items():
            print(f"{name:28s} {arm:28s} pixels max|d| {r['pixel_max_abs_diff']:.3g} "
                  f"({r['images_over_0.05']} images > 0.05)  cosine min {r['cosine_min']:.5f}  "
                  f"top-1 agreement {r['top1_agreement']:.1%}")
    write("hf_preprocessing", {"photos": str(a.photos), "models": res})

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, len(res), figsize=(11, 3.6))
    for i, (name, r) in enumerate(res.items()):
        for arm, v in r["arms"].items():
            ax[i].hist(1 - np.clip(v["cosines"], -1, 1), bins=np.logspace(-9, 0, 40), alpha=0.6, label=arm)
        ax[i].set(xscale="log", title=name, xlabel="1 - cosine to edgeclip's image features", ylabel="photos")
        ax[i].legend(fontsize=8)
    fig.suptitle(f"CLIPProcessor vs open_clip pixels on {r['images']} ImageNet photos")
    fig.tight_layout()
    fig.savefig(plot_path("hf_preprocessing"), dpi=110)


if __name__ == "__main__":
    main()
