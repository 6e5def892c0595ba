"""CLIPProcessor on an ``--hf`` copy sees open_clip's pixels when given the model card's recipe, and its own
difference is exactly the documented one (the centre-crop rounding), on real photos and odd generated sizes, at
the reference student's 32 px and at a ViT-B-32-shaped 224 px. The HF side runs in a process without edgeclip."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("transformers")

from edgeclip.imageio import open_image  # noqa: E402
from edgeclip.models import create_model, get_model_config  # noqa: E402
from edgeclip.models.hf import save_hf  # noqa: E402
from edgeclip.models.io import image_transform, preprocess_cfg  # noqa: E402

from conftest import PHOTOS  # noqa: E402

pytestmark = pytest.mark.slow  # CLIPProcessor against open_clip at 224 px (~45 s)

# Sizes chosen so that both crop cases occur at 32 and at 224 px (long side over the crop by 3 mod 4, or not),
# with tall, wide, square, tiny and large images and the modes a folder holds (L, RGBA, P).
ODD = [((97, 61), "RGB"), ((107, 54), "RGB"), ((75, 206), "RGB"), ((228, 68), "L"), ((64, 64), "RGB"),
       ((640, 479), "RGBA"), ((45, 300), "RGB"), ((1023, 767), "P"), ((250, 206), "RGB"), ((275, 348), "RGB")]
PROBE = r"""
import json, sys
import numpy as np, torch
from PIL import Image
from torchvision.transforms import CenterCrop, InterpolationMode, Resize
from transformers import CLIPModel, CLIPProcessor
folder, out, paths = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
proc, model = CLIPProcessor.from_pretrained(folder), CLIPModel.from_pretrained(folder).eval()
geometry = open(folder + "/README.md").read().split("square = ")[1].split("\n")[0]  # the card's recipe, verbatim
images = [Image.open(p) for p in paths]
raw = proc(images=images, return_tensors="np")["pixel_values"]
square = [eval(geometry, {"CenterCrop": CenterCrop, "Resize": Resize, "InterpolationMode": InterpolationMode,
                          "image": im}) for im in images]
recipe = proc(images=square, return_tensors="pt")["pixel_values"]
with torch.no_grad():
    f = model.get_image_features(pixel_values=recipe)
f = getattr(f, "pooler_output", f)
np.savez(out, raw=raw, recipe=recipe.numpy(), features=f.numpy(),
         edgeclip=any(m.startswith("edgeclip") for m in sys.modules))
"""


def _images(tmp_path) -> list[str]:
    """Photo-like generated images (smooth colour fields, edges and noise: a crop shift shows) plus, when the
    shared sample is here, 40 of its photos."""
    rng = np.random.default_rng(0)
    paths = []
    for i, ((w, h), mode) in enumerate(ODD):
        y, x = np.mgrid[0:h, 0:w] / max(w, h)
        a = np.stack([np.sin(7 * x + i), np.cos(5 * y - i), np.sin(3 * (x + y))], -1) * 100 + 128
        a[(x * 11).astype(int) % 2 == 0] *= 0.5  # stripes: sharp edges
        a = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
        im = Image.fromarray(a)
        im = im.convert("L") if mode == "L" else im.convert("RGBA") if mode == "RGBA" else \
            im.quantize(64) if mode == "P" else im
        paths.append(str(tmp_path / f"odd{i}.png"))
        im.save(paths[-1])
    if (PHOTOS / "images").is_dir():
        paths += [str(p) for p in sorted((PHOTOS / "images").iterdir())[:40]]
    return paths


def _shifted(path: str, size: int) -> bool:
    """The documented case: the resized long side exceeds the crop by 3 (mod 4), where floor and round-half-even
    put the crop one pixel apart."""
    w, h = Image.open(path).size
    return (int(size * max(w, h) / min(w, h)) - size) % 4 == 3


def _vit_b32_shaped() -> dict:
    """ViT-B-32's input geometry (224 px, patch 32) with a narrow tower: the pixels are what is under test."""
    cfg = get_model_config("ViT-B-32")
    cfg["vision_cfg"].update(layers=2, width=128, head_width=32)
    cfg["text_cfg"].update(layers=1, width=64, heads=2)
    cfg["embed_dim"] = 64
    return cfg


@pytest.mark.parametrize("which", ["reference-32px", "vit-b-32-224px"])
def test_clip_processor_pixels_match_open_clip(tmp_path, which, reference_teacher):
    model = reference_teacher if which == "reference-32px" else create_model(_vit_b32_shaped(), seed=0)
    pre = preprocess_cfg(model)
    size = pre["size"] if isinstance(pre["size"], int) else pre["size"][0]
    assert size == (32 if which == "reference-32px" else 224)
    save_hf(model, tmp_path / "hf")
    paths = _images(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    r = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "hf"), str(tmp_path / "hf.npz"), json.dumps(paths)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(tmp_path / "hf.npz")
    assert not got["edgeclip"]

    tf = image_transform(pre)
    ours = torch.stack([tf(open_image(p)) for p in paths])
    with torch.no_grad():
        feats = model.encode_image(ours, normalize=True).numpy()
    # the card's recipe: open_clip's pixels and features
    np.testing.assert_allclose(got["recipe"], ours.numpy(), atol=1e-3)
    hf = got["features"] / np.linalg.norm(got["features"], axis=1, keepdims=True)
    assert float((hf * feats).sum(1).min()) >= 0.9999
    # the processor alone: a whole-pixel shift exactly where the card says, interpolation noise elsewhere
    gap = np.abs(got["raw"] - ours.numpy()).reshape(len(paths), -1).max(1)
    shifted = np.array([_shifted(p, size) for p in paths])
    assert shifted[:len(ODD)].any() and not shifted[:len(ODD)].all()  # both cases are exercised
    assert (gap > 0.05).tolist() == shifted.tolist(), list(zip(paths, gap.round(3), shifted))
