"""Untied L0 masks fuse into students with per-layer head / MLP counts that save, load and export exactly."""
import json
import subprocess
import sys

import pytest
import torch

from edgeclip.data.pairs import ShapesPairs
from edgeclip.models.io import preprocess_cfg
from edgeclip.models import model_config
from edgeclip.distill.prune import AutoConfig, prune
from edgeclip.data.loader import Batches
from edgeclip.errors import ConfigError, InheritError
from edgeclip.inherit import inherit_weights
from edgeclip.inherit.auto import MaskedCLIP, fuse
from edgeclip.models import create_model, get_tokenizer, load_student, save_student
from edgeclip.models.io import default_preprocess_cfg, image_transform
from edgeclip.models.params import config_params, count_params

TARGET = {"image": 110_000, "text": 90_000}


def _untied(tiny_cfg, heads):
    """Masks fixed by hand: layer i keeps heads[tower][i] heads, MLP units scored at random."""
    masked = MaskedCLIP(create_model(tiny_cfg, seed=0), tie_layers=False).eval()
    g = torch.Generator().manual_seed(0)
    for tower, counts in heads.items():
        m = masked.masks[tower]
        with torch.no_grad():
            for i, k in enumerate(counts):
                m.heads.log_alpha[i] = torch.where(torch.arange(m.heads.log_alpha.shape[1]) < k, 10.0, -10.0)
            m.units.log_alpha.copy_(torch.randn(m.units.log_alpha.shape, generator=g) * 3)
    return masked


@pytest.fixture
def fused(tiny_cfg):
    masked = _untied(tiny_cfg, {"vision": [1, 2, 3, 4], "text": [4, 1, 2]})
    return masked, fuse(masked, TARGET)


def _inputs(model):
    torch.manual_seed(1)
    return torch.randn(3, 3, 32, 32), get_tokenizer(model)(["a red star", "", "two small blue rings"])


def test_fused_student_has_exact_per_layer_shapes_and_meets_the_target(fused):
    masked, student = fused
    layers = model_config(student)["edgeclip_layers"]
    assert [e["heads"] for e in layers["vision"]] == [1, 2, 3, 4]
    assert [e["heads"] for e in layers["text"]] == [4, 1, 2]
    assert len({e["mlp"] for e in layers["vision"]}) > 1  # units spent globally, not per layer
    for e, blk in zip(layers["vision"], student.visual.transformer.resblocks):
        assert blk.attn.in_proj_weight.shape == (3 * 16 * e["heads"], 64)
        assert blk.mlp.c_fc.weight.shape == (e["mlp"], 64)
    c = count_params(student)
    assert abs(c.vision - TARGET["image"]) <= 0.01 * TARGET["image"]
    assert abs(c.text - TARGET["text"]) <= 0.01 * TARGET["text"]
    assert config_params(model_config(student)) == (c.vision, c.text)  # analytic count knows per-layer sizes
    x, ids = _inputs(student)
    with torch.no_grad():
        assert (masked.encode_image(x, True) - student.encode_image(x, True)).abs().max() <= 1e-5
        assert (masked.encode_text(ids, True) - student.encode_text(ids, True)).abs().max() <= 1e-5


@pytest.mark.slow
def test_non_uniform_student_saves_and_loads_back_through_edgeclip(fused, tmp_path):
    _, student = fused
    save_student(student, tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "open_clip_config.json").read_text())["model_cfg"]
    assert cfg["edgeclip_layers"] == model_config(student)["edgeclip_layers"]
    loaded = load_student(tmp_path / "s")
    x, ids = _inputs(student)
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(x), student.encode_image(x))
        assert torch.equal(loaded.encode_text(ids), student.encode_text(ids))
    # plain open_clip builds uniform blocks only: it must refuse, not load wrong shapes silently
    code = f"import open_clip; open_clip.create_model_and_transforms('local-dir:{tmp_path / 's'}')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode != 0


@pytest.mark.slow
def test_non_uniform_student_exports_to_onnx_with_parity(fused, tmp_path):
    from edgeclip.export import export_artifact
    _, student = fused
    res = export_artifact(student, tmp_path / "a", ["fp32"])
    assert res.passed, res.parity[0].failed
    assert res.parity[0].metrics["image"]["max_abs_diff"] <= 1e-5


@pytest.mark.slow
def test_untied_pruning_meets_the_target_and_fuses_exactly(tiny_cfg):
    teacher = create_model(tiny_cfg, seed=0)
    masked = MaskedCLIP(create_model(tiny_cfg, seed=0), tie_layers=False)
    tok = get_tokenizer(teacher)
    batches = Batches(ShapesPairs(256), 32, 0, image_transform(default_preprocess_cfg(tiny_cfg)), tok, tok)
    prune(masked, teacher, batches, {"vision": TARGET["image"], "text": TARGET["text"]},
          AutoConfig(steps=30, warmup=15, tie_layers=False))
    student = fuse(masked, TARGET)
    assert abs(count_params(student).vision - TARGET["image"]) <= 0.01 * TARGET["image"]
    x, ids = _inputs(student)
    with torch.no_grad():
        assert (masked.encode_image(x, True) - student.encode_image(x, True)).abs().max() <= 1e-5


def test_bad_per_layer_configs_are_one_line_errors(tiny_cfg, fused):
    bad = dict(tiny_cfg, edgeclip_layers={"vision": [{"heads": 1, "mlp": 8}]})  # 1 entry for 4 layers
    with pytest.raises(ConfigError, match="one entry per layer"):
        create_model(bad)
    bad["edgeclip_layers"] = {"vision": [{"heads": 0, "mlp": 8}] * 4}
    with pytest.raises(ConfigError, match="heads"):
        create_model(bad)
    _, student = fused
    with pytest.raises(InheritError, match="per-layer sizes"):
        MaskedCLIP(student)
    with pytest.raises(InheritError, match="uniform"):
        inherit_weights(student, tiny_cfg)
