"""CLI habits: --version, no silent abbreviations, the [train] extra named on a torch-free install, progress bars."""
import subprocess
import sys

import pytest

import edgeclip
from edgeclip.cli import build_parser, main


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"edgeclip {edgeclip.__version__}"


def test_no_parser_accepts_abbreviations():
    p = build_parser()
    subs = next(a for a in p._actions if a.dest == "command").choices
    assert not p.allow_abbrev and subs and all(not q.allow_abbrev for q in subs.values())


@pytest.mark.parametrize("argv", [["compress", "reference", "--target", "25%", "--step", "3"],
                                  ["export", "runs/x", "--onnx", "--out", "a", "--op", "17"],
                                  ["--vers", "models"]])
def test_an_abbreviated_flag_is_an_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_drop_ckpt_flag_reaches_compress():
    a = build_parser().parse_args(["compress", "reference", "--target", "25%", "--drop-ckpt"])
    assert a.drop_ckpt is True
    assert build_parser().parse_args(["compress", "reference", "--target", "25%"]).drop_ckpt is False


def _without_torch(*argv: str) -> subprocess.CompletedProcess:
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeclip.cli import main\n"
            f"sys.exit(main({list(argv)!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_torch_free_install_names_the_train_extra():
    r = _without_torch("info", "ViT-B-32")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["edgeclip info: error: needs the [train] extra (no module 'torch'): "
                                             "pip install 'edgeclip[train]'"]
    h = _without_torch("--help")
    assert h.returncode == 0 and "this install lacks it" in " ".join(h.stdout.split())


def test_eval_shows_progress_bars(tmp_path, tiny_model, capsys):
    from PIL import Image
    for cls, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (40, 40), colour).save(tmp_path / cls / f"{i}.png")
    res = edgeclip.evaluate_model(tiny_model, tmp_path)
    assert res["zero_shot"]["n"] == 6
    err = capsys.readouterr().err
    assert "read images" in err and "embed images" in err and "embed texts" in err


def test_export_and_parity_show_progress_bars(tmp_path, tiny_model, capsys):
    student = edgeclip.save_student(tiny_model, out=tmp_path / "student")
    res = edgeclip.export_artifact(tiny_model, out=tmp_path / "art")
    assert res.out == tmp_path / "art" and res.passed
    err = capsys.readouterr().err
    assert "export" in err and "parity fp32" in err
    assert main(["parity", str(res.out), "--against", str(student)]) == 0
    assert "parity: 100%" in capsys.readouterr().err
