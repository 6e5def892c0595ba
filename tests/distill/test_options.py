"""compress's settings groups (Recipe, Schedule, RunConfig): one check each, the same objects from Python, the CLI
and a --config file, recorded in run.json and report.json so that a run repeats from its folder."""
import json

import pytest

from conftest import one_error_line
from edgeclip.distill import Recipe, RunConfig, Schedule, compress
from edgeclip.distill.options import Settings, read_config
from edgeclip.errors import ConfigError

TARGET = {"image": 60_000, "text": 60_000}


@pytest.mark.parametrize("make,match", [
    (lambda: Schedule(seed=-1), "seed must be an integer from 0"),
    (lambda: Schedule(steps=0), "steps must be an integer from 1"),
    (lambda: Schedule(lr=float("inf")), "lr must be a positive finite"),
    (lambda: Recipe(loss="affinity=1,affinity=2"), "loss term 'affinity' is given twice"),
    (lambda: Recipe(method="magic"), "unknown method 'magic'"),
    (lambda: Recipe(stages=0), "stages must be"),
    (lambda: Recipe(tie_layers="no"), "tie_layers must be true or false"),
    (lambda: RunConfig(precision="bf16"), "precision bf16 is for CUDA"),
    (lambda: RunConfig(workers=-1), "workers must be an integer >= 0"),
    (lambda: RunConfig(decode="tpu"), "unknown decode 'tpu'"),
])
def test_each_group_checks_itself_in_one_line(make, match):
    with pytest.raises(ConfigError, match=match) as e:
        make()
    assert "\n" not in str(e.value)


def test_a_keyword_that_is_no_setting_is_a_type_error_with_a_suggestion(tmp_path):
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'step' \(did you mean 'steps'\?\)"):
        compress("reference", "25%", data="shapes", out=tmp_path / "r", step=3)
    assert not (tmp_path / "r").exists()
    both = Settings(schedule=Schedule(steps=5, seed=2)).with_flat(steps=3)  # flat keywords go on top of a group
    assert (both.schedule.steps, both.schedule.seed) == (3, 2)
    Settings().with_flat(hf=True, views=2).cross_check()
    with pytest.raises(ConfigError, match="augmented views are made on the CPU"):
        Settings().with_flat(decode="gpu", views=2).cross_check()


def test_run_json_and_report_record_the_settings_and_the_cli_repeats_a_run_from_them(tmp_path, tiny_model,
                                                                                     capsys):
    from edgeclip.cli import main
    from edgeclip.models import save_student
    recipe, schedule = Recipe(stages=1, loss="affinity=1,feature=100"), Schedule(steps=2, batch_size=8, seed=3)
    res = compress(tiny_model, TARGET, data="shapes:16", out=tmp_path / "a", recipe=recipe, schedule=schedule,
                   evaluate=False, workers=0)
    want = Settings(recipe, schedule, RunConfig(evaluate=False, workers=0))
    run_json = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run_json["edgeclip_output"] == "run" and run_json["target_params"] == TARGET
    assert res.report["settings"] == want.to_dict() and res.report["settings"]["schedule"]["seed"] == 3
    assert read_config(tmp_path / "a" / "run.json") == want  # the folder holds what repeats it

    save_student(tiny_model, tmp_path / "teacher")
    code = main(["compress", str(tmp_path / "teacher"), "--target", json.dumps(TARGET), "--data", "shapes:16",
                 "--config", str(tmp_path / "a" / "run.json"), "--steps", "1", "--no-teacher-cache",
                 "--workers", "100000", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 0, err
    again = read_config(tmp_path / "b" / "run.json")
    assert again.recipe == recipe and again.schedule == Schedule(steps=1, batch_size=8, seed=3)  # a flag wins
    assert again.run.cache_teacher is False and again.run.evaluate is False
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["teacher_cache"] == {"hits": 0, "misses": 8}  # --no-teacher-cache: the teacher ran each step
    import os
    cores = len(os.sched_getaffinity(0))
    assert f"note: 100000 workers asked for; this machine has {cores} cores, using {cores}" in err
    assert report["workers"] == cores


@pytest.mark.parametrize("flags,match", [
    (["--seed", "-1"], "seed must be an integer from 0"),
    (["--loss", "affinity=1,affinity=2"], "given twice"),
    (["--workers", "-2"], "workers must be an integer >= 0"),
    (["--config", "CONFIG"], "schedule has no setting 'step'"),
])
def test_bad_settings_on_the_cli_are_one_line_and_write_nothing(tmp_path, flags, match, robust, capsys):
    from edgeclip.cli import main
    (tmp_path / "c.json").write_text(json.dumps({"schedule": {"step": 3}}))
    flags = [str(tmp_path / "c.json") if f == "CONFIG" else f for f in flags]
    try:
        code = main(["compress", "reference", "--target", "25%", "--data", "shapes:16", *flags,
                     "--out", str(tmp_path / "out")])
    except SystemExit as e:  # argparse's own usage error (after its usage lines)
        code = e.code
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln.lower() or "Traceback" in ln]
    robust("cli", f"compress {' '.join(flags)}", "exit 2, one line, nothing written",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and match in err[0], (code, err)
    assert not (tmp_path / "out").exists()


def test_compress_help_names_the_groups_defaults(capsys):
    from edgeclip.cli import main
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:"):]  # past the usage line
    for flag, default in (("--steps", Schedule.steps), ("--batch-size", Schedule.batch_size),
                          ("--prune-steps", Recipe.prune_steps), ("--method", Recipe.method),
                          ("--depth", Recipe.depth), ("--width", Recipe.width), ("--seed", Schedule.seed),
                          ("--device", RunConfig.device)):
        shown = text[text.index(flag + " "):][:400]
        assert f"default {default})" in shown or f"{default} (the default)" in shown, (flag, shown)
