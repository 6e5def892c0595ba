"""Parity compares the artifact's preprocess.json with the model's own preprocessing (both sides used to share the
artifact's, so an edited preprocess.json passed every gate)."""
import json
import shutil

import pytest

from edgeclip.errors import IntegrityError, ParityError
from edgeclip.export import check_parity, export_onnx
from edgeclip.export.parity import preprocess_mismatches
from conftest import rehash


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from conftest import TINY_CFG
    from edgeclip.models import create_model
    model = create_model(TINY_CFG, seed=0)
    out = tmp_path_factory.mktemp("pp") / "a"
    export_onnx(model, out)
    return model, out


@pytest.mark.parametrize("key,value", [("mean", [0.5, 0.5, 0.5]), ("interpolation", "bilinear"), ("size", 40)])
def test_edited_preprocess_fails_parity(exported, tmp_path, key, value, robust):
    model, src = exported
    assert check_parity(src, model).passed
    art = tmp_path / "a"
    shutil.copytree(src, art)
    pre = json.loads((art / "preprocess.json").read_text())
    pre[key] = value
    (art / "preprocess.json").write_text(json.dumps(pre))
    with pytest.raises(IntegrityError, match="preprocess.json does not match"):  # hashes catch a plain edit
        check_parity(art, model)
    rehash(art)  # re-hashed as if exported that way: now the comparison itself must catch it
    with pytest.raises(ParityError, match=f"preprocess.{key}") as e:
        check_parity(art, model)
    robust("artifact integrity", f"preprocess.json {key} edited and re-hashed, then 'edgeclip parity'",
           "parity fails naming the preprocess field", str(e.value))


def test_preprocess_comparison_normalises_equivalent_forms():
    base = {"size": 32, "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
            "interpolation": "bicubic", "resize_mode": "shortest"}
    assert preprocess_mismatches(base, {**base, "size": [32, 32], "fill_color": 0}) == []
    assert preprocess_mismatches({"size": 32}, base) == []  # missing keys take the runtime's defaults
    assert preprocess_mismatches({**base, "std": [1, 1, 1]}, base) == [
        "preprocess.std [1.0, 1.0, 1.0] != model's [0.26862954, 0.26130258, 0.27577711]"]
