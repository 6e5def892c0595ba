"""Reading checkpoints safely: no pickle, strict keys and shapes, finite weights, config fingerprints.

``io`` (teachers, students) and ``hf`` (Hugging Face folders) both read weights through this module, so neither
imports the other for it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import ConfigError, NonFiniteError

FINGERPRINT_KEY = "edgeclip_config_sha256"  # safetensors metadata written by save_student


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely: safetensors, or torch files with ``weights_only=True`` (never unpickles code).

    Raises:
        ConfigError: missing, truncated, pickled or not a state dict.
        NonFiniteError: a floating tensor holds NaN or Inf (see ``check_finite``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated / corrupt / pickled code
        raise ConfigError(f"cannot read checkpoint {str(path)!r}: {str(e).splitlines()[0][:200]}") from None
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError(f"checkpoint {str(path)!r} holds no state dict of tensors")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    check_finite(sd, f"checkpoint {str(path)!r}")
    return sd


def check_finite(tensors: dict[str, torch.Tensor], what: str, action: str = "refusing it") -> None:
    """Raise ``NonFiniteError`` naming the first floating tensor with NaN/Inf (one line).

    Why: a single NaN weight (even one token-embedding row no parity prompt uses) silently poisons every
    student distilled from it and every artifact exported from it.
    """
    for k, v in tensors.items():
        if _non_finite(v):
            nan, inf = int(torch.isnan(v).sum()), int(torch.isinf(v).sum())
            counts = ", ".join(f"{n} {name}" for n, name in ((nan, "NaN"), (inf, "Inf")) if n)
            others = sum(1 for t in tensors.values() if _non_finite(t))
            more = f", {others - 1} more tensors too" if others > 1 else ""
            raise NonFiniteError(f"{what} has non-finite values in {k!r} ({counts}{more}); {action}")


def _non_finite(v: torch.Tensor) -> bool:
    """Exact, and ~10x cheaper than ``isfinite(v).all()`` on clean weights: a sum is finite only when every
    element is (NaN and Inf propagate); a finite sum that overflowed falls through to the element-wise check."""
    if not v.is_floating_point():
        return False
    v = v.detach()
    return not bool(torch.isfinite(v.sum(dtype=torch.float32))) and not bool(torch.isfinite(v).all())


def load_weights(model, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict strictly; a mismatch is one clear line naming the first bad key and both shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise ConfigError(f"checkpoint {source!r} does not match the architecture: {len(missing)} missing keys "
                          f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})")
    for k, v in sd.items():
        if v.shape != own[k].shape:
            raise ConfigError(f"checkpoint {source!r} key {k!r} has shape {tuple(v.shape)}, the architecture "
                              f"expects {tuple(own[k].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})


def config_fingerprint(cfg: dict) -> str:
    """sha256 of the model config as canonical JSON (sorted keys; tuples and lists alike).

    Why: head counts and head width change the function without changing any tensor shape, so only a
    fingerprint stored with the weights can tell that a config was edited after saving.
    """
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_fingerprint(path: str | os.PathLike) -> str | None:
    """The config fingerprint stored in a safetensors file's metadata (``None`` for plain open_clip files)."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get(FINGERPRINT_KEY)
    except Exception:  # unreadable headers are reported by read_state_dict
        return None
