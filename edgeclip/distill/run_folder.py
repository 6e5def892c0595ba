"""The run folder's life cycle: claim ``out`` before anything is loaded, mark it as a run (``run.json``, with the
settings that repeat it), stage an ``--overwrite`` beside it, and account for the checkpoints at the end."""
from __future__ import annotations

import atexit
import shutil
import time
from pathlib import Path

from ..errors import ConfigError
from ..models import REFERENCE_TEACHER
from ..outputs import check_output, drop_own_staging, output_kind, staging_path, write_json


def claim_output(out, teacher, data, resume: bool, overwrite: bool) -> tuple[Path, Path]:
    """Check ``out`` before anything is loaded; returns (the run folder, the folder to train in now).

    Replacing an earlier run (``overwrite``): the new run, checkpoints included, is built in a hidden
    ``.OUT.tmp-PID-*`` folder beside ``out`` and swapped in only once it is complete (``replace_with``, safe
    against a crash between its renames). Until then the old run stays whole and resumable; the price is that
    an interrupted ``--overwrite`` run cannot itself be resumed (its temp folder is removed by the next write
    of ``out``, by a retry in the same process, or when the process exits).
    """
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite starts it over: pass only one")
    teacher_path = REFERENCE_TEACHER if teacher is None or str(teacher) == "reference" else teacher
    final = check_output(out, "run", overwrite=True, inputs=[teacher_path, data])  # any run passes here ...
    earlier = output_kind(final) == "run"
    if earlier and not (resume or overwrite):  # ... and is continued or replaced only when asked
        raise ConfigError(f"{str(out)!r} holds an earlier compress run; pass --resume to continue it, or "
                          "--overwrite to start over")
    if not (earlier and overwrite):
        return final, final
    drop_own_staging(final)  # an earlier attempt of this process that raised
    stage = staging_path(final)
    atexit.register(shutil.rmtree, stage.parent, True)
    return final, stage


def write_run_json(out: Path, teacher, target_params, data, settings) -> None:
    """Mark ``out`` as a run from its first step on, with what repeats it: ``edgeclip compress TEACHER --target
    T --data D --config OUT/run.json`` reads the groups back (``options.read_config``)."""
    write_json(out / "run.json", {"edgeclip_output": "run", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  "teacher": _spec(teacher), "target_params": _spec(target_params),
                                  "data": _spec(data), **settings.to_dict()})


def _spec(v):
    """A JSON value for a model, budget or data argument (an object in memory is named by its type)."""
    if v is None or isinstance(v, (str, int, float, dict)):
        return v
    return str(v) if isinstance(v, Path) else f"<{type(v).__name__}>"


def checkpoint_summary(folder: Path, keep: bool) -> dict | None:
    """Size of the resumable checkpoints; deleted when ``keep`` is False (the run succeeded, the student is saved)."""
    if not folder.is_dir():
        return None
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    if not keep:
        shutil.rmtree(folder)
    return {"path": str(folder), "bytes": size, "kept": keep}
