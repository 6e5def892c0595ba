"""Resumable checkpoints of a distillation stage: weights, optimizer, step, history and data position, written
atomically; a checkpoint of another student config is refused before anything is trained."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..outputs import atomic_path
from ..errors import ConfigError, StorageError
from ..models import model_config
from ..models.weights import config_fingerprint


@dataclass
class StageHistory:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)  # each loss term, unweighted, per step
    evals: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    samples_per_s: float = 0.0
    skipped_steps: int = 0  # fp16: steps the gradient scaler skipped (inf/NaN gradients at the current scale)
    step_s: list[float] = field(default_factory=list)  # wall seconds of each step (evaluation excluded), for
    # throughput after warm-up or after the first epoch (benchmarks/vs_open_clip.py)


def save_ckpt(path: Path, model, opt, step: int, hist: StageHistory, data_state: dict | None = None,
              projection: torch.nn.Module | None = None, recipe: dict | None = None) -> None:
    """``recipe``: what the run trains with (loss weights, views); a resume with another recipe is refused."""
    state = {"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
             "history": json.dumps(asdict(hist)), "data": json.dumps(data_state or {}),
             "model_cfg_sha256": fingerprint(model), "recipe": json.dumps(recipe or {}, sort_keys=True)}
    if projection is not None:
        state["projection"] = projection.state_dict()
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as e:  # disk full, permissions: the last good checkpoint is untouched (atomic rename)
        raise StorageError(f"cannot write checkpoint {str(path)!r} at step {step}: {e.strerror or e}; "
                            "the previous checkpoint is intact (free space and resume)") from None


def load_ckpt(path: Path, model, opt, projection: torch.nn.Module | None = None,
              recipe: dict | None = None) -> tuple[int, StageHistory, dict]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"cannot resume from {str(path)!r}: {str(e).splitlines()[0][:160]}") from None
    own = model.state_dict()
    bad = [k for k in own if k not in state["model"] or state["model"][k].shape != own[k].shape]
    if bad or state.get("model_cfg_sha256", fingerprint(model)) != fingerprint(model):
        raise ConfigError(_RESUME_MISMATCH.format(path=str(path), what=f" (e.g. {bad[0]!r} differs)" if bad else ""))
    _check_recipe(path, state, recipe)
    if (projection is None) != ("projection" not in state):
        raise ConfigError(_RESUME_MISMATCH.format(path=str(path), what=" (the feature projection differs)"))
    model.load_state_dict(state["model"])
    if projection is not None:
        projection.load_state_dict(state["projection"])
    opt.load_state_dict(state["optim"])
    return int(state["step"]), StageHistory(**json.loads(state["history"])), json.loads(state.get("data", "{}"))


_RESUME_MISMATCH = ("cannot resume from {path!r}: it was written for another student config{what} (--target, "
                    "--stages or --method changed?); rerun with the original options, or without --resume into a "
                    "new --out")


def _check_recipe(path: Path, state: dict, recipe: dict | None) -> None:
    saved = state.get("recipe", "{}")
    if saved != json.dumps(recipe or {}, sort_keys=True):
        raise ConfigError(f"cannot resume from {str(path)!r}: it was trained with another recipe ({saved}); rerun "
                          "with the original --loss and --views, or without --resume into a new --out")


def fingerprint(model) -> str | None:
    cfg = model_config(model, required=False)
    return config_fingerprint(cfg) if cfg is not None else None


def check_resume(path: str | Path, cfg: dict, recipe: dict | None = None) -> None:
    """Before anything is trained: a checkpoint at ``path`` must belong to a student of config ``cfg`` trained
    with ``recipe`` (``{"loss": weights, "views": K}``, as ``distill`` stores it; not compared when None)."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise ConfigError(f"cannot resume from {str(path)!r}: {str(e).splitlines()[0][:160]}") from None
    saved = state.get("model_cfg_sha256") if isinstance(state, dict) else None
    if saved is not None and saved != config_fingerprint(cfg):
        raise ConfigError(_RESUME_MISMATCH.format(path=str(path), what=""))
    if recipe is not None and isinstance(state, dict):
        _check_recipe(path, state, recipe)
