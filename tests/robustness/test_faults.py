"""Faults: SIGKILL during compress and export, and a full disk while checkpointing, lose nothing finished."""
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgeclip.distill import compress
from edgeclip.errors import StorageError
from edgeclip.models import load_student

WORKER = Path(__file__).with_name("compress_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
STEPS = 48  # the worker checkpoints every 3 steps (~7 steps/s on one core)


def _ckpt_step(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)["step"] if path.is_file() else 0


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.glob(f".{name}.tmp-*"))


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_gives_the_same_student(tmp_path, robust):
    rng = random.Random(int(os.environ.get("EDGECLIP_FAULT_SEED", "0")))
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run([sys.executable, str(WORKER), str(ref), "fresh", str(STEPS)], check=True, env=ENV, timeout=300)
    ckpt, killed_at = run / "ckpt" / "stage1.pt", []
    for k in range(3):  # each attempt resumes, runs a random while, and is killed with SIGKILL
        p = subprocess.Popen([sys.executable, str(WORKER), str(run), "resume" if k else "fresh", str(STEPS)],
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before = _ckpt_step(ckpt)
        t = time.time()  # wait for progress past the last checkpoint, then a random extra moment
        while _ckpt_step(ckpt) <= before and p.poll() is None and time.time() - t < 200:
            time.sleep(0.1)
        time.sleep(rng.uniform(0, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed_at.append(_ckpt_step(ckpt))
        if not (run / "student").exists():
            assert not (run / "report.json").exists()  # nothing half-finished looks finished
    subprocess.run([sys.executable, str(WORKER), str(run), "resume", str(STEPS)], check=True, env=ENV, timeout=300)
    a = load_student(ref / "student")
    b = load_student(run / "student")
    worst = max((v - b.state_dict()[k]).abs().max().item() for k, v in a.state_dict().items())
    ra = json.loads((ref / "report.json").read_text())["stages"][0]["loss_curve"]
    rb = json.loads((run / "report.json").read_text())["stages"][0]["loss_curve"]
    robust("faults", "kill -9 during compress (3 random points), then --resume",
           "same student as an uninterrupted run (weights <= 1e-6, losses within 1e-5 relative)",
           f"killed with last checkpoint at steps {killed_at} of {STEPS}; max weight diff {worst:.1e}; "
           f"loss curves equal: {ra == pytest.approx(rb, rel=1e-5)}")
    assert len(set(killed_at)) >= 2 and max(killed_at) < STEPS  # the kills really landed at different points
    # losses (~2.5) relative: 1.7e-6 absolute was seen on an AVX-512 AMD EPYC (main fails it too)
    assert worst <= 1e-6 and ra == pytest.approx(rb, rel=1e-5)


def _wait_for(cond, p, limit=300):
    t = time.time()
    while not cond() and p.poll() is None and time.time() - t < limit:
        time.sleep(0.05)
    return cond()


@pytest.mark.slow
def test_kill_during_export_leaves_no_partial_artifact(tmp_path, tiny_model, robust):
    from edgeclip.outputs import clean_stale
    from edgeclip.models import save_student
    from edgeclip.runtime import load
    save_student(tiny_model, tmp_path / "student")
    out = tmp_path / "art"
    cmd = [sys.executable, "-m", "edgeclip.cli", "export", str(tmp_path / "student"), "--onnx", "--out", str(out),
           "--overwrite"]  # the 2nd and 3rd exports replace the 1st
    subprocess.run(cmd, check=True, env=ENV, capture_output=True, timeout=600)
    first = (out / "manifest.json").read_bytes()
    seen = []
    phases = {"while exporting the image encoder": lambda: any(tmp_path.glob(".art.tmp-*/art"))
              and not any(tmp_path.glob(".art.tmp-*/art/text_encoder.onnx")),
              "after both graphs were written (parity running)":
                  lambda: any(tmp_path.glob(".art.tmp-*/art/text_encoder.onnx"))}
    for phase, reached in phases.items():
        p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hit = _wait_for(reached, p)
        p.send_signal(signal.SIGKILL)
        p.wait()
        same = (out / "manifest.json").read_bytes() == first
        visible = sorted(x.name for x in tmp_path.iterdir() if not x.name.startswith("."))
        seen.append(f"{phase}: previous artifact {'unchanged' if same else 'CHANGED'}, "
                    f"{len(_leftovers(tmp_path, 'art'))} hidden temp dir(s), visible {visible}")
        assert hit, f"export finished before reaching: {phase}"
        assert same and visible == ["art", "student"]
        load(out)  # the previous artifact still loads
    clean_stale(out)  # what every atomic write of 'art' (the next export) does first
    left = _leftovers(tmp_path, "art")
    robust("faults", "kill -9 during export (two phases)",
           "previous artifact untouched, nothing partial under the output name; next export cleans up",
           "; ".join(seen) + f"; after the cleanup the next export runs first: {len(left)} temp dirs left")
    assert left == []


def test_disk_full_on_checkpoint_write_keeps_the_last_good_checkpoint(tmp_path, tiny_model, monkeypatch, robust):
    real_save, calls = torch.save, {"n": 0}

    def flaky_save(obj, f, *a, **k):  # the 2nd checkpoint hits a full disk half-way through
        calls["n"] += 1
        if calls["n"] == 2:
            Path(f).write_bytes(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", flaky_save)
    kw = dict(data="shapes:128", steps=9, batch_size=16, out=tmp_path / "run", stages=1, ckpt_every=3,
              evaluate=False)
    with pytest.raises(StorageError) as e:
        compress(tiny_model, {"image": 60_000, "text": 60_000}, **kw)
    ckpt = tmp_path / "run" / "ckpt" / "stage1.pt"
    step = _ckpt_step(ckpt)
    left = _leftovers(ckpt.parent, ckpt.name)
    monkeypatch.setattr(torch, "save", real_save)
    compress(tiny_model, {"image": 60_000, "text": 60_000}, resume=True, **kw)  # space freed: resume finishes
    robust("faults", "disk full while writing a checkpoint (ENOSPC half-way)",
           "one error line; last good checkpoint intact and resumable",
           f"{type(e.value).__name__}: {e.value}; checkpoint on disk: step {step}; temp files left: {len(left)}; "
           f"resume finished: {(tmp_path / 'run' / 'student').is_dir()}")
    assert "No space left" in str(e.value) and "\n" not in str(e.value)
    assert step == 3 and left == [] and (tmp_path / "run" / "student").is_dir()
