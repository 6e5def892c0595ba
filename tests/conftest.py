"""Shared fixtures: tiny seeded models, the reference teacher, and the real-photo folder (skips if absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Under pytest-xdist (the README's ``-n auto``) the cores are shared out among the workers, and the children a test
# starts (CLI runs, benchmarks) inherit the same share through OMP_NUM_THREADS, so two workers never oversubscribe.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = int(os.environ.get("EDGECLIP_TEST_THREADS", max(1, min(2, os.cpu_count() or 1) // WORKERS)))
torch.set_num_threads(THREADS)
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "imagenet-sample-200"
TINY_CFG = {  # a 3-layer CLIP small enough for unit tests to run in milliseconds
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3},
}


@pytest.fixture
def tiny_cfg():
    import copy
    return copy.deepcopy(TINY_CFG)


@pytest.fixture
def tiny_model(tiny_cfg):
    from edgeclip.models import create_model
    return create_model(tiny_cfg, seed=0)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> tuple[Path, Path]:
    """(teacher folder, artifact folder) for the demo: two seeds of the tiny CLIP, the student exported to ONNX."""
    from edgeclip.export import export_onnx
    from edgeclip.models import create_model, save_student
    d = tmp_path_factory.mktemp("demo")
    save_student(create_model(TINY_CFG, seed=0), d / "teacher")
    export_onnx(create_model(TINY_CFG, seed=1), d / "artifact")
    return d / "teacher", d / "artifact"


@pytest.fixture(scope="session")
def reference_teacher():
    from edgeclip.models import REFERENCE_TEACHER, load_teacher
    if not (REFERENCE_TEACHER / "model.safetensors").is_file():
        pytest.skip("the reference teacher checkpoint is not in this checkout")
    return load_teacher("reference")


@pytest.fixture(scope="session")
def photos_dir():
    if not (PHOTOS / "manifest.csv").is_file():
        pytest.skip(f"real photos not found at {PHOTOS} (../shared/data/imagenet-sample-200)")
    return PHOTOS


def run_cli(*args, timeout: int = 600) -> tuple[int, list[str]]:
    """Run ``edgeclip ARGS`` in a subprocess: (exit code, error lines of stderr — tqdm bars left out)."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "edgeclip.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, [ln for ln in r.stderr.splitlines() if "error" in ln.lower() or "Traceback" in ln]


def own_process(request, **env: str) -> bool:
    """Run this test again in a fresh interpreter and return True (the caller then returns); in that child, False.

    For the native runtimes a device application would run in a process of its own (OpenVINO, ExecuTorch, the
    LiteRT interpreter): piled up in one long-lived pytest worker over the suite, with its forks, they crashed it
    (OpenVINO: SIGSEGV while waiting on a CLI subprocess). A crash in the child is this test's failure, with the
    child's output (faulthandler's stack included), never a dead worker. ``env`` goes to the child, e.g. the path
    of an artifact the parent's module fixture already built.
    """
    import subprocess
    import sys
    if os.environ.get("EDGECLIP_TEST_CHILD") == request.node.nodeid:
        return False
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
                       cwd=ROOT, env={**os.environ, **env, "EDGECLIP_TEST_CHILD": request.node.nodeid},
                       capture_output=True, text=True, timeout=900)
    if r.returncode == 0 and " skipped" in r.stdout and " passed" not in r.stdout:
        pytest.skip(next((ln for ln in r.stdout.splitlines() if ln.startswith("SKIPPED")), "skipped in the child"))
    if r.returncode < 0:  # killed by a signal: faulthandler's stack is in stderr, under its first line
        import signal
        why, at = f"killed by {signal.Signals(-r.returncode).name}", r.stderr.find("Fatal Python error")
        err = r.stderr[at:at + 3000] if at >= 0 else r.stderr[-2000:]
    else:
        why, err = f"exit {r.returncode}", r.stderr[-2000:]
    assert r.returncode == 0 and " passed" in r.stdout, f"in its own process ({why}):\n{r.stdout[-3000:]}\n{err}"
    return True


NATIVE_RUNTIMES = ("openvino", "executorch", "coremltools", "ai_edge_litert")  # only ever in own_process children


@pytest.fixture(autouse=True)
def _native_runtimes_stay_out_of_the_worker(request):
    """Fails the test that first loads one of NATIVE_RUNTIMES into a pytest worker (see ``own_process``)."""
    import sys
    before = {m for m in NATIVE_RUNTIMES if m in sys.modules}
    yield
    if os.environ.get("EDGECLIP_TEST_CHILD") != request.node.nodeid:
        loaded = sorted({m for m in NATIVE_RUNTIMES if m in sys.modules} - before)
        assert not loaded, f"this test loaded {loaded} into the pytest process: run it through own_process(request)"


def rehash(art, **changes):
    """Rewrite an artifact's manifest as if the export had written its folder as it is now (every file re-hashed;
    ``changes`` set on the ``Manifest``): how a test makes a tampered file look exported, so that the check after
    the hashes must catch it. Through the manifest's one writer."""
    from edgeclip.artifact.manifest import hash_folder, read_manifest, write_manifest
    m = read_manifest(art)
    for k, v in changes.items():
        setattr(m, k, v)
    m.files = hash_folder(art)
    write_manifest(art, m)
    return m


def one_error_line(code: int, err: list[str]) -> bool:
    """The CLI's contract for user errors: exit 2 and exactly one error line, no traceback."""
    return code == 2 and len(err) == 1 and "Traceback" not in err[0]


# --- robustness table: tests record (case, expected, observed); a whole-suite run given --robustness-doc PATH
# writes the table to PATH (docs/robustness.md: ROBUSTNESS_COMMAND). A row holds what the test observed (the value
# its assertions check) and the verdict pytest gave that test: rows are only ever written from here, never typed
# into the doc. Without the option nothing is written, so a test run never edits a tracked file as a side effect.
ROBUSTNESS_ROWS: dict[str, list] = {}
ROBUSTNESS_COMMAND = ".venv/bin/python -m pytest -q -n auto tests --robustness-doc docs/robustness.md"


def pytest_addoption(parser):
    parser.addoption("--robustness-doc", metavar="PATH", default=None,
                     help="after a run of the whole suite (no -k / -m / file subsets), write the robustness table "
                          "the tests recorded to PATH (docs/robustness.md: `%s`)" % ROBUSTNESS_COMMAND)


@pytest.fixture
def robust(request):
    """``robust(area, case, expected, observed)`` adds a row to docs/robustness.md for this test.

    ``observed`` must be the value the test's assertions check (a message, a count, a timing), so that the row and
    the verdict cannot disagree; the verdict column is filled in from the test's outcome.
    """
    def record(area: str, case: str, expected: str, observed: str) -> None:
        ROBUSTNESS_ROWS.setdefault(request.node.nodeid, []).append(
            {"area": area, "case": _scrub(case), "expected": expected, "observed": _scrub(observed), "verdict": None})
    return record


def _scrub(text: str) -> str:
    """Observed messages are quoted verbatim, minus machine-specific temp paths and table-breaking pipes."""
    import re
    text = re.sub(r"/tmp/[^\s'\"]*/([^/\s'\"]*)", r"<tmp>/\1", str(text))
    return " ".join(text.split()).replace("|", "\\|")[:300]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """The verdict of each row is its test's outcome: a failure in setup, call or teardown makes it FAIL."""
    rep = (yield).get_result()
    if rep.failed and "robust" in getattr(item, "fixturenames", ()) and item.nodeid not in ROBUSTNESS_ROWS:
        # failed before it recorded anything: the case still shows, as a failure, instead of vanishing
        text = rep.longreprtext.strip().splitlines() or ["?"]
        last = next((ln[1:].strip() for ln in text if ln.startswith("E ")), text[-1])  # pytest's 'E   msg' line
        ROBUSTNESS_ROWS[item.nodeid] = [{"area": "unrecorded", "case": item.name, "expected": "-",
                                         "observed": _scrub(f"failed before recording: {last}"), "verdict": None}]
    for row in ROBUSTNESS_ROWS.get(item.nodeid, []):
        if rep.failed:
            row["verdict"] = "FAIL"
        elif rep.when == "call" and row["verdict"] != "FAIL":
            row["verdict"] = ("xfail" if rep.skipped else "XPASS") if hasattr(rep, "wasxfail") else \
                "pass" if rep.passed else "skipped"


EXPORT_CACHE = "EDGECLIP_TEST_EXPORT_CACHE"  # shared by the workers and the pytest children they start


def pytest_configure(config):
    import tempfile
    if not hasattr(config, "workerinput"):  # the controller (or a plain run): workers hand their rows in here
        config.robust_dir = tempfile.mkdtemp(prefix="edgeclip-robustness-")
        if EXPORT_CACHE not in os.environ and not os.environ.get("EDGECLIP_TEST_NO_EXPORT_CACHE"):
            config.export_cache = os.environ[EXPORT_CACHE] = tempfile.mkdtemp(prefix="edgeclip-export-cache-")
    elif config.workerinput.get("export_cache"):
        os.environ[EXPORT_CACHE] = config.workerinput["export_cache"]
    if os.environ.get(EXPORT_CACHE):
        _cache_onnx_exports(Path(os.environ[EXPORT_CACHE]))


def _cache_onnx_exports(root: Path, max_bytes: int = 64 << 20) -> None:
    """Reuse ``torch.onnx.export``'s output for a module already exported in this test run.

    Why: the dynamo exporter takes ~20 s for the 4-layer test CLIP, and the suite exports the same seeded models
    dozens of times (fixtures of each worker, OpenVINO's child processes, CLI tests in-process). The key is
    everything the exporter reads: each submodule's class and plain attributes, every parameter and buffer,
    the example input, names and opset. A miss runs the real exporter and keeps its files; a test that wants a
    fresh export can set EDGECLIP_TEST_NO_EXPORT_CACHE=1. Subprocess runs (the CLI, kill tests) never use it.
    """
    import hashlib
    import shutil
    import tempfile

    import edgeclip.export.onnx_export as ox
    real = ox.trace_to_onnx

    def key(module, example, path, in_name, out_name, opset) -> str | None:
        h, size = hashlib.sha256(f"{torch.__version__}|{path.name}|{in_name}|{out_name}|{opset}".encode()), 0
        for name, m in module.named_modules():
            plain = {k: v for k, v in vars(m).items() if isinstance(v, (int, float, str, bool, tuple, type(None)))}
            h.update(f"{name}:{type(m).__qualname__}:{sorted(plain.items(), key=str)}".encode())
        for name, t in [*module.named_parameters(), *module.named_buffers(), ("example", example)]:
            t = t.detach().contiguous().cpu()
            size += t.numel() * t.element_size()
            if size > max_bytes:
                return None  # ViT-B-32-sized: the copy would cost more than it saves
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def cached(module, example, path, in_name, out_name, opset) -> None:
        k = key(module, example, path, in_name, out_name, opset)
        files = [path.name, f"{path.name}.data"]
        hit = root / k if k else None
        if hit is not None and hit.is_dir():
            for f in files:
                if (hit / f).is_file():
                    shutil.copyfile(hit / f, path.parent / f)
            return
        real(module, example, path, in_name, out_name, opset)
        if hit is None:
            return
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
        for f in files:
            if (path.parent / f).is_file():
                shutil.copyfile(path.parent / f, tmp / f)
        try:
            tmp.rename(hit)  # atomic: another worker may have stored the same export meanwhile
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)

    ox.trace_to_onnx = cached


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist: tell each worker where to leave its robustness rows for the controller, and where the
    export cache is."""
    node.workerinput["robust_dir"] = node.config.robust_dir
    node.workerinput["export_cache"] = getattr(node.config, "export_cache", None)


def pytest_sessionfinish(session, exitstatus):
    """With ``--robustness-doc PATH``, write the robustness table to PATH after a run of the whole suite (not after
    -k / -m / single-file runs); without it, write nothing.

    An xdist worker writes its rows to the controller's folder; the controller merges them and writes the doc."""
    import json
    import shutil
    worker = getattr(session.config, "workerinput", None)
    if worker is not None:
        Path(worker["robust_dir"], f"{worker['workerid']}.json").write_text(json.dumps(ROBUSTNESS_ROWS))
        return
    for f in sorted(Path(session.config.robust_dir).glob("*.json")):
        ROBUSTNESS_ROWS.update(json.loads(f.read_text()))
    shutil.rmtree(session.config.robust_dir, ignore_errors=True)
    if getattr(session.config, "export_cache", None):
        shutil.rmtree(session.config.export_cache, ignore_errors=True)
    opt = session.config.option
    if not opt.robustness_doc:
        return
    doc = session.config.invocation_params.dir / opt.robustness_doc  # relative to where pytest was started
    whole = [Path(a).resolve() for a in session.config.args] == [Path(__file__).resolve().parent]
    if not ROBUSTNESS_ROWS or opt.keyword or opt.markexpr or not whole:
        why = "it is written only after a run of the whole suite (no -k / -m / file subsets)" \
            if opt.keyword or opt.markexpr or not whole else "no rows were recorded"
        session.config.robustness_note = f"--robustness-doc: {doc} not written: {why}"
        return
    from edgeclip.outputs import write_text
    rows = sorted(((r, node) for node, rs in ROBUSTNESS_ROWS.items() for r in rs),
                  key=lambda x: (x[0]["area"], x[0]["case"]))
    lines = ["# Robustness", "",
             f"Generated by the test run (`{ROBUSTNESS_COMMAND}`) from what the tests observed; every row is "
             "recorded by the named test next to the assertion that checks it, and its verdict is that test's "
             "outcome. Temp paths are shortened to `<tmp>`.", "",
             "| area | case | expected | observed | verdict (test) |", "|---|---|---|---|---|"]
    lines += [f"| {r['area']} | {r['case']} | {r['expected']} | {r['observed']} | "
              f"{r['verdict'] or 'no verdict'} (`{node.split('::', 1)[-1]}`) |" for r, node in rows]
    write_text(doc, "\n".join(lines) + "\n")


def pytest_terminal_summary(terminalreporter, config):
    """Says why ``--robustness-doc`` wrote nothing (runs after ``pytest_sessionfinish``, below the progress)."""
    if getattr(config, "robustness_note", None):
        terminalreporter.write_line(config.robustness_note, yellow=True)
