"""Each benchmark script runs end to end on a tiny setting (subprocess; benchmarks/ is never imported)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import TINY_CFG  # noqa: E402


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    from edgeclip.models import create_model, save_student
    d = tmp_path_factory.mktemp("bench")
    save_student(create_model(TINY_CFG, seed=0), d / "teacher")
    return d


def _run(script, args, out):
    env = {**os.environ, "EDGECLIP_BENCH_RESULTS": str(out), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env, timeout=600,
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{script} exited {r.returncode}: {r.stderr[-3000:]}"


def test_inherit_vs_scratch_smoke(tiny_teacher):
    out = tiny_teacher / "r1"
    _run("inherit_vs_scratch.py", ["--teacher", str(tiny_teacher / "teacher"), "--target", "60k", "--steps", "4",
                                   "--eval-every", "2", "--batch-size", "16", "--samples", "64", "--auto-steps",
                                   "2", "--eval-images", "128", "--methods",
                                   "manual-leading,manual-magnitude,auto,auto-per-layer,scratch"], out)
    r = json.loads((out / "inherit_vs_scratch.json").read_text())
    assert set(r["methods"]) == {"manual-leading", "manual-magnitude", "auto", "auto-per-layer", "scratch"}
    assert r["methods"]["auto"]["per_layer"] is None  # tied masks: a standard uniform student
    assert (out / "inherit_vs_scratch.png").stat().st_size > 0


def test_speed_smoke(tiny_teacher):
    out = tiny_teacher / "r2"
    _run("speed.py", ["--pairs", f"{tiny_teacher / 'teacher'}=60k", "--batches", "1", "--repeat", "1",
                      "--threads", "1"], out)
    r = json.loads((out / "speed.json").read_text())
    rows = r["pairs"]["teacher"]["student"]["results"]
    assert {(x["backend"], x["variant"]) for x in rows} >= {("onnxruntime", "fp32"), ("onnxruntime", "int8-static")}
    assert r["pairs"]["teacher"]["student"]["goal"]["1"]["best_int8_ratio"] > 0 and r["gemm_peaks"]


def test_cache_speed_smoke(tiny_teacher):
    out = tiny_teacher / "r3"
    _run("cache_speed.py", ["--teacher", str(tiny_teacher / "teacher"), "--target", "60k", "--samples", "64",
                            "--batch-size", "32"], out)
    r = json.loads((out / "cache_speed.json").read_text())
    assert len(r["epoch_s_with_cache"]) == 2


def test_size_vs_accuracy_smoke(tiny_teacher):
    out = tiny_teacher / "r4"
    _run("size_vs_accuracy.py", ["--teacher", str(tiny_teacher / "teacher"), "--sizes", "60k", "--multistage", "60k",
                                 "--steps", "4", "--batch-size", "16", "--samples", "64", "--eval-images", "128",
                                 "--threads", "1"], out)
    r = json.loads((out / "size_vs_accuracy.json").read_text())
    assert [x["stages"] for x in r["runs"]] == [1, 2]
    assert all(set(x["retained"]) == {"seen_top1", "held_out_top1", "i2t_R@1"} for x in r["runs"])
    assert (out / "size_vs_accuracy.png").stat().st_size > 0
