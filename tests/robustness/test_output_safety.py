"""Outputs never destroy what the user did not ask to replace (issue #14, data loss).

Every case is a reproduction that deleted files before: each plants a marker that must survive, checks the CLI's
one-line refusal (exit 2), and records what it observed in docs/robustness.md. Importing ``check_output`` first
keeps this module from ever running the ``/``, ``~`` and repo-root cases against a writer without the guard.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, TINY_CFG, one_error_line
from edgeclip.outputs import pid_of, atomic_path, check_output, output_kind  # noqa: F401  (the guard must exist)
from edgeclip.errors import ConfigError

BUDGET = {"image": 60_000, "text": 60_000}
KW = dict(data="shapes:32", steps=3, batch_size=8, stages=1, evaluate=False, ckpt_every=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real finished compress run of the tiny teacher (RUN/student, RUN/ckpt, RUN/report.json...)."""
    from edgeclip.distill import compress
    from edgeclip.models import create_model
    d = tmp_path_factory.mktemp("safe")
    compress(create_model(TINY_CFG, seed=0), BUDGET, out=d / "run", **KW)
    return d / "run"


@pytest.fixture
def user_dir(tmp_path):
    """A user's folder: files edgeclip was never asked to replace."""
    u = tmp_path / "mine"
    (u / "student").mkdir(parents=True)
    (u / "marker.txt").write_text("my notes")
    (u / "student" / "thesis.txt").write_text("do not delete")
    (u / "report.md").write_text("my report")
    return u


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(capsys, *args) -> tuple[int, list[str]]:
    """``edgeclip ARGS`` in this process (fast); stderr filtered like ``conftest.run_cli``."""
    from edgeclip.cli import main
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [ln for ln in err.splitlines() if "error" in ln.lower() or "Traceback" in ln]


def _cli_in(cwd: Path, *args) -> tuple[int, list[str]]:
    """``cd CWD && edgeclip ARGS`` in a subprocess: the real reproduction of the ``--out .`` data loss."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "edgeclip.cli", *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, timeout=300, env=env)
    return r.returncode, [ln for ln in r.stderr.splitlines() if "error" in ln.lower() or "Traceback" in ln]


def _pairs_csv(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["filepath,title"]
    for i in range(12):  # retrieval metrics need >= 10 pairs (R@10)
        Image.new("RGB", (32, 32), (20 * i, 200 - 15 * i, 30)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,colour {i}")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    return folder / "pairs.csv"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "eval", "teach"])
def test_out_dot_in_a_folder_with_files_deletes_nothing(run, tmp_path, robust, command):
    d = tmp_path / "work"
    d.mkdir()
    (d / "marker.txt").write_text("my notes")
    csv = _pairs_csv(tmp_path / "data")
    args = {"export": [run / "student", "--onnx"], "eval": [run / "student", "--data", csv, "--limit", "10"],
            "teach": [run / "student", "--data", csv, "--views", "2", "--workers", "0"]}[command]
    code, err = _cli_in(d, command, *args, "--out", ".")
    left = sorted(p.name for p in d.iterdir())
    robust("outputs", f"cd DIR && edgeclip {command} RUN/student ... --out .", "refused in one line, exit 2, "
           "DIR untouched", f"exit {code}: {err[-1] if err else ''}; DIR holds {left}")
    assert one_error_line(code, err) and "current folder" in err[0]
    assert left == ["marker.txt"] and (d / "marker.txt").read_text() == "my notes"


def test_export_into_a_user_folder_is_refused(run, user_dir, capsys, robust):
    before = _snapshot(user_dir)
    code, err = _cli(capsys, "export", run / "student", "--onnx", "--out", user_dir)
    robust("outputs", "export --out U (U holds the user's files)", "refused, exit 2, U untouched",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "not an edgeclip output" in err[0] and _snapshot(user_dir) == before
    code, err = _cli(capsys, "export", run / "student", "--onnx", "--out", user_dir, "--overwrite")
    assert one_error_line(code, err) and _snapshot(user_dir) == before  # --overwrite never replaces user files


def test_export_onto_its_own_source_is_refused(run, capsys, robust):
    before = _snapshot(run / "student")
    code, err = _cli(capsys, "export", run / "student", "--onnx", "--out", run / "student", "--overwrite")
    robust("outputs", "export RUN/student --out RUN/student (its own source)", "refused, exit 2, "
           "model.safetensors kept", f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "input being read" in err[0] and _snapshot(run / "student") == before


def test_compress_into_the_teacher_folder_is_refused(tmp_path, tiny_model, capsys, robust):
    from edgeclip.models import save_student
    t = tmp_path / "T"
    save_student(tiny_model, t / "student")
    (t / "marker.txt").write_text("teacher notes")
    before = _snapshot(t)
    code, err = _cli(capsys, "compress", t / "student", "--target", "50%", "--steps", "2", "--out", t)
    robust("outputs", "compress T/student --out T (replaces the teacher it reads)", "refused, exit 2, T untouched",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "contains the input being read" in err[0] and _snapshot(t) == before
    code, err = _cli(capsys, "compress", t / "student", "--target", "50%", "--out", t / "student", "--overwrite")
    assert one_error_line(code, err) and _snapshot(t) == before


def test_compress_into_a_non_empty_user_folder_is_refused(tmp_path, tiny_model, user_dir, capsys, robust):
    from edgeclip.models import save_student
    save_student(tiny_model, tmp_path / "teacher")
    before = _snapshot(user_dir)
    code, err = _cli(capsys, "compress", tmp_path / "teacher", "--target", "50%", "--steps", "2", "--out", user_dir)
    robust("outputs", "compress --out U (U non-empty, not a run)", "refused, exit 2, U/student and U/report.md kept",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "not an edgeclip output" in err[0] and _snapshot(user_dir) == before


def test_compress_rerun_without_resume_keeps_the_checkpoint(run, tmp_path, capsys, robust):
    import shutil
    interrupted = tmp_path / "old-run"  # an interrupted run of edgeclip <= 0.1.0: checkpoints only, no marker
    shutil.copytree(run / "ckpt", interrupted / "ckpt")
    seen = []
    for folder in (run, interrupted):
        before = _snapshot(folder)
        code, err = _cli(capsys, "compress", "reference", "--target", "50%", "--steps", "2", "--out", folder)
        seen.append(f"exit {code}: {err[-1] if err else ''}")
        assert one_error_line(code, err) and "--resume" in err[0] and "--overwrite" in err[0]
        assert _snapshot(folder) == before
    robust("outputs", "compress re-run on an existing run without --resume (finished; interrupted, old format)",
           "refused in one line naming --resume / --overwrite, checkpoint untouched", " / ".join(seen))
    code, err = _cli(capsys, "compress", "reference", "--target", "50%", "--out", run, "--resume", "--overwrite")
    assert one_error_line(code, err) and "only one" in err[0]


@pytest.mark.parametrize("where", ["~", "/", "repo root"])
def test_home_root_and_repo_root_are_refused(run, tmp_path, monkeypatch, capsys, robust, where):
    home = tmp_path / "home"
    home.mkdir()
    (home / "marker.txt").write_text("my home")
    monkeypatch.setenv("HOME", str(home))  # never the real home, even if the guard were missing
    monkeypatch.chdir(tmp_path)
    out = {"~": "~", "/": "/", "repo root": ROOT}[where]
    guard = ROOT / "pyproject.toml" if where == "repo root" else home / "marker.txt"
    before = guard.read_bytes()
    code, err = _cli(capsys, "eval", run / "student", "--data", _pairs_csv(tmp_path / "d"), "--out", out)
    code2, err2 = _cli(capsys, "export", run / "student", "--onnx", "--out", out, "--overwrite")
    expect = {"~": "home folder", "/": "filesystem root", "repo root": "own source folder"}[where]
    robust("outputs", f"--out {where} (eval; export --overwrite)", "refused, exit 2",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and one_error_line(code2, err2) and expect in err[0] and expect in err2[0]
    assert guard.read_bytes() == before


def test_overwrite_replaces_an_output_of_the_same_kind_only(run, tmp_path, capsys, robust):
    csv = _pairs_csv(tmp_path / "data")
    rep = tmp_path / "eval.json"
    code, _ = _cli(capsys, "eval", run / "student", "--data", csv, "--limit", "10", "--out", rep)
    assert code == 0 and json.loads(rep.read_text())["edgeclip_output"] == "eval-report"
    first = rep.read_bytes()
    code, err = _cli(capsys, "eval", run / "student", "--data", csv, "--limit", "11", "--out", rep)
    refused = err[-1] if err else ""
    assert one_error_line(code, err) and "--overwrite" in refused and rep.read_bytes() == first
    code, _ = _cli(capsys, "eval", run / "student", "--data", csv, "--limit", "11", "--out", rep, "--overwrite")
    replaced = rep.read_bytes() != first and code == 0
    before = _snapshot(run)
    code, err = _cli(capsys, "eval", run / "student", "--data", csv, "--out", run / "report.json", "--overwrite")
    other = err[-1] if err else ""
    robust("outputs", "--overwrite on an output of the same kind / of another kind",
           "same kind replaced only with --overwrite; another kind refused even with it",
           f"without: {refused}; with: replaced={replaced}; other kind: exit {code}: {other}")
    assert replaced and one_error_line(code, err) and "not an eval-report" in other and _snapshot(run) == before


@pytest.mark.slow
def test_compress_overwrite_keeps_the_old_run_until_the_new_one_is_complete(run, tmp_path, monkeypatch, robust):
    import importlib
    import shutil

    from edgeclip.distill import compress
    cmod = importlib.import_module("edgeclip.distill.compress")  # the module (the package exports the function)
    from edgeclip.models import create_model
    old = tmp_path / "run"
    shutil.copytree(run, old)
    before = _snapshot(old)
    real_save = cmod.save_student

    def failing_save(model, folder, **kw):
        if Path(folder).name == "student":
            raise OSError(28, "No space left on device (simulated)")
        return real_save(model, folder, **kw)

    monkeypatch.setattr(cmod, "save_student", failing_save)
    teacher = create_model(TINY_CFG, seed=0)
    with pytest.raises(OSError):
        compress(teacher, BUDGET, out=old, overwrite=True, **{**KW, "seed": 1})
    kept = _snapshot(old) == before
    monkeypatch.setattr(cmod, "save_student", real_save)
    res = compress(teacher, BUDGET, out=old, overwrite=True, **{**KW, "seed": 1})
    new = json.loads((old / "report.json").read_text())
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".run."))
    robust("outputs", "compress --overwrite over an earlier run: fails half-way, then succeeds",
           "old run untouched by the failed attempt; replaced whole by the finished one",
           f"after failure old run unchanged: {kept}; after success report seed changed: "
           f"{new['stages'][0]['loss_curve'] != json.loads(before['report.json'])['stages'][0]['loss_curve']}; "
           f"hidden leftovers {left}")
    assert kept and res.out == old and _snapshot(old) != before and (old / "student" / "model.safetensors").is_file()
    assert left == []  # the failed attempt's temp folder went with the retry


def test_index_save_refuses_folders_that_are_not_an_index(tmp_path, user_dir, run, robust):
    from edgeclip.runtime import Index
    idx = Index(np.eye(3, dtype=np.float32), ["a", "b", "c"])
    before, seen = _snapshot(user_dir), []
    for target, overwrite in ((user_dir, False), (user_dir, True), (run / "student", True)):
        with pytest.raises(ConfigError) as e:
            idx.save(target, overwrite=overwrite)
        seen.append(str(e.value))
    idx.save(tmp_path / "idx")
    with pytest.raises(ConfigError, match="--overwrite"):
        idx.save(tmp_path / "idx")
    Index(np.eye(3, dtype=np.float32)[::-1].copy(), ["c", "b", "a"]).save(tmp_path / "idx", overwrite=True)
    robust("outputs", "Index.save over a user folder / a student; over an index", "refused; replaced only with "
           "overwrite=True", " / ".join(seen[::2]))
    assert _snapshot(user_dir) == before and Index.load(tmp_path / "idx").items == ["c", "b", "a"]
    assert output_kind(tmp_path / "idx") == "index"


def test_save_student_refuses_user_folders_and_replaces_a_student_only_on_request(tmp_path, tiny_model, user_dir,
                                                                                 robust):
    from edgeclip.models import save_student
    before = _snapshot(user_dir)
    with pytest.raises(ConfigError) as e:
        save_student(tiny_model, user_dir, overwrite=True)
    save_student(tiny_model, tmp_path / "s")
    with pytest.raises(ConfigError, match="--overwrite"):
        save_student(tiny_model, tmp_path / "s")
    save_student(tiny_model, tmp_path / "s", overwrite=True)
    robust("outputs", "save_student over a user folder (overwrite=True) / over a student",
           "user folder refused; a student replaced only with overwrite=True", str(e.value))
    assert _snapshot(user_dir) == before and output_kind(tmp_path / "s") == "student"


def test_failed_second_rename_puts_the_previous_output_back(tmp_path, monkeypatch, robust):
    import edgeclip.outputs as io
    out = tmp_path / "art"
    with atomic_path(out) as t:
        t.mkdir()
        (t / "v").write_text("1")
    real, calls = io.rename, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(5, "I/O error (simulated)")
        real(src, dst)

    monkeypatch.setattr(io, "rename", second_fails)
    with pytest.raises(OSError):
        with atomic_path(out) as t:
            t.mkdir()
            (t / "v").write_text("2")
    left = sorted(p.name for p in tmp_path.iterdir())
    robust("outputs", "replace whose 2nd rename (tmp -> path) fails", "previous output back in place",
           f"path holds v={(out / 'v').read_text()}; folder lists {left}")
    assert (out / "v").read_text() == "1" and left == ["art"]


KILLER = """
import os, sys
import numpy as np
import edgeclip.outputs as io
from edgeclip.runtime import Index
real, n = io.rename, []
def die_between(src, dst):
    n.append(dst)
    if len(n) == 2:
        os._exit(9)  # killed after old -> backup, before tmp -> path
    real(src, dst)
io.rename = die_between
Index(np.eye(2, dtype=np.float32), ["new", "new2"]).save(sys.argv[1], overwrite=True)
"""


def test_crash_between_the_two_renames_keeps_the_previous_output(tmp_path, robust):
    from edgeclip.runtime import Index
    out = tmp_path / "idx"
    Index(np.eye(2, dtype=np.float32), ["old", "old2"]).save(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", KILLER, str(out)], env=env, capture_output=True, timeout=120)
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    crashed = f"exit {r.returncode}; {out.name} present: {out.exists()}; hidden: {len(hidden)} entries"
    assert r.returncode == 9 and not out.exists() and any(".idx.old-" in h for h in hidden)
    with pytest.raises(ConfigError, match="--overwrite"):  # the next write sees the restored index ...
        Index(np.eye(2, dtype=np.float32), ["next", "next2"]).save(out)
    restored = Index.load(out).items
    Index(np.eye(2, dtype=np.float32), ["next", "next2"]).save(out, overwrite=True)  # ... and replaces it on request
    left = sorted(p.name for p in tmp_path.iterdir())
    robust("outputs", "process killed between the two renames of a replace, then the next write",
           "previous output restored (never deleted), temp removed", f"{crashed}; next write found {restored}; "
           f"afterwards the folder lists {left}")
    assert restored == ["old", "old2"] and left == ["idx"] and Index.load(out).items == ["next", "next2"]


def test_legacy_backup_left_by_a_crash_is_restored_not_deleted(tmp_path, robust):
    """edgeclip <= 0.1.0 named its backup ``.NAME.tmp-PID-old`` and its stale clean-up deleted it."""
    from edgeclip.outputs import clean_stale
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(p.stdout)  # a pid that has exited
    backup = tmp_path / f".student.tmp-{dead}-old"
    backup.mkdir()
    (backup / "model.safetensors").write_text("weights")
    assert pid_of(backup, ".student.tmp-") == dead
    clean_stale(tmp_path / "student")
    robust("outputs", "old-format backup (.NAME.tmp-PID-old) found by the next write", "restored to NAME",
           f"folder lists {sorted(x.name for x in tmp_path.iterdir())}")
    assert (tmp_path / "student" / "model.safetensors").read_text() == "weights" and not backup.exists()


def test_check_output_accepts_new_empty_and_same_kind_paths(tmp_path, run):
    (tmp_path / "empty").mkdir()
    (tmp_path / "data" / "shards").mkdir(parents=True)
    assert check_output(tmp_path / "new" / "a", "artifact") == tmp_path / "new" / "a"
    assert check_output(tmp_path / "empty", "artifact") == tmp_path / "empty"
    assert check_output(run / "student", "student", overwrite=True) == run / "student"
    assert output_kind(run) == "run" and output_kind(run / "student") == "student"
    with pytest.raises(ConfigError, match="contains the input"):
        check_output(tmp_path / "data", "run", inputs=["shapes:8", None, f"local-dir:{tmp_path / 'data' / 'shards'}"])


def test_quickstart_refuses_user_folders_and_earlier_runs_before_training(run, user_dir, capsys, robust):
    """quickstart writes a run (student + artifact): its --out obeys the same rule, checked before any training."""
    before = _snapshot(user_dir)
    code, err = _cli(capsys, "quickstart", "--out", user_dir, "--overwrite")
    robust("outputs", "quickstart --out U --overwrite (U holds the user's files)", "refused, exit 2, U untouched",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "not an edgeclip output" in err[0] and _snapshot(user_dir) == before
    before = _snapshot(run)
    code, err = _cli(capsys, "quickstart", "--out", run)
    robust("outputs", "quickstart --out RUN (an earlier run) without --overwrite", "refused, exit 2, RUN untouched",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "--overwrite" in err[0] and _snapshot(run) == before


HOLD = """
import sys, time
from edgeclip.outputs import one_writer
with one_writer(sys.argv[1]):
    print("held", flush=True)
    time.sleep(300)
"""


HOLD_WITH_WORKER = """
import os, sys, time
from edgeclip.outputs import one_writer
with one_writer(sys.argv[1]):
    r, w = os.pipe()
    if os.fork() == 0:  # a forked worker (as DataLoader's) that outlives its parent's kill -9 for a while
        os.write(w, b"up")  # running: the fork's own handlers have run in it
        time.sleep(60)
        os._exit(0)
    os.read(r, 2)
    print("held", flush=True)
    time.sleep(300)
"""


def test_a_writer_killed_with_9_frees_its_output_although_its_forked_worker_lives_on(tmp_path):
    """CI found it: compress killed with -9 left its DataLoader workers alive for a moment, and they held its
    flock (a fork shares the descriptor), so the --resume that followed was refused as a second writer."""
    from edgeclip.outputs import one_writer
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WITH_WORKER, str(out)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.kill()
        holder.wait(timeout=30)
        with one_writer(out):  # the worker still sleeps, its copy of the lock closed at the fork
            pass
    finally:
        os.killpg(holder.pid, 9)


@pytest.mark.slow
def test_a_second_writer_of_the_same_output_is_refused(run, tmp_path, tiny_model, capsys, robust):
    """Two compress runs into one --out used to both exit 0 with their files mixed; now the second is refused
    in one line while the first holds it, and a holder killed with -9 leaves no stale lock behind."""
    from edgeclip.models import save_student
    teacher = save_student(tiny_model, tmp_path / "teacher")
    out, art = tmp_path / "X", tmp_path / "A"
    holders = [subprocess.Popen([sys.executable, "-c", HOLD, str(p)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
               for p in (out, art)]
    try:
        assert [h.stdout.readline().strip() for h in holders] == ["held", "held"]
        code, err = _cli(capsys, "compress", teacher, "--target", "0.12M", "--data", "shapes:32", "--steps", "1",
                         "--batch-size", "8", "--out", out)
        robust("outputs", "compress --out X while another process writes X", "refused, exit 2, nothing written",
               f"exit {code}: {err[-1] if err else ''}")
        assert one_error_line(code, err) and "being written by another edgeclip process" in err[0], err
        assert f"pid {holders[0].pid}" in err[0] and not out.exists()
        code, err = _cli(capsys, "export", run / "student", "--onnx", "--out", art)
        assert one_error_line(code, err) and "being written by another" in err[0] and not art.exists()
    finally:
        for h in holders:
            h.kill()
            h.wait()
    code, err = _cli(capsys, "compress", teacher, "--target", "0.12M", "--data", "shapes:32", "--steps", "1",
                     "--batch-size", "8", "--stages", "1", "--out", out)
    assert code == 0, err  # the killed holder's lock died with it
    assert output_kind(out) == "run" and not (tmp_path / ".X.lock").exists()  # taken over, then removed


@pytest.mark.slow
def test_export_overwrite_refuses_to_delete_a_users_file_inside_the_old_artifact(run, tmp_path, capsys, robust):
    from edgeclip.export import export_artifact
    from edgeclip.models import load_teacher
    art = tmp_path / "art"
    export_artifact(load_teacher(run / "student"), art, ["fp32"])
    (art / "notes.txt").write_text("my measurements")
    before = _snapshot(art)
    code, err = _cli(capsys, "export", run / "student", "--onnx", "--out", art, "--overwrite")
    msg = err[-1] if err else ""
    robust("outputs", "export --overwrite onto an artifact holding a file the user added (notes.txt)",
           "refused in one line naming the file, exit 2, artifact untouched", f"exit {code}: {msg}")
    assert one_error_line(code, err) and "notes.txt" in msg and _snapshot(art) == before
    (art / "notes.txt").unlink()
    assert check_output(art, "artifact", overwrite=True) == art  # only edgeclip's files: replaceable as before
