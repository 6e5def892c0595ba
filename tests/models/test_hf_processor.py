"""An ``--hf`` copy works with CLIPProcessor + CLIPModel offline, in a process that never imports edgeclip; an HF
teacher with another tokenizer is refused at load."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("transformers")

from edgeclip.errors import ConfigError  # noqa: E402
from edgeclip.models import create_model, get_tokenizer, load_teacher  # noqa: E402
from edgeclip.models.hf import save_hf  # noqa: E402

PROMPTS = ["a photo of a cat", "", "ÄÖÜ straße naïve café", "dog " * 60, "Hello, WORLD!! 123", "emoji 🐶 test"]
PROBE = r"""
import json, sys
import numpy as np, torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor
folder, img_path = sys.argv[1], sys.argv[2]
proc, model = CLIPProcessor.from_pretrained(folder), CLIPModel.from_pretrained(folder).eval()
prompts = json.loads(sys.argv[3])
enc = proc(text=prompts, images=[Image.open(img_path)], padding="max_length", truncation=True, return_tensors="pt")
with torch.no_grad():
    t = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    i = model.get_image_features(pixel_values=enc["pixel_values"])
t, i = getattr(t, "pooler_output", t), getattr(i, "pooler_output", i)
print(json.dumps({"ids": enc["input_ids"].tolist(), "text": t.tolist(), "image": i.tolist(),
                  "edgeclip_imported": any(m.startswith("edgeclip") for m in sys.modules)}))
"""


@pytest.mark.slow
def test_hf_copy_works_with_clip_processor_offline_without_edgeclip(tmp_path, tiny_cfg):
    from edgeclip.evaluate import embed_pil_images
    model = create_model(tiny_cfg, seed=0)
    save_hf(model, tmp_path / "hf")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    r = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "hf"), str(tmp_path / "x.png"), json.dumps(PROMPTS)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert not got["edgeclip_imported"]
    ours = get_tokenizer(model)(PROMPTS).numpy()
    for a, b in zip(got["ids"], ours):  # token for token up to the end-of-text (padding ids differ: EOT vs 0)
        n = int(np.argmax(b == 49407)) + 1
        assert a[:n] == b[:n].tolist()
    with torch.no_grad():
        ref_t = model.encode_text(torch.from_numpy(ours)).numpy()
    ref_i = embed_pil_images(model, [Image.open(tmp_path / "x.png")]).numpy()
    hf_i = np.asarray(got["image"])[0]
    np.testing.assert_allclose(np.asarray(got["text"]), ref_t, atol=1e-5)
    cos = float((hf_i / np.linalg.norm(hf_i)) @ ref_i[0])
    assert cos > 0.999, cos  # same resize / crop / normalisation (PIL bicubic on both sides)


@pytest.mark.slow
def test_hf_teacher_with_another_tokenizer_is_refused(tmp_path, tiny_cfg):
    save_hf(create_model(tiny_cfg, seed=0), tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["text_config"]["vocab_size"] = 1000
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="not CLIP's BPE"):
        load_teacher(tmp_path / "hf")
    save_hf(create_model(tiny_cfg, seed=0), tmp_path / "hf2")
    vocab = json.loads((tmp_path / "hf2" / "vocab.json").read_text())
    vocab["hello"], vocab["dog</w>"] = vocab["dog</w>"], vocab.pop("hello")  # same size, other token ids
    (tmp_path / "hf2" / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ConfigError, match="not CLIP's BPE"):
        load_teacher(tmp_path / "hf2")
