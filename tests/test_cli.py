import argparse
import subprocess
import sys

import pytest

from edgeclip.cli import build_parser, main

DOCUMENTED = ["compress", "export", "parity", "eval", "demo", "quickstart", "info", "models"]  # the README's commands


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    """The subparsers the CLI really registers (not words of its description)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_documented_command_is_registered_and_listed(capsys):
    assert set(DOCUMENTED) <= set(_subcommands())
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    listed = capsys.readouterr().out.split("positional arguments:")[1]
    assert e.value.code == 0
    assert all(f"\n    {c} " in listed or f"\n    {c}\n" in listed for c in _subcommands())


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_each_command_has_help_on_every_flag(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith(f"usage: edgeclip {command}")
    undocumented = [a.dest for a in _subcommands()[command]._actions if not a.help]
    assert not undocumented, f"flags without help=: {undocumented}"


def test_info_prints_the_parameter_table(capsys):
    assert main(["info", "ViT-B-32"]) == 0
    out = capsys.readouterr().out
    assert "87,849,216" in out and "token embedding" in out


@pytest.mark.slow
def test_bad_model_is_one_line_and_exit_2():
    r = subprocess.run([sys.executable, "-m", "edgeclip.cli", "info", "not-a-model"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown model" in r.stderr
