"""compress's report: checkpoint size and --drop-ckpt, PNG plots beside report.md (or a word when matplotlib is
missing), and one kept progress line per stage."""
import json
import re
import sys

import pytest

from edgeclip.distill import compress
from edgeclip.distill.report import report_markdown, write_plots

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_compress_reports_checkpoints_drops_them_on_request_and_plots(tmp_path, tiny_model, capsys):
    run = tmp_path / "run"
    compress(tiny_model, {"image": 60_000, "text": 60_000}, data="shapes:64", steps=4, batch_size=16, out=run,
             stages=1, ckpt_every=2, keep_ckpt=False)
    rep = json.loads((run / "report.json").read_text())
    assert rep["ckpt"]["kept"] is False and rep["ckpt"]["bytes"] > 0 and not (run / "ckpt").exists()
    assert (run / "student" / "model.safetensors").is_file()
    md = (run / "report.md").read_text()
    assert f"({rep['ckpt']['bytes'] / 1e6:.0f} MB) deleted" in md
    for name in ("loss.png", "metrics.png"):  # metrics: ShapesWorld runs are evaluated
        assert (run / name).read_bytes()[:8] == PNG and f"]({name})" in md
    assert rep["stages"][0]["loss_steps"][0] == 1
    st = rep["stages"][0]  # loss.png draws each term against the loss curve's steps
    assert set(st["term_curves"]) == set(rep["recipe"]["loss"])
    assert {len(c) for c in st["term_curves"].values()} == {len(st["loss_curve"])}
    err = capsys.readouterr().err  # the stage's bar is left on screen: its last state ends with a newline
    assert re.search(r"stage 1/1: 100%[^\r\n]*4/4[^\r\n]*\n", err), err[-400:]


def test_kept_checkpoints_are_named_with_their_size():
    r = {"teacher": {"params": _p(10)}, "student": {"params": _p(5)}, "method": "manual", "data": "x", "wall_s": 60,
         "plan": ["one"], "stages": [], "ckpt": {"path": "run/ckpt", "bytes": 298_000_000, "kept": True}}
    assert "`ckpt/` (298 MB) kept for `--resume`" in report_markdown(r)


def test_without_matplotlib_the_report_says_so(tmp_path, monkeypatch):
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.pyplot"):  # as if not installed, even if loaded
        monkeypatch.setitem(sys.modules, mod, None)
    r = {"stages": [{"stage": 1, "loss_curve": [2.0, 1.0], "loss_steps": [1, 2]}]}
    plots = write_plots(r, tmp_path)
    assert plots == {"skipped": "not drawn: matplotlib is not installed (pip install matplotlib)"}
    assert not any(tmp_path.iterdir())
    md = report_markdown({"teacher": {"params": _p(10)}, "student": {"params": _p(5)}, "method": "m", "data": "d",
                          "wall_s": 1, "plan": ["p"], "stages": [], "plots": plots})
    assert "plots: not drawn: matplotlib is not installed" in md and "![" not in md


def _p(n: int) -> dict:
    return {"vision": n, "text": n, "token_embedding": n, "total": 3 * n}
