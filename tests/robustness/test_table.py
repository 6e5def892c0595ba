"""docs/robustness.md is written only from recorded observations, each with its test's real outcome, and only when
asked for (``--robustness-doc PATH`` on a whole-suite run): a plain test run never rewrites it."""
import shutil
import subprocess
import sys

import pytest
from pathlib import Path

pytestmark = pytest.mark.slow  # each case runs pytest in a subprocess (~45 s)

CASES = '''
import pytest

def test_passes(robust):
    robust("a", "passes", "ok", "seen 1")
    assert 1 == 1

def test_fails_after_recording(robust):
    robust("a", "fails", "ok", "seen 2")
    assert 2 == 3

def test_skips(robust):
    robust("a", "skips", "ok", "seen 3")
    pytest.skip("no device")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

def test_teardown_fails(robust, broken_teardown):
    robust("a", "teardown", "ok", "seen /tmp/pytest-of-x/abc/f.txt | 4")

def test_fails_before_recording(robust):
    assert 5 == 6, "never got to robust()"
    robust("a", "never", "ok", "seen 5")
'''


def _suite(tmp_path: Path) -> Path:
    (tmp_path / "tests").mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "conftest.py", tmp_path / "tests" / "conftest.py")
    (tmp_path / "tests" / "test_rows.py").write_text(CASES)
    return tmp_path


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_rows_carry_the_real_verdict(tmp_path, workers):
    """Also under pytest-xdist (the README's ``-n auto``): each worker's rows reach the controller's one table."""
    _pytest(_suite(tmp_path), *workers, "tests", "--robustness-doc", "docs/robustness.md")
    lines = (tmp_path / "docs" / "robustness.md").read_text().splitlines()
    assert "`.venv/bin/python -m pytest -q -n auto tests --robustness-doc docs/robustness.md`" in lines[2]
    rows = {ln.split(" | ")[1]: ln for ln in lines if ln.startswith("| a |")}
    lost = [ln for ln in lines if ln.startswith("| unrecorded |")]
    assert "seen 1 | pass (`test_passes`)" in rows["passes"]
    assert "seen 2 | FAIL (`test_fails_after_recording`)" in rows["fails"]
    assert "seen 3 | skipped (`test_skips`)" in rows["skips"]
    assert "seen <tmp>/f.txt \\| 4 | FAIL (`test_teardown_fails`)" in rows["teardown"]
    assert len(lost) == 1 and "| test_fails_before_recording |" in lost[0] and "never got to robust()" in lost[0]
    assert lost[0].endswith("| FAIL (`test_fails_before_recording`) |")


def test_written_only_when_asked_after_a_whole_run(tmp_path):
    """No option: nothing written. The option on a subset (-m, -k, one file): nothing written, and it says so."""
    _suite(tmp_path)
    doc = tmp_path / "docs" / "robustness.md"
    _pytest(tmp_path, "tests")
    assert not doc.exists()
    for subset in (["-m", "not slow", "tests"], ["-k", "passes", "tests"], ["tests/test_rows.py"]):
        r = _pytest(tmp_path, *subset, "--robustness-doc", "docs/robustness.md")
        assert not doc.exists(), subset
        assert "--robustness-doc:" in r.stdout and "not written" in r.stdout, (subset, r.stdout[-1000:])
