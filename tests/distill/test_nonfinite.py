"""Training stops at the first non-finite loss or gradient, naming the step and the term; checkpoints survive."""
import pytest
import torch

from conftest import TINY_CFG
from edgeclip.data.pairs import ShapesPairs
from edgeclip.data.loader import Batches
from edgeclip.distill import DistillConfig, distill
from edgeclip.errors import EdgeClipError, NonFiniteError
from edgeclip.models import create_model, get_tokenizer
from edgeclip.models.io import default_preprocess_cfg, image_transform


def _setup():
    teacher, student = create_model(TINY_CFG, seed=0), create_model(TINY_CFG, seed=1)
    tok = get_tokenizer(teacher)
    batches = Batches(ShapesPairs(16, 32), 8, 0, image_transform(default_preprocess_cfg(TINY_CFG)), tok, tok)
    return teacher, student, batches


def test_nan_loss_stops_at_the_first_step_naming_the_term():
    teacher, student, batches = _setup()
    with torch.no_grad():
        student.visual.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError) as e:
        distill(student, teacher, batches, DistillConfig(steps=3, batch_size=8, warmup=1))
    assert isinstance(e.value, EdgeClipError)
    assert "step 1: loss term 'affinity' is non-finite" in str(e.value)


def test_inf_gradient_stops_and_keeps_the_last_checkpoint(tmp_path):
    teacher, student, batches = _setup()
    ckpt = tmp_path / "stage1.pt"
    distill(student, teacher, batches, DistillConfig(steps=2, batch_size=8, warmup=1, ckpt_every=1), ckpt=ckpt)
    before = ckpt.read_bytes()
    weights = {k: v.clone() for k, v in student.state_dict().items()}
    student.text_projection.register_hook(lambda g: g * float("inf"))
    with pytest.raises(NonFiniteError) as e:
        distill(student, teacher, batches, DistillConfig(steps=4, batch_size=8, warmup=1, ckpt_every=1), ckpt=ckpt,
                resume=True)
    msg = str(e.value)
    assert "step 3: the gradient of 'text_projection' is non-finite" in msg and "is intact" in msg
    assert ckpt.read_bytes() == before  # the last good checkpoint was not overwritten
    assert all(torch.equal(v, weights[k]) for k, v in student.state_dict().items())  # no optimizer step taken
