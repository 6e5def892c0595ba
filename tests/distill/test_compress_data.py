"""ShapesWorld is the reference teacher's world: any other teacher must be told its data; names without
weights say they are random."""
import warnings

import pytest
import torch

from edgeclip.distill import compress
from edgeclip.distill.compress import default_data
from edgeclip.errors import ConfigError
from edgeclip.models import load_student, load_teacher, save_student


def test_other_teachers_need_data(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="data is required.*CSV.*webdataset.*data='shapes'"):
        compress(tiny_model, {"image": 60_000, "text": 60_000}, out=tmp_path / "run", stages=1)
    assert not (tmp_path / "run").exists()
    assert default_data("pairs.csv", tiny_model) == "pairs.csv" and default_data("shapes", tiny_model) == "shapes"


def test_shapes_world_teachers_default_to_shapes(tmp_path, reference_teacher, tiny_model):
    assert default_data(None, reference_teacher) == "shapes"
    save_student(tiny_model, tmp_path / "s", extra={"data": "ShapesWorld train[0:128]"})  # as compress records it
    assert default_data(None, load_student(tmp_path / "s")) == "shapes"
    save_student(tiny_model, tmp_path / "c", extra={"data": "CSV pairs.csv (10 rows)"})
    with pytest.raises(ConfigError, match="data is required"):
        default_data(None, load_student(tmp_path / "c"))


def test_name_without_weights_warns_it_is_random(tmp_path):
    from safetensors.torch import save_file
    with pytest.warns(UserWarning, match="randomly initialised"):
        m = load_teacher("TinyCLIP-ViT-8M-16-Text-3M")
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "w.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = load_teacher("TinyCLIP-ViT-8M-16-Text-3M", pretrained=str(tmp_path / "w.safetensors"))
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values()))
