"""Runtime backends: OpenVINO reproduces onnxruntime, parity runs through it, 'auto' reads the bench record."""
from __future__ import annotations

import numpy as np
import pytest

import edgeclip.runtime as rt
import tiny_artifact as tiny
from tiny_artifact import artifact_copy, tiny_artifact_fixture  # noqa: F401  (fixtures)
from conftest import one_error_line, own_process, run_cli
from edgeclip.errors import ConfigError

PROMPTS = ["a photo of a dog", "", "x " * 40, "naïve café 🐶"]


def _openvino(request) -> bool:
    """Skip without OpenVINO; otherwise run this test in a fresh interpreter (``own_process``) and return True."""
    import importlib.util
    if importlib.util.find_spec("openvino") is None:  # not imported here: the parent never loads OpenVINO
        pytest.skip("openvino is not installed; pip install 'edgeclip[openvino]'")
    if own_process(request):
        return True
    try:
        import openvino  # noqa: F401
    except ImportError as e:
        pytest.skip(f"openvino cannot be imported here ({e}); pip install 'edgeclip[openvino]'")
    return False


def _images(n: int = 9):
    from PIL import Image
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + i, 36, 3), dtype=np.uint8)) for i in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", "int8-dynamic"])
def test_openvino_embeddings_match_onnxruntime(request, variant):
    if _openvino(request):
        return
    tiny_artifact = tiny.build()
    art, _ = tiny_artifact
    a, b = rt.load(art, variant), rt.load(art, variant, backend="openvino")
    assert (a.backend, b.backend) == ("onnxruntime", "openvino")
    imgs = _images()
    ia, ib = a.embed_images(imgs, batch_size=4), b.embed_images(imgs, batch_size=4)  # 4, 4, 1: dynamic batch
    ta, tb = a.embed_texts(PROMPTS), b.embed_texts(PROMPTS)
    assert ib.shape == ia.shape and tb.shape == ta.shape and np.isfinite(ib).all()
    if variant == "fp32":  # f32 inference precision is forced: no silent bf16 on CPUs that have it
        assert (ia * ib).sum(1).min() >= 0.9999 and (ta * tb).sum(1).min() >= 0.9999
        assert np.abs(ia - ib).max() <= 1e-4
        return
    # INT8: each runtime's integer kernels round in their own way (onnxruntime's u8s8 path on AVX2-only CPUs
    # differs from its VNNI path, and both from OpenVINO's: 0.9936 min cosine between the two measured on an
    # AVX2 EPYC), so each is held to the INT8 gate against fp32, as export holds the variant
    ref = rt.load(art, "fp32")
    ri, rtx = ref.embed_images(imgs, batch_size=4), ref.embed_texts(PROMPTS)
    for got, want in ((ia, ri), (ib, ri), (ta, rtx), (tb, rtx)):
        cos = (got * want).sum(1)
        assert cos.min() >= 0.97 and cos.mean() >= 0.99, cos


@pytest.mark.slow
def test_parity_gates_run_through_openvino(request):
    if _openvino(request):
        return
    tiny_artifact = tiny.build()
    from edgeclip.export import check_parity
    art, model = tiny_artifact
    rep = check_parity(art, model, "fp32", backend="openvino", raise_on_fail=False)
    assert rep.backend == "openvino" and rep.passed, rep.failed
    assert rep.metrics["image"]["min_cosine"] >= 0.99999


@pytest.mark.slow
def test_auto_picks_the_recorded_fastest_pair(request, tmp_path):
    if _openvino(request):
        return
    artifact_copy = tiny.copy_to(tmp_path / "artifact")
    from edgeclip.runtime.bench import record
    record(artifact_copy, {"cpu": "test", "date": "today", "fastest": {"threads": 2, "by_batch": {
        "1": [{"backend": "openvino", "variant": "int8-dynamic", "median_ms": 1.0},
              {"backend": "onnxruntime", "variant": "fp32", "median_ms": 2.0}],
        "32": [{"backend": "onnxruntime", "variant": "int8-dynamic", "median_ms": 9.0}]}}})
    r = rt.load(artifact_copy, "auto", backend="auto", batch=1)
    assert (r.backend, r.variant) == ("openvino", "int8-dynamic")
    r = rt.load(artifact_copy, "auto", backend="auto", batch=20)  # nearest benchmarked batch size: 32
    assert (r.backend, r.variant) == ("onnxruntime", "int8-dynamic")
    r = rt.load(artifact_copy, "auto", backend="onnxruntime", batch=1)  # first entry compatible with the fixed part
    assert (r.backend, r.variant) == ("onnxruntime", "fp32")
    with pytest.raises(ConfigError, match="no passing entry"):
        rt.load(artifact_copy, "fp16", backend="auto", batch=1)


def test_auto_without_a_record_says_run_bench_first(tiny_artifact):
    with pytest.raises(ConfigError, match="run 'edgeclip bench ARTIFACT' first"):
        rt.load(tiny_artifact[0], "auto")


def test_bad_backend_name_is_one_line(tiny_artifact):
    with pytest.raises(ConfigError, match="unknown backend 'tpu'"):
        rt.load(tiny_artifact[0], backend="tpu")
    with pytest.raises(ConfigError, match="runs on onnxruntime / openvino only, not 'tensorrt'"):
        rt.load(tiny_artifact[0], backend="tensorrt")
    code, err = run_cli("parity", tiny_artifact[0], "--against", "reference", "--backend", "tensorrt")
    assert one_error_line(code, err) and "invalid choice" in err[0], err
    code, err = run_cli("bench", tiny_artifact[0], "--backend", "tpu")
    assert one_error_line(code, err) and "invalid choice" in err[0], err


@pytest.mark.slow
def test_openvino_own_variants_bf16_and_int8_weights(request, tmp_path):
    """bf16 (OpenVINO's precision hint on the fp32 graphs) and int8-weights (NNCF weight-only INT8 IR): gated on
    OpenVINO with their own gates, loaded only there, their files hashed like every other (issue #27)."""
    if _openvino(request):
        return
    from edgeclip.errors import IntegrityError
    from conftest import rehash
    from edgeclip.artifact import Verdict, read_manifest
    from edgeclip.export import check_parity
    from edgeclip.export.variants import build_variants
    from edgeclip.runtime.bench import bench_pairs
    art = tiny.copy_to(tmp_path / "artifact")
    model = tiny.build()[1]
    rehash(art, variants={**read_manifest(art).variants, **build_variants(art, ["bf16", "int8-weights"])})
    reports = {v: check_parity(art, model, v, raise_on_fail=False) for v in ("bf16", "int8-weights")}
    m = rehash(art, parity={**read_manifest(art).parity,
                            **{v: Verdict(r.passed, r.failed) for v, r in reports.items()}})
    assert m.variants["int8-weights"].image.endswith(".xml") and m.variants["bf16"].options["openvino_config"]
    assert m.variants["int8-weights"].format == "openvino-ir" and m.variants["bf16"].backends == ("openvino",)
    for v, r in reports.items():
        assert r.backend == "openvino" and r.passed, (v, r.failed)
    w = rt.load(art, "int8-weights")
    assert w.backend == "openvino" and np.isfinite(w.embed_texts(PROMPTS)).all()
    with pytest.raises(ConfigError, match="openvino only"):
        rt.load(art, "bf16", backend="onnxruntime")
    assert bench_pairs(m, ["onnxruntime", "openvino"], ["fp32", "bf16", "int8-weights"]) == [
        ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8-weights")]
    weights = art / m.variants["int8-weights"].image.replace(".xml", ".bin")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x5A
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=weights.name):
        rt.load(art, "int8-weights")
