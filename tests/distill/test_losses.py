import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from edgeclip.distill.losses import (Embeddings, affinity_loss, clip_loss, distill_loss, feature_loss, format_loss,
                                     icl_loss, parse_loss)
from edgeclip.errors import ConfigError


def _feats(b=8, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g), dim=-1), F.normalize(torch.randn(b, d, generator=g), dim=-1)


def test_student_equal_teacher_gives_teacher_entropy():
    img, txt = _feats()
    out = affinity_loss(img, txt, img, txt, scale=50.0)
    p = (50 * img @ txt.T).softmax(-1)
    h_i2t = -(p * p.log()).sum(-1).mean()
    q = (50 * txt @ img.T).softmax(-1)
    h_t2i = -(q * q.log()).sum(-1).mean()
    assert torch.allclose(out["loss"], 0.5 * (h_i2t + h_t2i), atol=1e-5)


def test_loss_is_larger_for_a_different_student_and_no_grad_reaches_teacher():
    t_img, t_txt = _feats(seed=0)
    s_img, s_txt = _feats(seed=1)
    t_img.requires_grad_(True)
    s_img.requires_grad_(True)
    out = affinity_loss(s_img, s_txt, t_img, t_txt)
    out["loss"].backward()
    assert t_img.grad is None and s_img.grad is not None
    assert out["loss"] > affinity_loss(t_img.detach(), t_txt, t_img.detach(), t_txt)["loss"]


def test_weighted_sum_holds_only_the_weighted_terms():
    t_img, t_txt = _feats(seed=0)
    s_img, s_txt = _feats(seed=1)
    e = Embeddings(s_img, s_txt, s_img, s_txt, t_img, t_txt)
    w = {"affinity": 1.0, "feature": 2000.0, "icl": 0.5, "contrastive": 0.25}
    out = distill_loss(w, e)
    assert set(out) == {"loss", *w}
    assert torch.allclose(out["loss"], sum(w[k] * out[k] for k in w))
    assert set(distill_loss({"feature": 1.0}, e)) == {"loss", "feature"}
    assert torch.allclose(out["affinity"], affinity_loss(s_img, s_txt, t_img, t_txt)["loss"])


def test_feature_distillation_is_zero_only_when_student_equals_teacher():
    t_img, t_txt = _feats(seed=0)
    s_img, s_txt = _feats(seed=1)
    assert feature_loss(t_img, t_txt, t_img, t_txt).item() == 0.0
    fd = feature_loss(s_img, s_txt, t_img, t_txt)
    expected = ((s_img - t_img) ** 2).mean() + ((s_txt - t_txt) ** 2).mean()
    assert fd.item() > 0 and torch.allclose(fd, expected)


def test_icl_equals_the_clip_loss_when_student_equals_teacher():
    t_img, t_txt = _feats(seed=0)
    s_img, s_txt = _feats(seed=1)
    assert torch.allclose(icl_loss(t_img, t_txt, t_img, t_txt, 50.0), clip_loss(t_img, t_txt, t_img, t_txt, 50.0))
    labels = torch.arange(8)
    by_hand = 0.5 * (F.cross_entropy(50 * t_img @ t_txt.T, labels) + F.cross_entropy(50 * t_txt @ t_img.T, labels))
    assert torch.allclose(clip_loss(t_img, t_txt, t_img, t_txt, 50.0), by_hand)
    assert not torch.allclose(icl_loss(s_img, s_txt, t_img, t_txt), clip_loss(s_img, s_txt, s_img, s_txt))


def test_gradients_reach_only_the_student_and_the_projection(tiny_model):
    from edgeclip.distill.trainer import Distillee
    teacher_dim = 48  # != the tiny student's 32: a projection is made for feature/icl
    d = Distillee(tiny_model, teacher_dim)
    assert d.projection is not None and d.projection.weight.shape == (48, 32)
    g = torch.Generator().manual_seed(0)
    pixels, ids = torch.randn(4, 3, 32, 32, generator=g), torch.randint(1, 100, (4, 16), generator=g)
    t_img = F.normalize(torch.randn(4, teacher_dim, generator=g), dim=-1).requires_grad_(True)
    t_txt = F.normalize(torch.randn(4, teacher_dim, generator=g), dim=-1).requires_grad_(True)
    s_img, s_txt, p_img, p_txt = d(pixels, ids)
    out = distill_loss({"affinity": 1, "feature": 2000, "icl": 1, "contrastive": 1},
                       Embeddings(s_img, s_txt, p_img, p_txt, t_img, t_txt))
    out["loss"].backward()
    assert t_img.grad is None and t_txt.grad is None
    assert d.projection.weight.grad is not None and d.projection.weight.grad.abs().sum() > 0
    assert tiny_model.visual.conv1.weight.grad.abs().sum() > 0
    assert Distillee(tiny_model, 32).projection is None  # equal widths: compared directly
    assert not any(k.startswith("projection") for k in tiny_model.state_dict())  # the student is saved alone


@pytest.mark.parametrize("spec, message", [
    ("affinity", "has no weight"), ("affnity=1", "unknown loss term 'affnity'"), ("feature=x", "must be a number"),
    ("feature=-1", "finite and >= 0"), ("icl=nan", "finite and >= 0"), ("affinity=0", "every loss weight is 0"),
    ("", "NAME=WEIGHT pairs")])
def test_bad_loss_specs_are_one_line_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_loss(spec)


def test_loss_spec_spellings_agree():
    assert parse_loss("affinity=1, feature=2000") == parse_loss({"affinity": 1, "feature": 2000.0}) \
        == {"affinity": 1.0, "feature": 2000.0}
    assert parse_loss("affinity=1,icl=0") == {"affinity": 1.0}
    assert format_loss(parse_loss("affinity=1,feature=2000")) == "affinity=1,feature=2000"


@pytest.mark.slow
def test_two_process_gloo_equals_one_process_doubled_batch(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: torchrun picks a free port (a fixed one failed in CI when it was taken)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(worker), str(tmp_path)], env=env, capture_output=True, text=True, timeout=240)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(worker), str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    one = torch.load(tmp_path / "ws1.pt", weights_only=True)
    two = torch.load(tmp_path / "ws2.pt", weights_only=True)
    assert abs(one["loss"] - two["loss"]) <= 1e-5
    for k in one["grads"]:
        scale = one["grads"][k].abs().max()  # FD x2000 makes gradients ~100: compare relative to their size
        assert (one["grads"][k] - two["grads"][k]).abs().max() <= 1e-6 * scale, k
