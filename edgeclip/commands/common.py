"""What several subcommands share: argparse value types, open_clip's CSV flags, model specs, the parity verdict."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import limits
from ..errors import EdgeClipError, ParityError
from ..limits import Text

# The shared ImageNet sample beside the checkout (../shared); without it parity runs on ShapesWorld scenes alone.
SHARED_PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet-sample-200"


def photos_default() -> str | None:
    """Default of the --images flags: the shared photo sample when this checkout has one."""
    return str(SHARED_PHOTOS) if SHARED_PHOTOS.is_dir() else None


TEXT = Text("a non-empty value")  # paths and model specs: what they name is checked when opened


def stages(value: str):
    """argparse type of --stages: 'auto' or a number of stages (``limits.STAGES``)."""
    if value == "auto":
        return value
    try:
        return limits.STAGES.parse(value)
    except EdgeClipError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or {limits.STAGES.describe()}, got {value!r}") from None


stages.bad = ("", "0", "-1", "17", "1.5", "x", "Auto", "nan")  # what tests/robustness/test_cli_ranges.py tries


class checked:
    """argparse type that runs one of edgeclip's own checkers on the string (its one-line error becomes argparse's)
    and keeps the string: the checker stays the only home of the rule. ``bad``: values it refuses (for the tests
    that walk every option)."""

    def __init__(self, check, bad: tuple[str, ...] = ("",)):
        self.check, self.bad = check, bad

    def __call__(self, value: str) -> str:
        try:
            self.check(value)
        except EdgeClipError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value


def _check_budget(value: str) -> None:
    """--target: the one budget parser (``%`` is resolved once the teacher is loaded)."""
    from ..models.params import budget_spec
    budget_spec(value)


budget = checked(_check_budget, bad=("", "0", "-8M", "abc", "nan", "150%", "0%", '{"image": "x"}'))
device = checked(limits.check_device_name, bad=("", "gpu", "cuda:", "cuda:-1", "cuda:x", "cpu:0"))


def spec_path(spec):
    """The folder a model spec reads ('reference' is the shipped teacher), for check_output's inputs."""
    from ..models import REFERENCE_TEACHER
    return REFERENCE_TEACHER if spec in (None, "reference") else spec


def load_model(spec, pretrained):
    """``--model NAME --pretrained FILE`` as open_clip takes them (a folder or 'reference' needs no file)."""
    from ..models import load_teacher
    return load_teacher(spec, pretrained=pretrained)


def add_csv_flags(q) -> None:
    """open_clip's CSV flags, same names and defaults (the separator is sniffed when not given)."""
    q.add_argument("--csv-separator", type=TEXT, default=None, help="CSV separator (default: sniffed among tab, comma, "
                   "semicolon and pipe, else tab as open_clip); '\\t' means tab")
    q.add_argument("--csv-img-key", type=TEXT, default="filepath", help="CSV column of image paths (default: filepath)")
    q.add_argument("--csv-caption-key", type=TEXT, default="title", help="CSV column of captions (default: title)")


def csv_data(a, data):
    """A CSV path becomes a CsvPairs read with the --csv-* flags; anything else is passed on as it is."""
    if data is None or not Path(str(data)).is_file() or Path(str(data)).suffix.lower() == ".tar":
        return data
    from ..data.pairs import CsvPairs
    return CsvPairs(data, a.csv_img_key, a.csv_caption_key, a.csv_separator)


def verdict(reports) -> int:
    """Exit code of a command that ran parity: 0 when no gate failed, else ParityError naming each failed gate.
    Variants that could not run here (Core ML off macOS) are named, never counted as passed."""
    failed = [f"{r.variant}: {'; '.join(r.failed)}" for r in reports if r.passed is False and not r.dropped]
    for r in reports:
        if r.passed is None:
            print(f"parity of {r.variant}: {r.status}")
    if failed:
        raise ParityError("parity gates failed -> " + " | ".join(failed))
    print("parity: all gates passed" + (" (of the variants that run here)" if any(r.passed is None for r in reports) else ""))
    return 0
