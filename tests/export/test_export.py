"""Export + parity on a tiny model (fast); one ViT-B-32 text-tower export shows real architectures work."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from edgeclip.errors import ExportError, ParityError
from edgeclip.artifact import read_manifest as _read_manifest
from edgeclip.artifact.manifest import sha256
from edgeclip.export import check_parity, export_artifact, export_onnx
from edgeclip.export.tolerances import Precision, check_gates


def read_manifest(out) -> dict:
    """The manifest as its JSON says it (through the one reader)."""
    return _read_manifest(out).to_dict()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from edgeclip.models import create_model
    import sys as _s
    from pathlib import Path
    _s.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from conftest import TINY_CFG
    model = create_model(TINY_CFG, seed=0)
    out = tmp_path_factory.mktemp("art") / "a"
    res = export_artifact(model, out, ["fp32", "fp32-opt", "fp16", "int8-dynamic"])
    return model, out, res


def test_artifact_layout_and_manifest(artifact):
    _, out, res = artifact
    m = read_manifest(out)
    for f in ("image_encoder.onnx", "text_encoder.onnx", "preprocess.json", "tokenizer.json",
              "bpe_simple_vocab_16e6.txt.gz", "parity.json", "parity.md"):
        assert (out / f).is_file(), f
    assert m["opset"] == 18 and set(m["variants"]) == {"fp32", "fp32-opt", "fp16", "int8-dynamic"}
    assert all(v["passed"] for v in m["parity"].values()), m["parity"]
    assert m["files"]["image_encoder.onnx"] == sha256(out / "image_encoder.onnx")
    b = m["variants"]["fp32"]["bytes"]  # what the variant ships, recorded and printed by the export
    on_disk = {"image": ("image_encoder.onnx", "image_encoder.onnx.data"), "text": ("text_encoder.onnx",
               "text_encoder.onnx.data"), "tokenizer": ("bpe_simple_vocab_16e6.txt.gz", "tokenizer.json")}
    assert all(b[k] == sum((out / f).stat().st_size for f in fs) for k, fs in on_disk.items())
    assert b["total"] == b["image"] + b["text"] + b["tokenizer"]
    assert m["variants"]["int8-dynamic"]["bytes"]["text"] < b["text"] / 3
    onnx.checker.check_model(str(out / "image_encoder.onnx"), full_check=True)


def test_only_batch_is_dynamic_and_any_batch_runs(artifact):
    import onnxruntime as ort
    _, out, _ = artifact
    for name, feed in (("image_encoder.onnx", lambda b: {"pixel_values": np.zeros((b, 3, 32, 32), np.float32)}),
                       ("text_encoder.onnx", lambda b: {"input_ids": np.full((b, 16), 49407, np.int64)})):
        s = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        shape = s.get_inputs()[0].shape
        assert isinstance(shape[0], str) and all(isinstance(d, int) for d in shape[1:])
        for b in (1, 3, 64):
            assert s.run(None, feed(b))[0].shape[0] == b


def test_parity_fails_loudly_on_a_broken_artifact(artifact, tmp_path):
    import shutil
    model, out, _ = artifact
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    m = onnx.load(str(broken / "image_encoder.onnx"))
    init = max(m.graph.initializer, key=lambda t: np.prod(t.dims))  # the biggest weight
    arr = onnx.numpy_helper.to_array(init).copy()
    arr += 0.05 * np.random.default_rng(0).standard_normal(arr.shape).astype(arr.dtype)
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    onnx.save(m, str(broken / "image_encoder.onnx"), save_as_external_data=True, location="image_encoder.onnx.data")
    from conftest import rehash
    rehash(broken)  # as if the exporter itself wrote the broken graph (else the hash check refuses it)
    with pytest.raises(ParityError, match="image.max_abs_diff"):
        check_parity(broken, model, "fp32")


def test_gates_table_is_applied_per_precision():
    good = {"image": {"max_abs_diff": 2e-3, "min_cosine": 0.9995, "nonfinite": 0}}
    assert check_gates(Precision.FP16, good) == []
    assert check_gates(Precision.FP32, good)  # fp32 is stricter
    assert check_gates(Precision.FP16, {"image": {"nonfinite": 3}}) == ["image.nonfinite 3 > 0"]


@pytest.mark.slow
def test_cli_export_exits_nonzero_on_bad_input(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgeclip.cli", "export", str(tmp_path / "missing"), "--onnx",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "error:" in r.stderr and not (tmp_path / "o").exists()


def test_opset_is_validated(tiny_model, tmp_path):
    with pytest.raises(ExportError, match="opset"):
        export_onnx(tiny_model, tmp_path / "x", opset=11)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_vit_b_32_text_tower_exports_exactly(tmp_path):
    """A real architecture (random weights): the text encoder graph matches PyTorch."""
    import torch
    from edgeclip.export.onnx_export import TextEncoder, trace_to_onnx
    from edgeclip.models import create_model, get_tokenizer
    model = create_model("ViT-B-32", seed=0)
    ids = get_tokenizer(model)(["a photo of a cat", "", "x " * 100])
    trace_to_onnx(TextEncoder(model), ids[:2], tmp_path / "t.onnx", "input_ids", "text_embeds", 18)
    import onnxruntime as ort
    got = ort.InferenceSession(str(tmp_path / "t.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": ids.numpy()})[0]
    with torch.no_grad():
        ref = model.encode_text(ids, normalize=True).numpy()
    assert np.abs(got - ref).max() <= 1e-5


def test_polygraphy_onnxruntime_runner_and_trt_readiness(artifact):
    pytest.importorskip("polygraphy")
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from edgeclip.export import trt_readiness
    _, out, _ = artifact
    with OnnxrtRunner(SessionFromOnnx(str(out / "image_encoder.onnx"))) as runner:
        y = runner.infer({"pixel_values": np.zeros((2, 3, 32, 32), np.float32)})["image_embeds"]
    assert y.shape == (2, 32)
    r = trt_readiness(out / "image_encoder.onnx", "pixel_values")
    assert r["ok"], r["problems"]


@pytest.mark.parametrize("report", ["parity.json", "parity.md"])
def test_parity_reports_are_hashed_and_an_edited_one_is_refused_on_load(artifact, tmp_path, report, robust):
    import shutil

    import edgeclip.runtime as rt
    from edgeclip.errors import IntegrityError
    _, out, _ = artifact
    assert read_manifest(out)["files"][report] == sha256(out / report)
    art = tmp_path / "art"
    shutil.copytree(out, art)
    p = art / report
    p.write_text(p.read_text().replace("true", "false ", 1).replace("pass", "PASS", 1))  # a verdict rewritten
    with pytest.raises(IntegrityError) as e:
        rt.load(art, "fp32")
    msg = str(e.value)
    assert report in msg and "\n" not in msg
    robust("artifact integrity", f"{report} edited after export, then load", "IntegrityError in one line", msg)
    assert rt.load(art, "fp32", verify=False).variant == "fp32"


@pytest.mark.slow
def test_pytorch_references_are_computed_once_per_export(tmp_path, monkeypatch):
    """Every variant is checked against the same reference embeddings and the same preprocessed pixels (issue #27:
    parity was most of an export); the export records how long parity took, per variant."""
    from conftest import TINY_CFG
    from edgeclip.export.parity import References
    from edgeclip.models import create_model
    from edgeclip.runtime.preprocess import Preprocess
    computed, real, batches, real_batch = [], References.embed, [], Preprocess.batch
    monkeypatch.setattr(Preprocess, "batch",
                        lambda self, images: batches.append(len(images)) or real_batch(self, images))

    def spy(self, pixels, ids):
        n = len(self._embeds)
        out = real(self, pixels, ids)
        computed.extend([pixels.shape] * (len(self._embeds) - n))
        return out
    monkeypatch.setattr(References, "embed", spy)
    res = export_artifact(create_model(TINY_CFG, seed=0), tmp_path / "a", ["fp32", "fp32-opt", "fp16", "int8-dynamic"])
    timings = read_manifest(tmp_path / "a")["timings"]
    assert res.passed and len(computed) == 1, computed  # four variants, one PyTorch pass
    assert len(batches) == 1, batches  # and one decode + resize of the parity images
    assert set(timings["parity_s_by_variant"]) == {"fp32", "fp32-opt", "fp16", "int8-dynamic"}
    assert timings["parity_s"] >= timings["references_s"] > 0


def test_full_matmul_int8_quantises_attention_and_is_dropped_when_it_fails(tmp_path, monkeypatch):
    """int8-dynamic-full makes attention's activation x activation MatMuls INT8 too (issue #27); it is optional:
    a failed gate removes it from the artifact (recorded under "dropped") instead of failing the export."""
    import edgeclip.runtime as rt
    from conftest import TINY_CFG
    from edgeclip.errors import ConfigError
    from edgeclip.export import tolerances
    from edgeclip.models import create_model
    strict = {**tolerances.GATES, Precision.INT8_DYNAMIC_FULL: [("min_cosine", ">=", 1.1)]}  # cannot pass
    monkeypatch.setattr(tolerances, "GATES", strict)
    res = export_artifact(create_model(TINY_CFG, seed=0), tmp_path / "a", ["fp32", "int8-dynamic", "int8-dynamic-full"])
    m = read_manifest(tmp_path / "a")
    assert res.passed and "int8-dynamic-full" not in m["variants"] and "int8-dynamic-full" not in m["parity"]
    assert m["dropped"]["int8-dynamic-full"] and not list((tmp_path / "a").glob("*int8-dynamic-full*"))
    assert set(m["files"]) == {p.name for p in (tmp_path / "a").iterdir() if p.name != "manifest.json"}
    with pytest.raises(ConfigError, match="no variant"):
        rt.load(tmp_path / "a", "int8-dynamic-full")
    from edgeclip.export.variants import int8_dynamic
    ops = {}
    for full in (False, True):
        dst = tmp_path / f"image.{full}.onnx"
        int8_dynamic(tmp_path / "a" / "image_encoder.onnx", dst, every_matmul=full)
        nodes = onnx.load(str(dst)).graph.node
        ops[full] = (sum(n.op_type == "MatMulInteger" for n in nodes), sum(n.op_type == "MatMul" for n in nodes))
        kinds = {n.op_type for n in nodes}
        assert "Conv" in kinds and "ConvInteger" not in kinds, kinds  # the patch embedding stays fp32 (speed)
    assert ops[True][0] > ops[False][0] and ops[True][1] < ops[False][1], ops  # attention MatMuls moved to INT8


def test_openvino_variants_without_their_packages_are_one_line_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    from conftest import TINY_CFG
    from edgeclip.errors import BackendError
    from edgeclip.models import create_model
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    with pytest.raises(BackendError, match=r"need nncf: pip install 'edgeclip\[openvino\]'"):
        export_artifact(create_model(TINY_CFG, seed=0), tmp_path / "a", ["fp32", "int8-weights"])
    assert not (tmp_path / "a").exists()
