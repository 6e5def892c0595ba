import subprocess
import sys

from edgeclip.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    for c in COMMANDS:
        assert c in out


def test_info_prints_the_parameter_table(capsys):
    assert main(["info", "ViT-B-32"]) == 0
    out = capsys.readouterr().out
    assert "87,849,216" in out and "token embedding" in out


def test_bad_model_is_one_line_and_exit_2():
    r = subprocess.run([sys.executable, "-m", "edgeclip.cli", "info", "not-a-model"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown model" in r.stderr
