import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from edgeclip.distill.losses import affinity_loss


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


def test_contrastive_term_is_separate():
    img, txt = _feats()
    out = affinity_loss(img, txt, img, txt, contrastive_weight=0.5)
    assert set(out) == {"loss", "i2t", "t2i", "contrastive"}
    assert torch.allclose(out["loss"], 0.5 * (out["i2t"] + out["t2i"]) + 0.5 * out["contrastive"])


def test_two_process_gloo_equals_one_process_doubled_batch(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                    str(worker), str(tmp_path)], check=True, env=env, capture_output=True, timeout=240)
    subprocess.run([sys.executable, str(worker), str(tmp_path)], check=True, env=env, timeout=120)
    one = torch.load(tmp_path / "ws1.pt", weights_only=True)
    two = torch.load(tmp_path / "ws2.pt", weights_only=True)
    assert abs(one["loss"] - two["loss"]) <= 1e-5
    for k in one["grads"]:
        assert (one["grads"][k] - two["grads"][k]).abs().max() <= 1e-5, k
