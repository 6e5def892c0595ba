"""edgeclip.evaluate.metrics: numpy only (imports without torch), same scores as the torch formulas it replaced."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgeclip.evaluate.metrics import agreement_metrics, retrieval_metrics, topk_indices, zero_shot_metrics


@pytest.mark.parametrize("module", ["edgeclip.evaluate.metrics", "edgeclip.data.folders", "edgeclip.evaluate"])
def test_import_does_not_load_torch(module):
    code = f"import sys, {module}; print(sorted({{'torch', 'open_clip'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]", f"import {module} loads {out.strip()}"


def _unit(n, d, seed):
    x = torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)
    return x


def test_scores_equal_the_torch_formulas_on_random_embeddings():
    img, cls, txt = _unit(200, 16, 0), _unit(10, 16, 1), _unit(200, 16, 2)
    labels = torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(3))
    logits = img @ cls.T
    top5 = logits.topk(5, dim=1).indices
    ref_top1 = 100 * (top5[:, 0] == labels).float().mean().item()
    ref_top5 = 100 * (top5 == labels[:, None]).any(1).float().mean().item()
    zs = zero_shot_metrics(img, cls.numpy(), labels.numpy())  # torch and numpy inputs alike
    assert zs["top1"] == pytest.approx(ref_top1) and zs["top5"] == pytest.approx(ref_top5) and zs["n"] == 200
    assert 0 < zs["top1"] < zs["top5"] < 100  # random data: neither trivial nor perfect

    owner = np.arange(200) % 50  # 4 captions per image for the first 50 images
    sim = img[:50] @ txt.T
    i2t = torch.as_tensor(owner)[sim.topk(5, dim=1).indices] == torch.arange(50)[:, None]
    t2i = sim.T.topk(5, dim=1).indices == torch.as_tensor(owner)[:, None]
    r = retrieval_metrics(img[:50], txt, text_image=owner, ks=(1, 5))
    assert r["i2t_R@5"] == pytest.approx(100 * i2t.any(1).float().mean().item())
    assert r["t2i_R@1"] == pytest.approx(100 * t2i[:, :1].any(1).float().mean().item())

    s_img, s_txt = img + 0.3 * _unit(200, 16, 4), cls + 0.3 * _unit(10, 16, 5)
    t_sim, s_sim = img @ cls.T, s_img @ s_txt.T
    a = agreement_metrics(img, cls, s_img, s_txt)
    assert a["top1_agreement"] == pytest.approx(100 * (t_sim.argmax(1) == s_sim.argmax(1)).float().mean().item())
    assert a["sim_row_cosine"] == pytest.approx(
        torch.nn.functional.cosine_similarity(t_sim, s_sim, dim=1).mean().item(), abs=1e-6)
    assert 0 < a["top1_agreement"] < 100


def test_ties_go_to_the_lower_index_whatever_the_row_count():
    scores = np.zeros((1500, 7), np.float32)  # more rows than one ranking chunk
    scores[:, 3] = 1.0
    idx = topk_indices(scores, 3)
    assert idx.shape == (1500, 3) and (idx == [3, 0, 1]).all()
    assert topk_indices(scores[:2], 10).shape == (2, 7)  # k above the columns: all of them
