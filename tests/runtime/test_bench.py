"""edgeclip bench: JSON + markdown + PNG report, the fastest-pair record in the manifest, FLOP counting."""
from __future__ import annotations

import json

import pytest

import edgeclip.runtime as rt
from tiny_artifact import artifact_copy, tiny_artifact_fixture  # noqa: F401  (fixtures)
from conftest import one_error_line, own_process, run_cli



@pytest.mark.slow
def test_bench_writes_report_and_records_fastest_passing_pair(artifact_copy, tmp_path, request):
    if own_process(request):  # it loads what bench measured, OpenVINO included
        return
    out = tmp_path / "bench"
    code, err = run_cli("bench", artifact_copy, "--batches", "1", "--threads", "1", "--variant", "fp32", "--repeat", "2", "--warmup", "1",
                        "--no-peaks", "--out", out)
    assert code == 0, err
    rep = json.loads((out / "bench.json").read_text())
    assert rep["edgeclip_output"] == "bench" and rep["shared_machine"] is True and rep["cpu"]
    backends = {b.value for b in rt.backends.available_backends()}
    rows = rep["results"]
    assert {(r["backend"], r["variant"]) for r in rows} == {(b, v) for b in backends for v in ("fp32",)}
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    for r in rows:
        assert r["median_ms"] > 0 and r["peak_rss_mib"] > 10 and r["file_mb"] > 0
        assert r["parity_passed"] == manifest["parity"][r["variant"]]["passed"]
    assert rep["image_flops"]["1"] > 0
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "bench.md").read_text()
    assert md.count("\n| ") >= len(rows) + 1 and "Fastest passing pair" in md
    eligible = sorted((r for r in rows if r["eligible"]), key=lambda r: r["median_ms"])
    rec = manifest["fastest"]["by_batch"].get("1", [])
    assert [(e["backend"], e["variant"]) for e in rec] == [(r["backend"], r["variant"]) for r in eligible]
    if rec:
        r = rt.load(artifact_copy, "auto", backend="auto")
        assert (r.backend, r.variant) == (rec[0]["backend"], rec[0]["variant"])


def test_bench_bad_input_is_one_line_and_writes_nothing(tiny_artifact, tmp_path):
    code, err = run_cli("bench", tmp_path / "nope", "--out", tmp_path / "b")
    assert one_error_line(code, err) and "not an edgeclip artifact" in err[0], err
    code, err = run_cli("bench", tiny_artifact[0], "--variant", "fp99", "--out", tmp_path / "b")
    assert one_error_line(code, err) and "fp99" in err[0], err
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    code, err = run_cli("bench", tiny_artifact[0], "--out", keep, "--overwrite")
    assert one_error_line(code, err) and "exists" in err[0], err
    assert not (tmp_path / "b").exists() and [p.name for p in keep.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("batch", [1, 3])
def test_flops_counted_from_the_graph(tmp_path, batch):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from edgeclip.runtime.limits import encoder_flops
    w = numpy_helper.from_array(np.ones((64, 32), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "g.onnx"))
    assert encoder_flops(tmp_path / "g.onnx", batch) == 2 * batch * 64 * 32


def test_auto_never_picks_a_pair_slower_than_that_backends_fp32(monkeypatch):
    """Issue #27: OpenVINO ran the QDQ-dynamic INT8 graphs slower than its own fp32 (78.8 vs 58.8 ms); the record
    ranks what was measured, so ``auto`` (on either backend, or both) can never land on such a pair, nor on a
    faster one that failed parity."""
    from edgeclip.runtime import backends
    from edgeclip.runtime.backends import resolve_choice
    monkeypatch.setattr(backends, "available_backends",  # both, whether OpenVINO is installed or not
                        lambda: [backends.Backend.ONNXRUNTIME, backends.Backend.OPENVINO])
    from edgeclip.runtime.bench import fastest_record
    ms = {("onnxruntime", "fp32"): (59.0, 1677), ("onnxruntime", "int8-dynamic"): (26.8, 740),
          ("onnxruntime", "int8-static"): (26.4, 768), ("openvino", "fp32"): (58.8, 1769),
          ("openvino", "int8-dynamic"): (78.8, 1957), ("openvino", "int8-weights"): (26.2, 829),
          ("openvino", "int8-static"): (19.6, 426), ("openvino", "fp16"): (5.0, 100)}  # fp16 failed its gates
    rows = [{"backend": b, "variant": v, "batch": batch, "threads": 2, "median_ms": t[i], "eligible": v != "fp16"}
            for (b, v), t in ms.items() for i, batch in enumerate((1, 32))]
    from edgeclip.artifact import Manifest
    manifest = Manifest(fastest=fastest_record(rows))
    for batch, i in ((1, 0), (32, 1)):
        for backend in ("onnxruntime", "openvino", "auto"):
            b, v = resolve_choice(manifest, backend, "auto", batch)
            fp32 = min(t[i] for (bb, vv), t in ms.items() if vv == "fp32" and backend in (bb, "auto"))
            assert v != "fp16" and ms[(b, v)][i] <= fp32, (backend, batch, b, v)
    assert resolve_choice(manifest, "openvino", "auto", 1) == ("openvino", "int8-static")
    assert resolve_choice(manifest, "onnxruntime", "auto", 32) == ("onnxruntime", "int8-dynamic")


def _read_only(folder) -> bool:
    """Make ``folder`` read-only for this user (root: the immutable attribute, which root's writes obey too)."""
    import os
    import subprocess
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        return False
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return True
    (folder / ".probe").unlink()
    return False


def _writable(folder) -> None:
    import os
    import subprocess
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def test_bench_on_a_read_only_artifact_measures_then_says_the_record_was_not_written(artifact_copy, tmp_path,
                                                                                      robust):
    """The numbers are printed and the report written; the manifest cannot be, so the exit is 2 with one line."""
    import subprocess
    import sys
    before = (artifact_copy / "manifest.json").read_bytes()
    if not _read_only(artifact_copy):
        pytest.skip("cannot make a folder read-only here (no chattr for root, or a filesystem without it)")
    try:
        r = subprocess.run([sys.executable, "-m", "edgeclip.cli", "bench", str(artifact_copy), "--backend",
                            "onnxruntime", "--variant", "fp32", "--batches", "1", "--threads", "1", "--repeat", "1",
                            "--warmup", "0", "--no-peaks", "--out", str(tmp_path / "b")], capture_output=True,
                           text=True, timeout=600)
    finally:
        _writable(artifact_copy)
    err = [ln for ln in r.stderr.splitlines() if "error" in ln.lower() or "Traceback" in ln]
    assert one_error_line(r.returncode, err), (r.returncode, r.stderr[-2000:])
    assert "measured, but the record could not be written" in err[0] and "manifest.json" in err[0], err
    assert "| onnxruntime | fp32 | 1 | 1 |" in r.stdout  # measured and printed first
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["results"]
    assert (artifact_copy / "manifest.json").read_bytes() == before
    robust("bench", "artifact in a read-only folder", "measures, prints, writes the report; exit 2 naming the "
           "record it could not write", err[0])


def test_a_variant_whose_runtime_is_not_installed_names_its_extra(artifact_copy, monkeypatch, robust):
    """A LiteRT variant where ai-edge-litert is missing: one line naming the extra, before any file is opened."""
    import importlib.util

    from conftest import rehash
    from edgeclip.artifact import Variant, read_manifest
    from edgeclip.errors import BackendError
    m = read_manifest(artifact_copy)
    fp32 = m.variants["fp32"]
    rehash(artifact_copy, variants={**m.variants, "litert-fp32": Variant("litert", "fp32", "", fp32.image, fp32.text)})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ai_edge_litert" else real(name, *a))
    with pytest.raises(BackendError) as e:
        rt.load(artifact_copy, "litert-fp32")
    msg = str(e.value)
    assert "pip install 'edgeclip[litert-runtime]'" in msg and "litert-fp32" in msg and "\n" not in msg
    robust("runtime", "a variant whose runtime's extra is not installed", "BackendError in one line naming the extra",
           msg)
