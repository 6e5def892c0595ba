"""Checkpoint reading: non-finite weights are refused on load / save / export, configs carry a fingerprint."""
import ast
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from edgeclip.errors import ConfigError, NonFiniteError
from edgeclip.models import create_model, load_student, load_teacher, save_student
from edgeclip.models.weights import check_finite, config_fingerprint

MLP_KEY = "visual.transformer.resblocks.1.mlp.c_fc.weight"


def _poison(weights: Path, changes: dict) -> None:
    """Write NaN/Inf into single elements of a safetensors file (as a bit flip or a bad fine-tune would)."""
    sd = load_file(str(weights))
    for key, value in changes.items():
        sd[key].view(-1)[0] = value
    save_file(sd, str(weights))  # no metadata: the fingerprint is not what these tests are about


def test_student_folder_with_nan_and_inf_is_refused(tmp_path, tiny_model):
    save_student(tiny_model, tmp_path / "s")
    _poison(tmp_path / "s" / "model.safetensors", {"visual.conv1.weight": float("nan"), MLP_KEY: float("inf")})
    with pytest.raises(NonFiniteError) as e:
        load_teacher(tmp_path / "s")
    msg = str(e.value)
    assert "'visual.conv1.weight' (1 NaN, 1 more tensors too)" in msg and "model.safetensors" in msg
    assert "\n" not in msg


def test_nan_in_one_token_embedding_row_is_refused(tmp_path, tiny_model):
    save_student(tiny_model, tmp_path / "s")
    sd = load_file(str(tmp_path / "s" / "model.safetensors"))
    sd["token_embedding.weight"][31337] = float("nan")  # a word no parity prompt uses
    save_file(sd, str(tmp_path / "s" / "model.safetensors"))
    with pytest.raises(NonFiniteError, match=r"'token_embedding.weight' \(64 NaN\)"):
        load_student(tmp_path / "s")


def test_pt_checkpoint_with_pretrained_is_refused(tmp_path, tiny_cfg):
    model = create_model(tiny_cfg, seed=0)
    sd = model.state_dict()
    sd["ln_final.weight"][3] = float("-inf")
    torch.save(sd, tmp_path / "w.pt")
    from edgeclip.models.weights import read_state_dict
    with pytest.raises(NonFiniteError, match=r"w.pt' has non-finite values in 'ln_final.weight' \(1 Inf\)"):
        read_state_dict(tmp_path / "w.pt")


def test_hf_folder_with_nan_is_refused(tmp_path, tiny_model):
    from edgeclip.models.hf import save_hf
    save_hf(tiny_model, tmp_path / "hf")
    _poison(tmp_path / "hf" / "model.safetensors", {"vision_model.embeddings.patch_embedding.weight": float("nan")})
    with pytest.raises(NonFiniteError, match="patch_embedding"):
        load_teacher(tmp_path / "hf")


def test_saving_a_non_finite_student_writes_nothing(tmp_path, tiny_model):
    with torch.no_grad():
        tiny_model.visual.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="refusing to save it"):
        save_student(tiny_model, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_exporting_a_non_finite_model_writes_nothing(tmp_path, tiny_model):
    from edgeclip.export import export_onnx
    with torch.no_grad():
        tiny_model.token_embedding.weight[5] = float("inf")
    with pytest.raises(NonFiniteError, match="refusing to export it"):
        export_onnx(tiny_model, tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_finite_check_passes_clean_and_integer_tensors():
    check_finite({"a": torch.zeros(3), "ids": torch.arange(4)}, "x")


@pytest.mark.parametrize("edit", [("text_cfg", "heads", 8), ("vision_cfg", "head_width", 32)])
def test_edited_config_that_shapes_cannot_show_is_refused(tmp_path, tiny_model, edit):
    save_student(tiny_model, tmp_path / "s")
    cfg_file = tmp_path / "s" / "open_clip_config.json"
    meta = json.loads(cfg_file.read_text())
    tower, key, value = edit
    meta["model_cfg"][tower][key] = value  # same tensor shapes, another function
    cfg_file.write_text(json.dumps(meta))
    create_model(meta["model_cfg"])  # the edited config is buildable: only the fingerprint can tell
    with pytest.raises(ConfigError, match="no longer matches the config"):
        load_student(tmp_path / "s")


def test_folder_without_fingerprint_still_loads(tmp_path, tiny_model):
    save_student(tiny_model, tmp_path / "s")
    w = tmp_path / "s" / "model.safetensors"
    save_file(load_file(str(w)), str(w))  # as plain open_clip / older edgeclip wrote it: no metadata
    back = load_student(tmp_path / "s")
    assert torch.equal(back.visual.conv1.weight, tiny_model.visual.conv1.weight)


def test_fingerprint_ignores_key_order_and_tuples(tiny_cfg):
    shuffled = dict(reversed(list(tiny_cfg.items())))
    assert config_fingerprint(shuffled) == config_fingerprint(tiny_cfg)
    assert config_fingerprint(json.loads(json.dumps(tiny_cfg))) == config_fingerprint(tiny_cfg)


def test_hf_and_io_do_not_import_each_other():
    """models/hf.py <-> models/io.py was an import loop; both now read weights through models/weights.py."""
    root = Path(__file__).resolve().parents[2] / "edgeclip" / "models"

    def imported(name: str) -> set[str]:
        tree = ast.parse((root / name).read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}
    assert "io" not in imported("hf.py")
    assert "hf" not in imported("weights.py") and "io" not in imported("weights.py")
    assert "weights" in imported("hf.py") and "weights" in imported("io.py")


def test_the_moved_names_stay_importable_from_io():
    from edgeclip.models import io
    from edgeclip.models.weights import load_weights, read_state_dict
    assert io.read_state_dict is read_state_dict and io.load_weights is load_weights
