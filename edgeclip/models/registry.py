"""Architectures as data: edgeclip's JSON model configs (TinyCLIP family, the ShapesWorld reference teacher).

Each ``configs/<name>.json`` is an open_clip model config; the file stem is the model name. The first time
edgeclip looks a name up they are also registered with open_clip (``open_clip.add_model_config``), so from then
on ``open_clip.create_model(name)`` knows them too.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

from ..errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
_CFG_KEYS = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "cast_dtype", "init_logit_scale",
             "init_logit_bias", "nonscalar_logit_scale", "custom_text", "edgeclip_layers"}


@lru_cache(maxsize=None)
def _edgeclip_configs() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(CONFIG_DIR.glob("*.json"))}


@lru_cache(maxsize=None)
def _register_with_open_clip() -> None:
    import open_clip
    open_clip.add_model_config(CONFIG_DIR)


def list_models(include_open_clip: bool = False) -> list[str]:
    """edgeclip's shipped architectures (and, on request, every open_clip builtin)."""
    names = list(_edgeclip_configs())
    if include_open_clip:
        import open_clip
        _register_with_open_clip()
        names += [n for n in open_clip.list_models() if n not in names]
    return names


def get_model_config(name: str) -> dict:
    """A deep copy of the open_clip-style config of ``name`` (edgeclip's own configs first, then open_clip's)."""
    _register_with_open_clip()
    cfgs = _edgeclip_configs()
    if name in cfgs:
        return copy.deepcopy(cfgs[name])
    import open_clip
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ConfigError(f"unknown model {name!r}; run 'edgeclip models' to list them")
    return copy.deepcopy(cfg)


def check_config(cfg: dict) -> dict:
    """Reject configs with unknown top-level keys early (open_clip would fail deep inside CLIP.__init__)."""
    if not isinstance(cfg, dict) or "vision_cfg" not in cfg or "text_cfg" not in cfg:
        raise ConfigError("model config needs 'embed_dim', 'vision_cfg' and 'text_cfg'")
    unknown = set(cfg) - _CFG_KEYS
    if unknown:
        raise ConfigError(f"model config has unknown keys {sorted(unknown)}")
    return cfg
