"""open_clip's tower defaults have one home (edgeclip.models.towers), agree with open_clip, and are not restated."""
import ast
import dataclasses
from pathlib import Path

import pytest

from edgeclip.errors import ConfigError
from edgeclip.models.towers import TextCfg, VisionCfg, text_cfg, vision_cfg

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "edgeclip" / "models" / "towers.py"
# The torch-free runtime cannot import edgeclip.models, so it names its own copies once (tied below).
RUNTIME_HOMES = {ROOT / "edgeclip" / "runtime" / "preprocess.py": {224}, ROOT / "edgeclip" / "runtime" / "tokenizer.py": {77}}
TOWER_KEYS = {f.name for cls in (VisionCfg, TextCfg) for f in dataclasses.fields(cls)}
FACT_NUMBERS = {224, 77, 49408}  # input size, context length, CLIP's BPE vocabulary


def test_defaults_are_open_clips_and_transformers():
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    from transformers import CLIPTextConfig, CLIPVisionConfig
    for ours, theirs in ((VisionCfg, CLIPVisionCfg), (TextCfg, CLIPTextCfg)):
        want = {f.name: f.default for f in dataclasses.fields(theirs)}
        got = {f.name: f.default for f in dataclasses.fields(ours)}
        assert got == {k: want[k] for k in got}, ours.__name__
    # models/hf.py reads a missing HF key as ours: true only while transformers' defaults are open_clip's
    assert CLIPVisionConfig().image_size == VisionCfg.image_size
    assert CLIPTextConfig().max_position_embeddings == TextCfg.context_length


def test_runtime_defaults_equal_the_models():
    from edgeclip.models.factory import default_preprocess_cfg
    from edgeclip.runtime.preprocess import DEFAULTS
    from edgeclip.runtime.tokenizer import CONTEXT_LENGTH
    models = default_preprocess_cfg({"vision_cfg": {}})
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in DEFAULTS.items()} == models
    assert CONTEXT_LENGTH == TextCfg.context_length


def test_a_config_that_leaves_defaults_out_reads_as_open_clip_builds_it():
    from edgeclip.models import create_model, get_tokenizer
    from edgeclip.models.factory import default_preprocess_cfg
    from edgeclip.models.hf import open_clip_config_to_hf
    from edgeclip.models.params import config_params, count_params
    cfg = {"embed_dim": 16, "vision_cfg": {"layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
           "text_cfg": {"width": 32, "heads": 2, "layers": 1}}  # no size, context, MLP ratio, vocabulary
    model = create_model(cfg, seed=0)
    assert tuple(model.visual.image_size) == (224, 224) and model.context_length == 77
    n = count_params(model)
    assert config_params(cfg) == (n.vision, n.text)  # counted with the defaults open_clip built with
    assert get_tokenizer(cfg).context_length == 77 and default_preprocess_cfg(cfg)["size"] == 224
    hf = open_clip_config_to_hf(cfg)
    assert hf["vision_config"]["intermediate_size"] == 128 and hf["text_config"]["max_position_embeddings"] == 77
    assert vision_cfg(cfg).grid == 7 and text_cfg(cfg).head_width == 16


def test_a_tower_key_edgeclip_does_not_handle_is_refused():
    with pytest.raises(ConfigError, match=r"vision_cfg has keys edgeclip does not handle: \['pool_type'\]"):
        VisionCfg.of({"width": 64, "pool_type": "avg"})
    assert VisionCfg.of({"image_size": [96, 96]}).size == 96


def _sources():
    for tree in ("edgeclip", "export", "apps"):
        for p in sorted((ROOT / tree).rglob("*.py")):
            if not any(part == "export" for part in p.relative_to(ROOT).parts[1:-1]) or tree == "export":
                yield p  # edgeclip/export is a link to export/: read once


def _restated(path: Path) -> list[str]:
    """``.get("<tower key>", <number>)`` anywhere, and the fact numbers as code constants outside their homes."""
    found, name = [], path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and len(node.args) == 2 and isinstance(node.args[0], ast.Constant) and node.args[0].value in TOWER_KEYS
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, (int, float))):
            found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Constant) and type(node.value) is int and node.value in FACT_NUMBERS
              and path != HOME and node.value not in RUNTIME_HOMES.get(path, ())):
            found.append(f"{name}:{node.lineno}: {node.value}")
    return found


def test_no_tower_default_is_restated_outside_its_home(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('size = cfg["vision_cfg"].get("image_size", 224)\nctx = 77  # a literal context length\n')
    assert len(_restated(planted)) == 3  # the scan sees both kinds (the .get and its 224 as well)
    files = list(_sources())
    assert HOME in files and len(files) > 50
    found = [hit for p in files for hit in _restated(p)]
    assert not found, "write these through edgeclip.models.towers (vision_cfg / text_cfg):\n" + "\n".join(found)
