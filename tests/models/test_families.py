"""Teacher families edgeclip cannot compress are refused at load, from the config, in one line naming what is."""
import pytest

from edgeclip.errors import ConfigError
from edgeclip.models import get_model_config, list_models, load_teacher
from edgeclip.models.registry import unsupported_reason
from tests.conftest import one_error_line, run_cli

UNSUPPORTED = {  # open_clip name -> what the message must name
    "RN50": "ResNet", "RN50x4": "ResNet", "convnext_base": "timm", "convnext_base_w": "timm",
    "ViT-B-16-SigLIP": "timm", "MobileCLIP-S1": "timm", "EVA02-B-16": "timm", "coca_ViT-B-32": "custom text",
    "ViT-L-14-CLIPA": "tokenizer", "ViT-H-14-worldwide": "tokenizer", "ViT-M-16-alt": "ls_init_value",
}


@pytest.mark.parametrize("name, what", sorted(UNSUPPORTED.items()))
def test_unsupported_family_is_refused_before_building(name, what, monkeypatch):
    import open_clip.model

    def no_build(*a, **k):
        raise AssertionError("a model was built before the family check")
    monkeypatch.setattr(open_clip.model, "CLIP", no_build)
    with pytest.raises(ConfigError) as e:
        load_teacher(name)
    msg = str(e.value)
    assert what in msg and "supports CLIP models with a ViT image tower" in msg and "\n" not in msg


@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-16-quickgelu", "ViT-L-14", "ViT-H-14", *list_models()])
def test_supported_families_pass_the_check(name):
    assert unsupported_reason(get_model_config(name)) is None


@pytest.mark.slow
def test_cli_refuses_rn50_in_one_line(tmp_path):
    code, err = run_cli("export", "RN50", "--onnx", "--out", tmp_path / "a")
    assert one_error_line(code, err) and "ResNet" in err[0] and not (tmp_path / "a").exists()
