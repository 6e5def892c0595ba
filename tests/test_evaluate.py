"""Retrieval with several captions per image, scored as clip_benchmark does, against oracle embeddings."""
import numpy as np
import pytest
import torch
from PIL import Image

from edgeclip.evaluate import evaluate_model, retrieval_metrics


def _oracle(n_images=6, per_image=5, dim=16, seed=0):
    """Perfect embeddings: every caption sits exactly on its image's (random, unit) direction."""
    g = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(n_images, dim, generator=g), dim=1)
    owner = np.repeat(np.arange(n_images), per_image)
    return img, img[owner], owner


def test_perfect_embeddings_score_100_with_five_captions_per_image():
    img, txt, owner = _oracle()
    r = retrieval_metrics(img, txt, text_image=owner)
    assert all(v == 100.0 for v in r.values()), r
    # the row-paired rule (one caption per row, hit only on the identical string) cannot score it:
    paired = retrieval_metrics(img[owner], txt, [f"caption {i}" for i in range(len(owner))])
    assert paired["i2t_R@1"] < 50 and paired["t2i_R@1"] < 50  # 20% each, as the issue found


def test_shuffled_owners_do_not_score_100():
    img, txt, owner = _oracle()
    wrong = np.random.default_rng(0).permutation(owner)
    r = retrieval_metrics(img, txt, text_image=wrong)
    assert r["i2t_R@1"] < 100 and r["t2i_R@1"] < 100


def test_i2t_counts_any_caption_t2i_counts_only_its_image():
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]])  # caption 3 belongs to image 0 but looks like 1
    r = retrieval_metrics(img, txt, text_image=[0, 1, 2, 0], ks=(1,))
    assert r["i2t_R@1"] == 100.0 and r["t2i_R@1"] == pytest.approx(75.0)


def test_csv_with_five_captions_decodes_each_image_once(tmp_path, tiny_model, monkeypatch):
    import edgeclip.data.folders as folders
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    rows = ["filepath\ttitle"]
    for i, c in enumerate(colours):
        Image.new("RGB", (32, 32), c).save(tmp_path / f"{i}.png")
        rows += [f"{i}.png\tcaption {j} of image {i}" for j in range(5)]
    rows.append("gone.png\ta missing photo")
    (tmp_path / "coco.csv").write_text("\n".join(rows) + "\n")
    opened = []
    real = folders.open_image
    monkeypatch.setattr(folders, "open_image", lambda p: opened.append(p) or real(p))
    res = evaluate_model(tiny_model, tmp_path / "coco.csv")
    assert len(opened) == 3 and res["images"] == 3 and res["captions"] == 15
    assert res["skipped"] == {"missing file": 1}
    assert set(res["retrieval"]) == {f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
