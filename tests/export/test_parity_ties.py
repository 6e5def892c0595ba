"""Top-1 agreement sets aside near-ties (the reference's own preference below the precision's tie margin) and
still counts every real disagreement."""
import numpy as np
import torch

from edgeclip.export.parity import compare
from edgeclip.export.tolerances import TIE_MARGIN, Precision


class _FakeRuntime:
    """Returns the reference embeddings with a chosen perturbation (stands in for an exported variant)."""

    def __init__(self, model, delta_img):
        from edgeclip.runtime.preprocess import Preprocess
        from edgeclip.models import get_tokenizer
        from edgeclip.models.io import preprocess_cfg
        self.model, self.delta = model, delta_img
        self.preprocess = Preprocess(preprocess_cfg(model))
        tok = get_tokenizer(model)
        self.tokenizer = lambda texts: tok(texts).numpy()

    def embed_pixels(self, x, b=None):
        with torch.no_grad():
            # torch.tensor copies: parity shares one read-only pixel array among the variants
            e = self.model.encode_image(torch.tensor(x), normalize=True).numpy()
        return e + self.delta[: len(e)] if self.delta is not None else e

    def embed_ids(self, ids, b=None):
        with torch.no_grad():
            return self.model.encode_text(torch.from_numpy(ids), normalize=True).numpy()


def _images(n):
    from PIL import Image
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def test_identical_outputs_agree_fully_and_big_changes_are_not_ties(tiny_model):
    imgs, prompts = _images(12), ["a red star", "a blue circle", "a green square", "a photo", "x", "y"]
    same = compare(tiny_model, _FakeRuntime(tiny_model, None), imgs, prompts, batch_sizes=(5,),
                   tie_margin=TIE_MARGIN[Precision.INT8_STATIC])["retrieval"]
    assert same["top1_agreement"] == same["top1_agreement_raw"] == 100.0 and same["near_ties"] == 0
    noise = np.random.default_rng(1).normal(0, 1.0, (12, 32)).astype(np.float32)  # destroys the embeddings
    for margin in (0.0, TIE_MARGIN[Precision.INT8_STATIC]):
        r = compare(tiny_model, _FakeRuntime(tiny_model, noise), imgs, prompts, batch_sizes=(5,),
                    tie_margin=margin)["retrieval"]
        assert r["top1_agreement_raw"] < 100.0
        assert r["top1_agreement"] <= r["top1_agreement_raw"] + 100.0 * r["near_ties"] / 12
    zero = compare(tiny_model, _FakeRuntime(tiny_model, noise), imgs, prompts, batch_sizes=(5,), tie_margin=0.0)
    assert zero["retrieval"]["near_ties"] == 0  # no margin: every flip counts


def test_a_flip_within_the_margin_is_a_near_tie_and_outside_it_is_not(tiny_model):
    """Push one image's embedding just enough to flip its top-1 between its two best texts."""
    imgs, prompts = _images(8), ["a red star", "a blue circle", "a green square", "a photo"]
    rt = _FakeRuntime(tiny_model, None)
    with torch.no_grad():
        ref_t = tiny_model.encode_text(torch.from_numpy(rt.tokenizer(prompts)), normalize=True).numpy()
        ref_i = rt.embed_pixels(rt.preprocess.batch(imgs))
    sim = ref_i @ ref_t.T
    order = np.argsort(-sim, 1)
    gaps = sim[np.arange(8), order[:, 0]] - sim[np.arange(8), order[:, 1]]
    i = int(np.argmin(gaps))
    a, b = order[i, 0], order[i, 1]
    direction = ref_t[b] - ref_t[a]
    delta = np.zeros((8, ref_i.shape[1]), np.float32)
    delta[i] = direction * (gaps[i] * 1.5 / float(direction @ direction))  # now b beats a by half the old gap
    for margin, tie in ((float(gaps[i]) * 2, 1), (float(gaps[i]) / 2, 0)):
        r = compare(tiny_model, _FakeRuntime(tiny_model, delta), imgs, prompts, batch_sizes=(8,),
                    tie_margin=margin)["retrieval"]
        assert r["top1_agreement_raw"] == 100.0 * 7 / 8
        assert r["near_ties"] == tie
        assert r["top1_agreement"] == (100.0 if tie else 100.0 * 7 / 8)
