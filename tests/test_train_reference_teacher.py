"""benchmarks/train_reference_teacher.py resumes exactly and refuses bad input in one line (tiny CLIP, tiny batch).

The script is loaded from its file and its ``main`` called in this process: a subprocess per run would spend most
of the test importing torch again.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_CFG

SCRIPT = ROOT / "benchmarks" / "train_reference_teacher.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_reference_teacher", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "tiny.json"
    p.write_text(json.dumps(TINY_CFG))
    return p


def common(cfg_file, steps=6) -> list[str]:
    # --threads: keep this worker's thread count (main sets it process-wide); small evaluation sets
    return ["--model", str(cfg_file), "--steps", str(steps), "--batch-size", "8", "--warmup", "2",
            "--eval-every", "0", "--eval-images", "128", "--eval-pairs", "16", "--ckpt-minutes", "0",
            "--threads", str(torch.get_num_threads())]


def load(folder: Path) -> dict:
    return torch.load(folder / "ckpt" / "last.pt", map_location="cpu", weights_only=True)


def same_tensors(a, b) -> bool:
    """Deep equality; tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_tensors(x, y) for x, y in zip(a, b))
    return a == b


def tree(folder: Path) -> dict:
    """Everything under ``folder`` (and the folder's parent's entries): what a refusal must leave as it was."""
    files = {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")} if folder.is_dir() else {}
    return {"parent": sorted(os.listdir(folder.parent)), "files": files}


@pytest.mark.slow
def test_n_steps_straight_equal_half_resume_half(script, cfg_file, tmp_path):
    """6 steps in one run and 3 + --resume + 3 leave the same weights and optimizer state, bit for bit; finishing
    the resumed run writes the fp16 teacher, its scores and a card that names the resumes, and takes the
    checkpoint away."""
    a, b = tmp_path / "straight", tmp_path / "resumed"
    script.main([*common(cfg_file), "--out", str(a), "--stop-at", "6"])
    script.main([*common(cfg_file), "--out", str(b), "--stop-at", "3"])
    half = load(b)
    assert half["step"] == 3 and half["args"]["steps"] == 6
    script.main([*common(cfg_file), "--out", str(b), "--resume", "--stop-at", "6"])
    ca, cb = load(a), load(b)
    assert ca["step"] == cb["step"] == 6
    assert same_tensors(ca["model"], cb["model"]), "weights differ after the resume"
    assert same_tensors(ca["optimizer"], cb["optimizer"]), "optimizer state differs after the resume"
    assert not same_tensors(half["model"], cb["model"])  # the second half did train
    strip = [{k: v for k, v in h.items() if k != "minutes"} for h in ca["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "minutes"} for h in cb["history"]]
    assert [h["step"] for h in cb["history"]] == [6]  # --eval-every 0: the end-of-run evaluation only
    assert [(s["from"], s["to"]) for s in cb["segments"]] == [(0, 3), (3, 6)]

    script.main([*common(cfg_file), "--out", str(b), "--resume"])  # at step 6 of 6: only the final save is left
    assert sorted(p.name for p in b.iterdir()) == ["CARD.md", "model.safetensors", "open_clip_config.json",
                                                 "scores.json"]  # the checkpoint went with the old folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or lock left beside it
    meta = json.loads((b / "open_clip_config.json").read_text())["edgeclip"]["reference_teacher"]
    assert meta["args"]["steps"] == 6 and len(meta["segments"]) == 3 and meta["history"] == cb["history"]
    assert json.loads((b / "scores.json").read_text())["step"] == 6
    card = (b / "CARD.md").read_text()
    assert "over 3 runs (resumed from its checkpoint at steps 3, 6)" in card and "128 zero-shot images" in card
    from edgeclip.models import load_student
    for k, v in load_student(b).state_dict().items():  # the resumed run's weights, rounded to fp16
        assert torch.equal(v, cb["model"][k].half().float()), k

    script.main([*common(cfg_file), "--out", str(b), "--resume"])  # the same line once more: nothing to do
    assert (b / "CARD.md").read_text() == card


@pytest.fixture(scope="module")
def paused(script, cfg_file, tmp_path_factory) -> Path:
    """A run of 4 steps paused at step 2."""
    out = tmp_path_factory.mktemp("paused") / "run"
    script.main([*common(cfg_file, steps=4), "--out", str(out), "--stop-at", "2"])
    assert load(out)["step"] == 2
    return out


def refuse(script, capsys, argv, folder: Path) -> str:
    """``main(argv)`` must exit 2 with one line on stderr, leaving ``folder`` as it was; returns the line."""
    before = tree(folder)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        script.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert tree(folder) == before, "a refused run wrote something"
    return err[0]


def test_resume_refuses_another_models_checkpoint(script, cfg_file, paused, tmp_path, capsys):
    other = copy.deepcopy(TINY_CFG)
    other["vision_cfg"]["layers"] = 3
    other_file = tmp_path / "other.json"
    other_file.write_text(json.dumps(other))
    argv = [*common(cfg_file, steps=4), "--model", str(other_file), "--out", str(paused), "--resume"]
    line = refuse(script, capsys, argv, paused)
    assert "another model" in line and "vision 4 layers" in line and "vision 3 layers" in line


def test_resume_refuses_steps_below_the_checkpoint(script, cfg_file, paused, capsys):
    line = refuse(script, capsys, [*common(cfg_file, steps=1), "--out", str(paused), "--resume"], paused)
    assert "--steps 1 is below the checkpoint's step 2" in line


def test_an_unfinished_run_needs_resume(script, cfg_file, paused, capsys):
    line = refuse(script, capsys, [*common(cfg_file, steps=4), "--out", str(paused)], paused)
    assert "pass --resume" in line


def test_resume_refuses_other_training_settings(script, cfg_file, paused, capsys):
    argv = [*common(cfg_file, steps=4), "--batch-size", "16", "--out", str(paused), "--resume"]
    assert "--batch-size 8, not --batch-size 16" in refuse(script, capsys, argv, paused)


def _users_file(out: Path) -> None:
    out.mkdir()
    (out / "notes.txt").write_text("mine")


def _a_student(out: Path) -> None:
    from edgeclip.models import create_model, save_student
    save_student(create_model(TINY_CFG, seed=0), out)


def _a_file(out: Path) -> None:
    out.write_text("not a folder")


@pytest.mark.parametrize("make, says", [(_users_file, "'notes.txt', which this script did not write"),
                                        (_a_student, "an edgeclip student that this script did not train"),
                                        (_a_file, "exists and is not a folder")],
                         ids=["users-file", "edgeclip-student", "a-file"])
@pytest.mark.parametrize("resume", [False, True], ids=["new", "resume"])
def test_refuses_an_output_that_is_not_its_run(script, cfg_file, tmp_path, capsys, make, says, resume):
    out = tmp_path / "out"
    make(out)
    argv = [*common(cfg_file), "--out", str(out), *(["--resume"] if resume else [])]
    assert says in refuse(script, capsys, argv, out)


@pytest.mark.slow
def test_refusal_from_the_command_line_is_one_line(cfg_file, tmp_path):
    """The same contract from a real process: exit code 2, one stderr line, no traceback, nothing written."""
    out = tmp_path / "out"
    _users_file(out)
    before = tree(out)
    r = subprocess.run([sys.executable, str(SCRIPT), *common(cfg_file), "--threads", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert "which this script did not write" in r.stderr and tree(out) == before
