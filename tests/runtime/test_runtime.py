"""The on-device runtime: no torch, open_clip-identical tokenizer and preprocessing, Index round trip."""
import subprocess
import sys

import numpy as np
import pytest

from edgeclip.runtime import Index, Preprocess, Tokenizer

CORPUS = ["a photo of a cat", "", "   ", "Hello, World!!! 😀🐶 emoji", "naïve café Straße ÄÖÜ", "日本語のテキスト",
          "“curly” quotes &amp; html &lt;b&gt;", "don't won't I'm we'll they've", "a\tb\nc", "x " * 100,
          "the the the the the the the the the the", "1234567890 3.14 $100 #tag @user", "ﬁ ligature ½", "a-b_c/d"]


@pytest.fixture(scope="module")
def vocab():
    from open_clip.tokenizer import default_bpe
    return default_bpe()


@pytest.mark.parametrize("ctx", [77, 16])
def test_tokenizer_matches_open_clip(vocab, ctx):
    from open_clip.tokenizer import SimpleTokenizer
    ref = SimpleTokenizer(context_length=ctx)(CORPUS).numpy()
    assert np.array_equal(Tokenizer(vocab, ctx)(CORPUS), ref)


def test_preprocess_matches_open_clip_on_real_photos(photos_dir):
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from edgeclip.data.pairs import open_image
    files = sorted((photos_dir / "images").iterdir())[:12]
    for size in (224, 32):
        cfg = {"size": size, "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
               "interpolation": "bicubic", "resize_mode": "shortest"}
        tf = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
        ours = Preprocess(cfg)
        for f in files:
            img = open_image(f)
            ref = tf(img).numpy()  # normalised pixels reach ~2: tolerance relative to them
            assert np.abs(ours(img) - ref).max() <= 1e-5 * np.abs(ref).max(), f.name


def test_runtime_imports_and_runs_without_torch(tmp_path):
    from edgeclip.export import export_onnx
    from edgeclip.models import create_model
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    from conftest import TINY_CFG
    export_onnx(create_model(TINY_CFG, seed=0), tmp_path / "a")
    code = f"""
import builtins, sys
real = builtins.__import__
def guard(name, *a, **k):
    if name.split('.')[0] in ('torch', 'open_clip', 'torchvision'):
        raise ImportError('blocked: ' + name)
    return real(name, *a, **k)
builtins.__import__ = guard
from PIL import Image
import edgeclip.runtime as rt
r = rt.load({str(tmp_path / 'a')!r})
imgs = [Image.new('RGB', (40, 30), (255, 0, 0)), Image.new('RGB', (30, 50), (0, 0, 255))]
idx = rt.Index.build(r, imgs, ['red', 'blue'])
res, ms = idx.search_text(r, 'a red image', k=2)
assert len(res) == 2 and ms > 0
assert 'torch' not in sys.modules
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_index_save_load(tmp_path):
    e = np.eye(3, dtype=np.float32)
    Index(e, ["a", "b", "c"]).save(tmp_path)
    idx = Index.load(tmp_path)
    assert idx.search(np.array([0, 1, 0], np.float32), k=1)[0][0] == "b"


def test_runtime_rejects_non_artifacts(tmp_path):
    from edgeclip.errors import ConfigError
    import edgeclip.runtime as rt
    with pytest.raises(ConfigError, match="not an edgeclip artifact"):
        rt.load(tmp_path)
