"""compress() checks every argument before anything is loaded or written, and trains what was asked."""
import json

import pytest

from edgeclip.distill import compress
from edgeclip.errors import ConfigError, DataError

TARGET = {"image": 60_000, "text": 60_000}


class _Unloadable:
    """A teacher spec that fails the test if compress ever gets as far as loading it."""
    def __str__(self):
        raise AssertionError("the teacher was loaded before the arguments were checked")


@pytest.mark.parametrize("kwargs,match", [
    ({"steps": 0}, "steps must be an integer from 1"), ({"steps": -5}, "steps must be"),
    ({"lr": -1e-3}, "lr must be a positive finite"), ({"lr": float("nan")}, "lr must be"),
    ({"batch_size": -4}, "batch_size must be an integer from 2"), ({"batch_size": 1}, "affinity loss"),
    ({"epochs": float("nan")}, "epochs must be"), ({"data": "shapes:abc"}, "shapes:N"),
    ({"data": "shapes:-5"}, "shapes:N"), ({"target_params": '{"image": 2M}'}, "not valid JSON"),
    ({"target_params": "nan%"}, "bad parameter budget"), ({"stages": 0}, "stages must be"),
    ({"method": "magic"}, "unknown method"), ({"loss": "affinty=1"}, "unknown loss term 'affinty'"),
    ({"loss": "feature=-1"}, "finite and >= 0"), ({"views": 0}, "views must be an integer from 1"),
    ({"views": 2.5}, "views must be"), ({"shape": "tall"}, "unknown student shape"),
])
def test_bad_arguments_fail_before_loading_or_writing(tmp_path, kwargs, match):
    args = {"teacher": _Unloadable(), "target_params": "25%", "out": tmp_path / "run", **kwargs}
    with pytest.raises((ConfigError, DataError), match=match) as e:
        compress(**args)
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()


def test_one_row_dataset_is_refused(tmp_path, tiny_model):
    with pytest.raises(DataError, match="at least 2"):
        compress(tiny_model, TARGET, data="shapes:1", out=tmp_path / "run", stages=1)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_batch_larger_than_the_data_is_clamped_and_said(tmp_path, tiny_model, capsys):
    res = compress(tiny_model, TARGET, data="shapes:6", steps=3, batch_size=128, stages=1, out=tmp_path / "run",
                   evaluate=False)
    assert "batch size 128 is larger than the 6 pairs in the data; using 6" in capsys.readouterr().err
    assert len(set(res.report["stages"][0]["loss_curve"])) > 1  # the loss moves: it trains


@pytest.mark.slow
def test_steps_split_over_stages_add_up(tmp_path, tiny_model):
    res = compress(tiny_model, TARGET, data="shapes:32", steps=5, batch_size=8, stages=2, out=tmp_path / "run",
                   evaluate=False)
    curves = [s["loss_curve"] for s in res.report["stages"]]
    assert [len(c) for c in curves] == [3, 2]
    with pytest.raises(ConfigError, match="1 steps cannot train the 2 stages"):
        compress(tiny_model, TARGET, data="shapes:32", steps=1, batch_size=8, stages=2, out=tmp_path / "b")


def test_resume_after_changing_the_target_is_one_line(tmp_path, tiny_model):
    compress(tiny_model, TARGET, data="shapes:16", steps=2, batch_size=8, stages=1, out=tmp_path / "run",
             evaluate=False)
    report = (tmp_path / "run" / "report.json").read_bytes()
    with pytest.raises(ConfigError, match="cannot resume from .*another student config") as e:
        compress(tiny_model, {"image": 40_000, "text": 40_000}, data="shapes:16", steps=2, batch_size=8, stages=1,
                 out=tmp_path / "run", resume=True, evaluate=False)
    assert "\n" not in str(e.value)
    assert (tmp_path / "run" / "report.json").read_bytes() == report
    assert json.loads(report)["target_params"] == str(TARGET)


def test_a_non_finite_teacher_object_is_refused(tmp_path, tiny_model):
    import torch

    from edgeclip.errors import NonFiniteError
    with torch.no_grad():
        tiny_model.visual.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="the teacher has non-finite values in 'visual.conv1.weight'"):
        compress(tiny_model, TARGET, data="shapes:16", out=tmp_path / "run", stages=1)
    assert not (tmp_path / "run").exists()


def test_every_loss_term_is_logged_per_step_and_reported(tmp_path, tiny_model):
    res = compress(tiny_model, TARGET, data="shapes:32", steps=4, batch_size=8, stages=1, out=tmp_path / "run",
                   evaluate=False, loss="affinity=1,feature=2000,icl=0.5", views=2)
    st = res.report["stages"][0]
    assert set(st["terms_final"]) == {"affinity", "feature", "icl"}
    assert all(len(c) == 4 for c in st["term_curves"].values())
    w = {"affinity": 1, "feature": 2000, "icl": 0.5}  # the logged loss is the weighted sum of the logged terms
    assert st["final_loss"] == pytest.approx(sum(w[k] * v for k, v in st["terms_final"].items()), rel=1e-5)
    assert res.report["recipe"] == {"loss": {"affinity": 1.0, "feature": 2000.0, "icl": 0.5}, "views": 2,
                                    "shape": "auto"}
    md = (tmp_path / "run" / "report.md").read_text()
    assert "recipe: loss affinity=1,feature=2000,icl=0.5, 2 view(s)" in md and "feature " in md


def test_resume_with_another_loss_is_refused(tmp_path, tiny_model):
    out = tmp_path / "run"
    compress(tiny_model, TARGET, data="shapes:32", steps=2, batch_size=8, stages=1, out=out, evaluate=False,
             loss="affinity=1")
    ckpt = (out / "ckpt" / "stage1.pt").read_bytes()
    for changed in ({"loss": "affinity=1,feature=2000"}, {"views": 2}):
        with pytest.raises(ConfigError, match="another recipe"):
            compress(tiny_model, TARGET, data="shapes:32", steps=4, batch_size=8, stages=1, out=out,
                     evaluate=False, resume=True, **{"loss": "affinity=1", **changed})
    assert (out / "ckpt" / "stage1.pt").read_bytes() == ckpt  # refused before any step
