"""Device formats (issue #22): ExecuTorch, Core ML, ORT-mobile (and LiteRT, from its own venv) through the same
parity gates, manifest hashes and load rules as the ONNX variants."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY_CFG, own_process

needs_executorch = pytest.mark.skipif(importlib.util.find_spec("executorch") is None,
                                      reason="executorch not installed (pip install 'edgeclip[executorch]')")
needs_coreml = pytest.mark.skipif(importlib.util.find_spec("coremltools") is None,
                                  reason="coremltools not installed (pip install 'edgeclip[coreml]')")
LITERT_PYTHON = os.environ.get("EDGECLIP_LITERT_PYTHON") or str(ROOT / ".venv-litert" / "bin" / "python")
# one block per tower: the formats' tracing and lowering cost grows with the graph, and a block covers every op kind
MOBILE_CFG = {**TINY_CFG, "vision_cfg": {**TINY_CFG["vision_cfg"], "layers": 1},
              "text_cfg": {**TINY_CFG["text_cfg"], "layers": 1}}
Mobile = namedtuple("Mobile", "out passed")  # the artifact folder; whether the export exited 0 (every gate passed)
TEXTS = ["a red star", "", "naïve café 🐶", "dog " * 40] + [f"a photo of thing {i}" for i in range(36)]  # 40 > MAX_BATCH


def _photos(folder: Path, n: int = 32) -> Path:
    """Calibration images: ShapesWorld training scenes (never the held-out ones parity reads), saved as files."""
    from PIL import Image

    from edgeclip.data.shapes import ShapesWorld
    folder.mkdir()
    imgs, _, _ = ShapesWorld("train", 32).batch(0, n)
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(folder / f"p{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def mobile(tmp_path_factory):
    """(artifact, model): the tiny CLIP with fp32 + INT8 ONNX, ExecuTorch (fp32 + int8-static), Core ML (fp32 +
    fp16) and ORT-mobile (fp32 + INT8), every variant gated. Built once for the module, by ``edgeclip export`` in
    a process of its own: the converters' native code never runs in the pytest worker, and a crash there is this
    fixture's error with the export's stderr. A test re-run in its own process (``own_process``) gets the parent's
    artifact through EDGECLIP_TEST_MOBILE_ART."""
    if importlib.util.find_spec("executorch") is None or importlib.util.find_spec("coremltools") is None:
        pytest.skip("needs the [executorch] and [coreml] extras")
    from edgeclip.models import create_model, save_student
    model = create_model(MOBILE_CFG, seed=0)
    if os.environ.get("EDGECLIP_TEST_MOBILE_ART"):
        return Mobile(Path(os.environ["EDGECLIP_TEST_MOBILE_ART"]), True), model
    d = tmp_path_factory.mktemp("mobile")
    save_student(model, d / "student")
    r = subprocess.run([sys.executable, "-m", "edgeclip.cli", "export", str(d / "student"), "--executorch", "--coreml",
                        "--ort-mobile", "--int8", "--calib", str(_photos(d / "calib")), "--out", str(d / "art")],
                       capture_output=True, text=True, timeout=900)
    assert (d / "art" / "manifest.json").is_file(), r.stderr[-3000:]
    return Mobile(d / "art", r.returncode == 0), model


def _ref(model, texts=TEXTS):
    from edgeclip.models import get_tokenizer
    with torch.no_grad():
        return model.encode_text(get_tokenizer(model)(texts), normalize=True).numpy()


@pytest.mark.slow
@needs_executorch
@needs_coreml
def test_every_variant_is_in_the_manifest_hashed_and_gated(mobile):
    res, _ = mobile
    m = json.loads((res.out / "manifest.json").read_text())
    want = {"executorch-fp32", "executorch-int8-static", "coreml-fp32", "coreml-fp16", "ort-mobile-fp32",
            "ort-mobile-int8-dynamic", "ort-mobile-int8-static"}
    assert want <= set(m["variants"])
    for v in want:
        e = m["variants"][v]
        assert e["format"] == v.rsplit("-", 2 if "int8" in v else 1)[0]  # a record: format, precision, recipe
        assert f"{e['format']}-{e['precision']}" + (f"-{e['recipe']}" if e["recipe"] else "") == v
        for tower in ("image", "text"):
            assert (res.out / e[tower]).exists() and len(m["files"][e[tower]]) == 64, (v, tower)
    for v in ("executorch-fp32", "executorch-int8-static", "ort-mobile-fp32", "ort-mobile-int8-dynamic"):
        assert m["parity"][v]["passed"] is True, (v, m["parity"][v])
    for v in ("fp32", "int8-dynamic", "int8-static"):  # an .ort file computes what its ONNX source computes
        assert m["parity"][f"ort-mobile-{v}"] == m["parity"][v]
    for v in ("coreml-fp32", "coreml-fp16"):  # converted, never run here: never "passed"
        assert m["parity"][v] == {"passed": None, "failed": [], "status": "not run (needs macOS)"}
        assert (res.out / m["variants"][v]["image"] / "Manifest.json").is_file()  # a real .mlpackage
    assert m["variants"]["executorch-int8-static"]["calibration"]["images"] == 32
    assert (res.out / "ort_mobile_required_operators.config").read_text().count("ai.onnx;") >= 3
    usability = json.loads((res.out / "ort_mobile_usability.json").read_text())
    assert set(usability) == {"image", "text"} and all(isinstance(u["nnapi_or_coreml_may_help"], bool)
                                                       for u in usability.values())
    assert res.passed is all(r["passed"] is not False for r in m["parity"].values())
    # the gates that were applied are the precision's own: INT8 for the int8 variants, fp32 for the others
    reports = {r["variant"]: r for r in json.loads((res.out / "parity.json").read_text())}
    assert reports["executorch-fp32"]["metrics"]["image"]["max_abs_diff"] <= 1e-4
    assert reports["executorch-fp32"]["metrics"]["image"]["min_cosine"] >= 0.99999
    assert reports["executorch-int8-static"]["metrics"]["image"]["mean_cosine"] >= 0.99
    assert "not run (needs macOS)" in (res.out / "parity.md").read_text()


@pytest.mark.slow
@needs_executorch
@needs_coreml
def test_executorch_runtime_embeds_like_pytorch_at_any_batch(mobile, request):
    from edgeclip import runtime
    res, model = mobile
    if own_process(request, EDGECLIP_TEST_MOBILE_ART=str(res.out)):
        return
    rt = runtime.load(res.out, "executorch-fp32")
    assert rt.backend == "executorch" and rt.parity == "passed"
    got = rt.embed_texts(TEXTS, batch_size=64)  # 40 ids: more than the program's planned batch of 32
    ref = _ref(model)
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4
    from PIL import Image
    imgs = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (37, 45, 3), np.uint8)) for i in range(3)]
    from edgeclip.models import get_preprocess
    with torch.no_grad():
        ref_i = model.encode_image(torch.stack([get_preprocess(model)(im) for im in imgs]), normalize=True).numpy()
    assert np.abs(rt.embed_images(imgs) - ref_i).max() <= 1e-4
    q = runtime.load(res.out, "executorch-int8-static").embed_texts(TEXTS)
    assert (q * ref).sum(1).min() >= 0.97


@pytest.mark.slow
@needs_executorch
@needs_coreml
def test_ort_mobile_runs_the_ort_file(mobile):
    from edgeclip import runtime
    res, model = mobile
    rt = runtime.load(res.out, "ort-mobile-fp32")
    assert rt.backend == "onnxruntime" and rt.manifest.variant("ort-mobile-fp32").image.endswith(".ort")
    files = json.loads((res.out / "manifest.json").read_text())["variants"]["ort-mobile-fp32"]
    assert files["image"].endswith(".ort") and files["text"].endswith(".ort")
    assert np.abs(rt.embed_texts(TEXTS) - _ref(model)).max() <= 1e-4


@pytest.mark.slow
@needs_executorch
@needs_coreml
def test_device_variants_follow_the_load_rules(mobile, tmp_path):
    from edgeclip import runtime
    from edgeclip.errors import BackendError, ConfigError, IntegrityError, ParityError
    res, _ = mobile
    with pytest.raises(ConfigError, match="runs on executorch only, not 'openvino'"):
        runtime.load(res.out, "executorch-fp32", backend="openvino")
    if sys.platform != "darwin":
        with pytest.raises(BackendError, match="runs only on macOS"):
            runtime.load(res.out, "coreml-fp32")
    art = shutil.copytree(res.out, tmp_path / "art")
    m = json.loads((art / "manifest.json").read_text())
    m["parity"]["executorch-fp32"] = {"passed": False, "failed": ["image.max_abs_diff 0.2 > 0.0001"]}
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ParityError, match="executorch-fp32"):
        runtime.load(art, "executorch-fp32")
    pte = art / m["variants"]["executorch-int8-static"]["image"]
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pte.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match its sha256"):
        runtime.load(art, "executorch-int8-static")


def test_unknown_or_missing_target_is_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    from edgeclip.cli import main
    from edgeclip.errors import ConfigError
    from edgeclip.export import export_artifact
    with pytest.raises(ConfigError, match="unknown target 'tflite2'"):
        export_artifact(object(), tmp_path / "a", targets=["tflite2"])
    assert not (tmp_path / "a").exists()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "executorch" else real(name, *a))
    assert main(["export", "reference", "--executorch", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'edgeclip[executorch]'" in err[0], err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML runs")
@needs_executorch
@needs_coreml
def test_coreml_parity_on_linux_says_conversion_only(mobile, tmp_path, capsys):
    from edgeclip.cli import main
    from edgeclip.models import save_student
    res, model = mobile
    save_student(model, tmp_path / "student")
    assert main(["parity", str(res.out), "--against", str(tmp_path / "student"), "--variant", "coreml-fp32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "conversion only" in err[0] and "coreml-fp32" in err[0], err


def test_gate_precision_reads_the_variant_record():
    """The gates come from a variant's (precision, recipe), never from parsing its name."""
    from edgeclip.artifact import Variant
    from edgeclip.export.tolerances import Precision, gate_precision
    gate = {n: gate_precision(Variant(f, p, r, "i", "t").gate) for n, (f, p, r) in {
        "executorch-int8-static": ("executorch", "int8", "static"), "ort-mobile-int8-dynamic": ("ort-mobile", "int8",
        "dynamic"), "coreml-fp16": ("coreml", "fp16", ""), "litert-fp32": ("litert", "fp32", ""),
        "int8-attn": ("onnx", "int8", "attn"), "fp32-opt": ("onnx", "fp32", "opt")}.items()}
    assert gate == {"executorch-int8-static": Precision.INT8_STATIC, "ort-mobile-int8-dynamic": Precision.INT8_DYNAMIC,
                    "coreml-fp16": Precision.FP16, "litert-fp32": Precision.FP32, "int8-attn": Precision.INT8_STATIC,
                    "fp32-opt": Precision.FP32_OPT}


@pytest.mark.slow
@pytest.mark.skipif(not Path(LITERT_PYTHON).is_file(), reason="no LiteRT venv (.venv-litert: bash .ci/litert_venv "
                    "makes it; litert-torch cannot share a venv with gradio 6, see the README)")
@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                    reason="ai-edge-litert not installed (pip install 'edgeclip[litert-runtime]')")
def test_litert_export_in_its_venv_then_runs_here(tmp_path, request):
    """The LiteRT venv converts (litert-torch) and gates; this venv's torch-free interpreter embeds the same."""
    if own_process(request):
        return
    from edgeclip import runtime
    from edgeclip.models import create_model, save_student
    tiny_model = create_model(MOBILE_CFG, seed=0)
    save_student(tiny_model, tmp_path / "student")
    r = subprocess.run([LITERT_PYTHON, "-m", "edgeclip.cli", "export", str(tmp_path / "student"), "--litert",
                        "--int8", "--out", str(tmp_path / "art")], capture_output=True, text=True, timeout=900,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert m["parity"]["litert-fp32"]["passed"] is True and m["parity"]["litert-int8-dynamic"]["passed"] is True
    assert sorted(v for v in m["variants"] if not v.startswith("litert-")) == ["fp32"]  # --int8 of the formats asked
    rt = runtime.load(tmp_path / "art", "litert-fp32")
    assert rt.backend == "litert"
    got, ref = rt.embed_texts(TEXTS), _ref(tiny_model)
    assert np.abs(got - ref).max() <= 1e-4
    q = runtime.load(tmp_path / "art", "litert-int8-dynamic").embed_texts(TEXTS)
    assert (q * ref).sum(1).min() >= 0.97
