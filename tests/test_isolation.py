"""The suite's own guards: a native crash in an ``own_process`` test fails that test with its stack (the worker
lives on), and a test that loads a native runtime into the pytest process is named."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs pytest with a crashing child in a subprocess (~25 s)

CASES = '''
import ctypes, os, sys, types
from conftest import own_process

def test_crashes_in_its_child(request):
    if own_process(request):
        return
    ctypes.string_at(0)  # SIGSEGV, in the child only

def test_runs_after_the_crash():
    assert os.getpid()

def test_loads_a_native_runtime_here():
    sys.modules["openvino"] = types.ModuleType("openvino")  # as ``import openvino`` would
'''


def test_a_crash_in_a_child_fails_one_test_and_a_native_runtime_in_the_worker_is_named(tmp_path):
    (tmp_path / "tests").mkdir()
    shutil.copy(Path(__file__).resolve().parent / "conftest.py", tmp_path / "tests" / "conftest.py")
    (tmp_path / "tests" / "test_cases.py").write_text(CASES)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "tests"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = r.stdout
    assert "worker 'gw" not in out and "node down" not in out, out[-3000:]  # no worker died
    assert "FAILED tests/test_cases.py::test_crashes_in_its_child" in out, out[-3000:]
    assert "in its own process (killed by SIGSEGV)" in out and "Fatal Python error: Segmentation fault" in out
    assert "ERROR tests/test_cases.py::test_loads_a_native_runtime_here" in out
    assert "this test loaded ['openvino'] into the pytest process" in out
    assert "1 failed, 2 passed, 1 error" in out, out[-2000:]
