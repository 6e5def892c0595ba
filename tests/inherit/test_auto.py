"""L0-mask auto inheritance on a tiny CLIP: Lagrangian control, exact fusion, standard loadable result."""
import subprocess
import sys

import pytest
import torch

from edgeclip.data.pairs import ShapesPairs
from edgeclip.data.loader import Batches
from edgeclip.distill.prune import AutoConfig, prune
from edgeclip.inherit.auto import HardConcrete, MaskedCLIP, fuse
from edgeclip.models import create_model, get_tokenizer, save_student
from edgeclip.models.io import default_preprocess_cfg, image_transform
from edgeclip.models.params import count_params

TARGET = {"vision": 110_000, "text": 90_000}


@pytest.fixture(scope="module")
def pruned():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    from conftest import TINY_CFG
    teacher = create_model(TINY_CFG, seed=0)
    masked = MaskedCLIP(create_model(TINY_CFG, seed=0), tie_layers=True)
    tok = get_tokenizer(teacher)
    batches = Batches(ShapesPairs(512), 32, 0, image_transform(default_preprocess_cfg(TINY_CFG)), tok, tok)
    hist = prune(masked, teacher, batches, TARGET, AutoConfig(steps=60, warmup=30))
    return teacher, masked, hist


def test_unpruned_masks_reproduce_the_model(tiny_model):
    m = MaskedCLIP(tiny_model).eval()
    x, ids = torch.randn(2, 3, 32, 32), torch.randint(1, 4000, (2, 16))
    ids[:, -1] = 49407
    with torch.no_grad():
        ref_i, ref_t = tiny_model.encode_image(x), tiny_model.encode_text(ids)  # unnormalised: relative tolerances
        assert (m.encode_image(x) - ref_i).abs().max() <= 1e-5 * ref_i.abs().max()
        assert (m.encode_text(ids) - ref_t).abs().max() <= 1e-5 * ref_t.abs().max()


def test_hard_concrete_gates():
    g = HardConcrete(1000, init=0.0)
    z = g()
    assert ((z == 0).any() and (z == 1).any() and ((z > 0) & (z < 1)).any())
    g.log_alpha.data.fill_(10.0)
    assert torch.all(g.eval()() == 1.0)


@pytest.mark.slow
def test_lambda_grows_while_target_unmet_and_size_tracks_target(pruned):
    _, masked, hist = pruned
    lam = [h["vision"][0] for h in hist.lambdas]
    assert lam[10] > lam[0] and lam[19] > lam[10]  # the ramped target is not met yet: multiplier rises
    start, end = hist.expected[0]["vision"], hist.expected[-1]["vision"]
    assert end < start and abs(end - TARGET["vision"]) <= 0.5 * (start - TARGET["vision"])


@pytest.mark.slow
def test_fused_equals_masked_and_meets_the_target(pruned, tmp_path):
    _, masked, _ = pruned
    student = fuse(masked, {"image": TARGET["vision"], "text": TARGET["text"]})
    masked.eval()
    x, ids = torch.randn(3, 3, 32, 32), get_tokenizer(student)(["a red star", "", "a small blue ring"])
    with torch.no_grad():
        assert (masked.encode_image(x, True) - student.encode_image(x, True)).abs().max() <= 1e-5
        assert (masked.encode_text(ids, True) - student.encode_text(ids, True)).abs().max() <= 1e-5
    c = count_params(student)
    assert abs(c.vision - TARGET["vision"]) <= 0.01 * TARGET["vision"]
    assert abs(c.text - TARGET["text"]) <= 0.01 * TARGET["text"]
    save_student(student, tmp_path / "s")  # uniform config: plain open_clip loads it
    code = f"import open_clip; open_clip.create_model_and_transforms('local-dir:{tmp_path / 's'}')"
    subprocess.run([sys.executable, "-c", code], check=True)
