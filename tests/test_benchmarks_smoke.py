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

pytestmark = pytest.mark.slow  # each smoke runs a benchmark script end to end (~7 min)


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


def test_recipe_benchmarks_smoke(tiny_teacher):
    """recipe_ablation, student_shape and retention share benchmarks/_runs.py (child processes, results rewritten
    as each run ends): one tiny run of each."""
    out, t = tiny_teacher / "r5", str(tiny_teacher / "teacher")
    common = ["--teacher", t, "--steps", "2", "--batch-size", "8", "--samples", "32", "--eval-images", "64",
              "--threads", "1", "--workers", "0"]
    _run("recipe_ablation.py", [*common, "--target", "60k", "--views", "1,2", "--only", "all | views=2"], out)
    r = json.loads((out / "recipe_ablation.json").read_text())
    assert [(x["extra"]["arm"], x["views"]) for x in r["runs"]] == [("all", 2)] and "failed" not in r
    assert set(r["runs"][0]["terms_final"][0]) == {"affinity", "feature", "icl", "contrastive"}
    _run("student_shape.py", [*common, "--targets", "120k"], out)  # deep 4 x 48, wide 2 x 64
    r = json.loads((out / "student_shape.json").read_text())
    solved = r["solved"]  # one run per distinct tower; the others name the shape they equal
    assert (solved["120k deep"]["layers"], solved["120k wide"]["layers"]) == (4, 2)
    assert len(r["runs"]) == len({(v["layers"], v["width"]) for v in solved.values()}) == 2
    assert {(x["student_config"]["vision_cfg"]["layers"]) for x in r["runs"]} == {4, 2}
    _run("retention.py", [*common, "--targets", "60k", "--short", "0", "--eval-every", "1"], out)
    r = json.loads((out / "retention.json").read_text())
    assert [len(x["curve"]) for x in r["runs"]] == [2] and r["runs"][0]["retained"]["seen_top1"] is not None
    assert all((out / f"{n}.png").stat().st_size > 0 for n in ("recipe_ablation", "student_shape", "retention"))


def test_gpu_check_runs_on_the_cpu_with_the_gpu_parts_recorded_as_skipped(tiny_teacher):
    """The prepared GPU check (benchmarks/gpu_check.py) cannot rot: its CPU parts run here at tiny settings."""
    out = tiny_teacher / "r6"
    _run("gpu_check.py", ["--device", "cpu", "--teacher", str(tiny_teacher / "teacher"), "--target",
                          '{"image": 60000, "text": 60000}', "--steps", "3", "--batch-size", "16", "--samples", "48",
                          "--image-size", "32", "--ddp-steps", "2"], out)
    r = json.loads((out / "gpu_check.json").read_text())
    p = r["parts"]
    assert p["precision"]["fp32"]["passed"] and len(p["precision"]["fp32"]["loss_curve"]) == 3
    assert p["precision"]["fp32"]["skipped_steps"] == 0
    assert all("needs CUDA" in p[k]["skipped"] for k in ("decode", "speed", "memory"))
    assert all("needs CUDA" in p["precision"][k]["skipped"] for k in ("bf16", "fp16"))
    assert p["ddp"]["runs"]["1"]["exit"] == 0 and p["ddp"]["runs"]["2"]["exit"] == 0, p["ddp"]
    assert p["ddp"]["max_abs_diff"] <= 1e-5 and p["ddp"]["passed"]
    assert r["passed"] is True
