"""compress under torchrun (2 gloo ranks) through the CLI: same student as one process, clean failure of a rank."""
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from edgeclip.models import create_model, save_student

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from conftest import TINY_CFG  # noqa: E402

pytestmark = pytest.mark.slow  # torchrun with two gloo ranks (~45 s)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TARGET = '{"image": 60000, "text": 60000}'


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    save_student(create_model(TINY_CFG, seed=0), root / "teacher")
    rows = ["filepath,title"]
    for i in range(48):  # CSV, not ShapesWorld: no end-of-run evaluation, so the test stays fast
        Image.new("RGB", (32, 32), (i * 5 % 256, 255 - i * 5 % 256, i * 11 % 256)).save(root / f"{i}.png")
        rows.append(f"{i}.png,colour number {i}")
    (root / "d.csv").write_text("\n".join(rows))
    return root


def _args(root, out, steps=4):
    return ["compress", root / "teacher", "--target", TARGET, "--data", root / "d.csv", "--steps", str(steps),
            "--batch-size", "16", "--stages", "1", "--workers", "0", "--out", out]


def _weights(path):
    from safetensors.torch import load_file
    return load_file(next(path.glob("*.safetensors")))


def test_two_gloo_ranks_equal_one_process_with_the_same_global_batch(setup):
    one = subprocess.run([sys.executable, "-m", "edgeclip.cli", *map(str, _args(setup, setup / "one"))],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "edgeclip.cli", *map(str, _args(setup, setup / "two"))],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("student:") == 1  # only rank 0 prints the report
    a, b = _weights(setup / "one" / "student"), _weights(setup / "two" / "student")
    assert a.keys() == b.keys()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff <= 1e-5, diff
    moved = max((a[k].float() - _weights(setup / "one" / "stages" / "stage1")[k].float()).abs().max().item()
                for k in a)
    assert moved == 0.0  # the stage-1 folder is the final student of a one-stage plan
    assert (setup / "two" / "ckpt" / "stage1.pt").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_rank_that_dies_makes_the_other_exit_with_one_line(setup):
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {**ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "EDGECLIP_DIST_TIMEOUT": "60"}
        procs.append(subprocess.Popen([sys.executable, "-m", "edgeclip.cli",
                                       *map(str, _args(setup, setup / "dies", steps=100000))],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    assert procs[0].stdout.readline().startswith("plan:")  # the process group is up
    time.sleep(3)
    procs[1].kill()
    t = time.time()
    _, err = procs[0].communicate(timeout=120)
    errors = [ln for ln in err.splitlines() if "error" in ln.lower() or "Traceback" in ln]
    assert procs[0].returncode == 2 and len(errors) == 1, err[-2000:]
    assert "another rank died" in errors[0] and "--resume" in errors[0]
    assert time.time() - t < 90
    procs[1].wait()
    assert not (setup / "dies" / "student").exists()


def test_nccl_without_gpu_is_one_line(setup):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    env = {**ENV, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    r = subprocess.run([sys.executable, "-m", "edgeclip.cli", *map(str, _args(setup, setup / "nccl")),
                        "--device", "cuda"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "GPU" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (setup / "nccl").exists()
