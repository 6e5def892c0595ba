"""HF CLIPModel <-> open_clip conversion on random weights of real architectures."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from edgeclip.models import create_model, load_teacher  # noqa: E402
from edgeclip.models import model_config
from edgeclip.models.hf import save_hf  # noqa: E402


def _features(out):
    return out.pooler_output if hasattr(out, "pooler_output") else out


@pytest.mark.parametrize("name", [pytest.param("ViT-B-32", marks=pytest.mark.slow),  # ~10 s; TinyCLIP ~2 s
                                  "TinyCLIP-ViT-8M-16-Text-3M"])
def test_hf_round_trip_matches_transformers(name, tmp_path):
    from open_clip.tokenizer import SimpleTokenizer
    model = create_model(name, seed=0)
    save_hf(model, tmp_path / "hf")
    hf = transformers.CLIPModel.from_pretrained(tmp_path / "hf").eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    ids = SimpleTokenizer()(["a photo of a cat", ""])
    back = load_teacher(tmp_path / "hf")  # HF folder -> open_clip CLIP
    with torch.no_grad():
        ref_i, ref_t = model.encode_image(x), model.encode_text(ids)
        tol_i, tol_t = 1e-5 * ref_i.abs().max(), 1e-5 * ref_t.abs().max()  # unnormalised: relative tolerances
        assert (_features(hf.get_image_features(pixel_values=x)) - ref_i).abs().max() <= tol_i
        assert (_features(hf.get_text_features(input_ids=ids)) - ref_t).abs().max() <= tol_t
        assert (back.encode_image(x) - ref_i).abs().max() <= tol_i
        assert (back.encode_text(ids) - ref_t).abs().max() <= tol_t


def test_hf_quick_gelu_is_kept(tmp_path, tiny_cfg):
    tiny_cfg["quick_gelu"] = True
    save_hf(create_model(tiny_cfg), tmp_path)
    assert model_config(load_teacher(tmp_path)).get("quick_gelu") is True
