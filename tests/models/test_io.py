import subprocess
import sys

import pytest
import torch

from edgeclip.errors import ConfigError
from edgeclip.models.io import preprocess_cfg
from edgeclip.models import create_model, load_student, load_teacher, save_student


@pytest.mark.slow
def test_saved_student_loads_in_plain_open_clip(tmp_path, tiny_model):
    save_student(tiny_model, tmp_path / "s")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        ref = tiny_model.encode_image(x)
    code = ("import sys, torch, open_clip; assert 'edgeclip' not in sys.modules;"
            f"m, _, _ = open_clip.create_model_and_transforms('local-dir:{tmp_path / 's'}'); m.eval();"
            f"x = torch.load('{tmp_path / 'x.pt'}', weights_only=True);"
            f"torch.save(m.encode_image(x).detach(), '{tmp_path / 'y.pt'}')")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    # relative to the values (~3, unnormalised): other CPUs (AVX-512) round differently, 1.19e-6 absolute was seen
    assert (torch.load(tmp_path / "y.pt", weights_only=True) - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_student_round_trip_through_edgeclip(tmp_path, tiny_model):
    save_student(tiny_model, tmp_path / "s")
    back = load_student(tmp_path / "s")  # a model, like load_teacher; its preprocess config rides on it
    assert preprocess_cfg(back)["size"] == 32
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_truncated_checkpoint_is_one_clear_error(tmp_path, tiny_model):
    save_student(tiny_model, tmp_path / "s")
    w = tmp_path / "s" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        load_teacher(tmp_path / "s")


def test_checkpoint_for_another_architecture_is_rejected(tmp_path, tiny_model, tiny_cfg):
    tiny_cfg["vision_cfg"]["width"] = 32
    other = create_model(tiny_cfg)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    from edgeclip.models.io import load_weights, read_state_dict
    with pytest.raises(ConfigError, match="has shape"):
        load_weights(tiny_model, read_state_dict(tmp_path / "other.pt"), "other.pt")


def test_pickle_is_never_unpickled(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Boom()}))
    with pytest.raises(ConfigError):
        load_teacher("ViT-B-32", pretrained=str(tmp_path / "evil.pt"))


def test_unknown_teacher_and_offline_tag_fail_clearly():
    with pytest.raises(ConfigError, match="unknown model"):
        load_teacher("ViT-Nope")
    with pytest.raises(ConfigError, match="neither a file nor a pretrained tag"):
        load_teacher("ViT-B-32", pretrained="no-such-tag")


def test_save_is_atomic_on_failure(tmp_path, tiny_model, monkeypatch):
    import safetensors.torch as st
    monkeypatch.setattr(st, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_student(tiny_model, tmp_path / "s")
    assert list(tmp_path.iterdir()) == []
