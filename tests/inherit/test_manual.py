import pytest
import torch

from edgeclip.errors import InheritError
from edgeclip.models import model_config
from edgeclip.inherit import inherit_weights, select_layers
from edgeclip.models import create_model
from edgeclip.models.params import student_config


def test_layer_rules():
    assert select_layers(12, 10, "interval") == list(range(10))  # TinyCLIP: s = floor(12/10) = 1
    assert select_layers(12, 6, "interval") == [0, 2, 4, 6, 8, 10]
    assert select_layers(12, 4, "uniform") == [0, 4, 7, 11]
    with pytest.raises(InheritError):
        select_layers(4, 6)


@pytest.mark.parametrize("width", ["leading", "magnitude"])
@pytest.mark.parametrize("depth", ["interval", "uniform"])
def test_inheriting_own_config_reproduces_teacher(tiny_model, width, depth):
    s, rep = inherit_weights(tiny_model, model_config(tiny_model), depth=depth, width=width)
    x, ids = torch.randn(3, 3, 32, 32), torch.randint(1, 49000, (3, 16))
    with torch.no_grad():
        ref_i, ref_t = tiny_model.encode_image(x), tiny_model.encode_text(ids)  # unnormalised: relative tolerances
        assert (s.encode_image(x) - ref_i).abs().max() <= 1e-5 * ref_i.abs().max()
        assert (s.encode_text(ids) - ref_t).abs().max() <= 1e-5 * ref_t.abs().max()
    assert rep.unused_teacher_keys == 0 and rep.fresh == []


def test_hf_converted_teacher_reproduces_itself(tmp_path, tiny_model):
    pytest.importorskip("transformers")
    from edgeclip.models import load_teacher
    from edgeclip.models.hf import save_hf
    save_hf(tiny_model, tmp_path)
    t = load_teacher(tmp_path)
    s, _ = inherit_weights(t, model_config(t), width="magnitude")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = t.encode_image(x)
        assert (s.encode_image(x) - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_vit_b_32_to_8m_every_tensor_is_the_selected_slice():
    t = create_model("ViT-B-32", seed=0)
    cfg = student_config(model_config(t), "8M")
    s, rep = inherit_weights(t, cfg)  # leading + interval
    v = cfg["vision_cfg"]
    assert abs(sum(p.numel() for p in s.visual.parameters()) - 8e6) <= 0.4e6
    tsd, ssd = t.state_dict(), s.state_dict()
    w, keep = v["width"], rep.layers["vision"]
    assert torch.equal(ssd["visual.conv1.weight"], tsd["visual.conv1.weight"][:w])
    assert torch.equal(ssd["visual.proj"], tsd["visual.proj"][:w])
    for i, j in enumerate(keep):
        sk, tk = f"visual.transformer.resblocks.{i}.", f"visual.transformer.resblocks.{j}."
        tq = tsd[tk + "attn.in_proj_weight"].view(3, 768, 768)
        assert torch.equal(ssd[sk + "attn.in_proj_weight"], tq[:, :w, :w].reshape(3 * w, w))
        assert torch.equal(ssd[sk + "mlp.c_fc.weight"], tsd[tk + "mlp.c_fc.weight"][:4 * w, :w])
        assert torch.equal(ssd[sk + "ln_2.bias"], tsd[tk + "ln_2.bias"][:w])
    tw = cfg["text_cfg"]["width"]
    assert torch.equal(ssd["token_embedding.weight"], tsd["token_embedding.weight"][:, :tw])


def test_magnitude_picks_the_largest_channels(tiny_model, tiny_cfg):
    sd = tiny_model.state_dict()
    with torch.no_grad():  # make channel 63 of the vision stream dominant
        tiny_model.visual.conv1.weight[63] *= 100
    cfg = student_config(tiny_cfg, {"image": 60_000, "text": 60_000}, strict=False)
    s, _ = inherit_weights(tiny_model, cfg, width="magnitude")
    assert torch.equal(s.visual.conv1.weight[-1], tiny_model.visual.conv1.weight[63])
    del sd


def test_shape_mismatch_names_the_key(tiny_model, tiny_cfg):
    tiny_cfg["vision_cfg"]["patch_size"] = 16
    with pytest.raises(InheritError, match="patch_size"):
        inherit_weights(tiny_model, tiny_cfg)
