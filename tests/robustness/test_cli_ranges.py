"""Every option of every subcommand declares its range (``edgeclip.limits``), and every value outside it fails the
same way: exit 2, one error line after argparse's usage, nothing written (issue #26).

The walker reads the real parser, so a new option without a declared range fails ``test_every_option_declares``.
Each bad value runs ``edgeclip.cli.main`` in a forked child (of a single-threaded server process) with a wall-clock
alarm and an address-space limit: an unchecked value that starts real work is killed and fails the test instead of
hanging or exhausting CI.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
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
MEMORY_HEADROOM = 2 << 30  # bytes of address space a case may add to what the server already maps


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
    if r.hi is not None:
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


# Forks happen in a small server of their own, never in the pytest worker: a fork of a process with other threads
# (xdist's, a thread pool a test left behind) can inherit a lock one of them held and hang, which made this test
# flaky. The server imports what the checkers need first, single-threaded, so that each fork is cheap.
SERVER = r"""
import json, os, resource, signal, sys, time, traceback
from edgeclip import cli
import edgeclip.data.augment, edgeclip.data.pairs, edgeclip.distill.losses, edgeclip.models.params  # noqa: F401
timeout, headroom = int(sys.argv[1]), int(sys.argv[2])
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:  # one case: never returns into the loop
        code = 99
        try:
            os.dup2(os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stderr, sys.stdout = os.fdopen(2, "w", buffering=1), open(os.devnull, "w")
            os.chdir(req["cwd"])
            vm = next(int(ln.split()[1]) * 1024 for ln in open("/proc/self/status") if ln.startswith("VmSize:"))
            resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, vm + headroom))
            signal.alarm(timeout)
            code = cli.main(req["argv"])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout + 5
    while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
        time.sleep(0.005)
    if not done[0]:
        os.kill(pid, signal.SIGKILL)
        done = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(done[1])}), flush=True)
"""


@pytest.fixture(scope="module")
def cases():
    """``run(argv, cwd) -> (exit code, stderr)``: ``edgeclip ARGV`` in a fork of the server (alarm + address-space
    limit); a negative code is the signal that killed it."""
    import json
    import subprocess
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(TIMEOUT_S), str(MEMORY_HEADROOM)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(argv: list[str], cwd: Path) -> tuple[int, str]:
        err = cwd.parent / f"err-{time.monotonic_ns()}.txt"
        server.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "err": str(err)}) + "\n")
        server.stdin.flush()
        reply = server.stdout.readline()
        assert reply, "the case server died"
        text = err.read_text() if err.exists() else ""
        err.unlink(missing_ok=True)
        return json.loads(reply)["code"], text
    yield run
    server.stdin.close()
    server.wait(timeout=30)


def names(line: str, action: argparse.Action) -> bool:
    """The error line comes from the option's own check (argparse's ``argument --opt:``, or the settings group's
    check naming the setting: ``--prune-steps=--`` reaches it as []), not from a later failure such as a missing
    file, which would hide an unchecked value."""
    return "argument " + ("/".join(action.option_strings) or action.metavar or action.dest) + ":" in line \
        or f"{action.dest} must be" in line


def error_lines(stderr: str) -> list[str]:
    """stderr without argparse's usage block (its first line starts with 'usage:', the rest are indented)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("usage:", " "))]


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
@settings(max_examples=4, deadline=None, database=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])  # no shrinking: each case is a process
@given(data=st.data())
def test_values_outside_the_range_fail_in_one_line_and_write_nothing(command, data, cases):
    """Each example draws one bad value for every option of the command and runs each one."""
    with tempfile.TemporaryDirectory(prefix="edgeclip-ranges-") as tmp:
        cwd, out = Path(tmp) / "cwd", Path(tmp) / "out"
        cwd.mkdir()
        for action in options(command):
            value = data.draw(bad_values(action), label=action.dest)
            argv = argv_for(command, action, value, out)
            code, stderr = cases(argv, cwd)
            case = f"edgeclip {' '.join(map(repr, argv))}"
            assert code >= 0, f"{case}: killed by signal {-code} (alarm after {TIMEOUT_S} s or memory: not checked)"
            assert code == 2, f"{case}: exit {code}\n{stderr}"
            lines = error_lines(stderr)
            assert len(lines) == 1 and "Traceback" not in stderr and names(lines[0], action), f"{case}: {lines}"
            assert not out.exists() and not any(cwd.iterdir()), f"{case}: wrote {sorted(cwd.iterdir())}"


def listed(action: argparse.Action) -> tuple:
    """The values an option's checker lists as refused (``bad``); an empty string for a free-text option."""
    return tuple(getattr(action.type, "bad", None) or (("",) if isinstance(action.type, Text) else ()))


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in sorted(COMMANDS) if any(map(listed, options(c)))])
def test_every_listed_bad_value_fails_in_one_line(command, robust, cases):
    """The values each checker lists as refused (``bad``), and an empty free-text value, every one of them
    (commands with no such option, e.g. ``edgeclip models``, are not listed: a row of 0 cases would prove nothing)."""
    seen = []
    with tempfile.TemporaryDirectory(prefix="edgeclip-ranges-") as tmp:
        cwd, out = Path(tmp) / "cwd", Path(tmp) / "out"
        cwd.mkdir()
        for action in options(command):
            for value in listed(action):
                argv = argv_for(command, action, value, out)
                code, stderr = cases(argv, cwd)
                case = f"edgeclip {' '.join(map(repr, argv))}"
                lines = error_lines(stderr)
                assert code == 2 and len(lines) == 1 and "Traceback" not in stderr and names(lines[0], action), \
                    f"{case}: exit {code}\n{stderr}"
                assert not out.exists() and not any(cwd.iterdir()), f"{case}: wrote {sorted(cwd.iterdir())}"
                seen.append(f"{action.dest}={value!r}")
    assert seen, f"edgeclip {command}: no case ran"
    robust("cli", f"edgeclip {command}: every listed bad value of every option ({len(seen)} cases)",
           "exit 2, one error line, nothing written", f"{len(seen)} cases, all exit 2 in one line")
