"""Every option of every subcommand declares its range (``edgeclip.limits``), and every value outside it fails the
same way: exit 2, one error line after argparse's usage, nothing written (issue #26).

The walker reads the real parser, so a new option without a declared range fails ``test_every_option_declares``.
Each bad value runs ``edgeclip.cli.main`` in a forked child with a wall-clock alarm and an address-space limit: an
unchecked value that starts real work is killed and fails the test instead of hanging or exhausting CI.
"""
from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from edgeclip import cli
from edgeclip.limits import Range, RangeList, Text

PARSER = cli.build_parser()
COMMANDS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices
# the smallest valid command line of each subcommand (without --out: every case adds its own)
BASE = {"compress": ["reference", "--target", "25%"], "teach": ["reference", "--data", "shapes:8"],
        "prepare": ["--data", "shards.tar"], "eval": ["reference"], "info": ["reference"], "models": [],
        "export": ["reference"], "parity": ["art", "--against", "reference"], "bench": ["art"], "demo": [],
        "quickstart": []}
TIMEOUT_S = 20            # a refused value answers in well under a second; an accepted one starts real work
MEMORY_HEADROOM = 2 << 30  # bytes of address space a case may add to what the parent already maps


def options(command: str) -> list[argparse.Action]:
    """Every action of ``command`` that takes a value (flags and --help take none)."""
    return [a for a in COMMANDS[command]._actions if a.nargs != 0]


def declared(action: argparse.Action) -> bool:
    t = action.type
    return action.choices is not None or isinstance(t, (Range, RangeList, Text)) or hasattr(t, "bad")


def test_every_subcommand_has_a_base_command_line():
    assert sorted(BASE) == sorted(COMMANDS), "add the new subcommand's smallest valid arguments to BASE"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_declares_its_range(command):
    """A numeric option needs a ``limits.Range``, an enumerated one ``choices``, a free one ``limits.Text``."""
    missing = [a.dest for a in options(command) if not declared(a)]
    assert not missing, f"edgeclip {command}: options without a declared range or choice: {missing}"


def _outside(r: Range):
    """Strings that are not a number of ``r``'s kind inside [lo, hi]."""
    below = (st.integers(max_value=int(r.lo) - 1) if r.kind is int
             else st.floats(max_value=r.lo, exclude_max=True, allow_nan=False, allow_infinity=False))
    words = st.sampled_from(["", " ", "nan", "inf", "-inf", "abc", "1e3x", "0x10", "--"])
    parts = [below.map(repr), words]
    if r.hi is not None and not r.capped:
        parts.append((st.integers(min_value=int(r.hi) + 1) if r.kind is int
                      else st.floats(min_value=r.hi, exclude_min=True, allow_infinity=False)).map(repr))
    if r.kind is int:
        parts.append(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)).map(repr))
    return st.one_of(parts)


def bad_values(action: argparse.Action):
    t = action.type
    if action.choices is not None:
        ok = {str(c) for c in action.choices}
        return st.text(max_size=12).filter(lambda s: s not in ok)
    if isinstance(t, Range):
        return _outside(t)
    if isinstance(t, RangeList):
        good = st.integers(min_value=int(t.item.lo), max_value=int(t.item.hi or t.item.lo + 8)).map(str)
        return st.tuples(st.lists(good, max_size=3), _outside(t.item), st.lists(good, max_size=3)).map(
            lambda p: ",".join([*p[0], p[1], *p[2]]))
    if isinstance(t, Text):
        return st.sampled_from(["", " ", "\t"])
    return st.sampled_from(t.bad)


def argv_for(command: str, action: argparse.Action, value: str, out: Path) -> list[str]:
    """The base command line with ``value`` given to ``action`` (``--opt=value``: a value may start with '-')."""
    base = list(BASE[command])
    if not action.option_strings:  # the (first) positional
        base[base.index(next(b for b in base if not b.startswith("-")))] = value
        opt = []
    else:
        opt = [f"{action.option_strings[0]}={value}"]
        if action.option_strings[0] in base:  # a required option of the base: replace its value
            i = base.index(action.option_strings[0])
            del base[i:i + 2]
    has_out = any(a.option_strings == ["--out"] for a in options(command))
    outs = ["--out", str(out)] if has_out and action.option_strings != ["--out"] else []
    return [command, *base, *outs, *opt]


def run_forked(argv: list[str], cwd: Path) -> tuple[int, str]:
    """``edgeclip ARGV`` in a forked child (alarm + address-space limit); (exit code, stderr). -9: killed."""
    err = cwd.parent / f"err-{os.getpid()}-{time.monotonic_ns()}.txt"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            os.chdir(cwd)
            vm = next(int(ln.split()[1]) * 1024 for ln in open("/proc/self/status") if ln.startswith("VmSize:"))
            resource.setrlimit(resource.RLIMIT_AS, (vm + MEMORY_HEADROOM, vm + MEMORY_HEADROOM))
            signal.alarm(TIMEOUT_S)
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + TIMEOUT_S + 5
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9, err.read_text() if err.exists() else ""
        time.sleep(0.01)
    text = err.read_text()
    err.unlink()
    return (os.waitstatus_to_exitcode(status)), text


def error_lines(stderr: str) -> list[str]:
    """stderr without argparse's usage block (its first line starts with 'usage:', the rest are indented)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("usage:", " "))]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@settings(max_examples=4, deadline=None, database=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])  # no shrinking: each case is a process
@given(data=st.data())
def test_values_outside_the_range_fail_in_one_line_and_write_nothing(command, data):
    """Each example draws one bad value for every option of the command and runs each one."""
    with tempfile.TemporaryDirectory(prefix="edgeclip-ranges-") as tmp:
        cwd, out = Path(tmp) / "cwd", Path(tmp) / "out"
        cwd.mkdir()
        for action in options(command):
            value = data.draw(bad_values(action), label=action.dest)
            argv = argv_for(command, action, value, out)
            code, stderr = run_forked(argv, cwd)
            case = f"edgeclip {' '.join(map(repr, argv))}"
            assert code >= 0, f"{case}: killed by signal {-code} (alarm after {TIMEOUT_S} s or memory: not checked)"
            assert code == 2, f"{case}: exit {code}\n{stderr}"
            lines = error_lines(stderr)
            assert len(lines) == 1 and "Traceback" not in stderr, f"{case}: {lines}"
            assert not out.exists() and not any(cwd.iterdir()), f"{case}: wrote {sorted(cwd.iterdir())}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_listed_bad_value_fails_in_one_line(command, robust):
    """The values each checker lists as refused (``bad``), and an empty free-text value, every one of them."""
    seen = []
    with tempfile.TemporaryDirectory(prefix="edgeclip-ranges-") as tmp:
        cwd, out = Path(tmp) / "cwd", Path(tmp) / "out"
        cwd.mkdir()
        for action in options(command):
            listed = getattr(action.type, "bad", None) or (("",) if isinstance(action.type, Text) else ())
            for value in listed:
                argv = argv_for(command, action, value, out)
                code, stderr = run_forked(argv, cwd)
                case = f"edgeclip {' '.join(map(repr, argv))}"
                assert code == 2 and len(error_lines(stderr)) == 1 and "Traceback" not in stderr, \
                    f"{case}: exit {code}\n{stderr}"
                assert not out.exists() and not any(cwd.iterdir()), f"{case}: wrote {sorted(cwd.iterdir())}"
                seen.append(f"{action.dest}={value!r}")
    robust("cli", f"edgeclip {command}: every listed bad value of every option ({len(seen)} cases)",
           "exit 2, one error line, nothing written", f"{len(seen)} cases, all exit 2 in one line")
