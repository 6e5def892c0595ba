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
from .towers import CLIP_BPE_VOCAB, TEXT_KEYS, VISION_KEYS

CONFIG_DIR = Path(__file__).parent / "configs"
SUPPORTED = ("a ViT image tower and a transformer text tower with CLIP's BPE tokenizer (open_clip ViT-* "
             "such as ViT-B-32 / ViT-L-14, TinyCLIP ViT, OpenAI / Hugging Face CLIPModel)")
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


def unsupported_reason(cfg: dict) -> str | None:
    """Why edgeclip cannot compress a model of this config (None when it can), read from the config alone so
    an unsupported family is refused before a large model is built."""
    v, t = cfg.get("vision_cfg") or {}, cfg.get("text_cfg") or {}
    if v.get("timm_model_name"):
        return f"its image tower is a timm {v['timm_model_name']!r} (ConvNeXt, EVA, SigLIP, MobileCLIP, ...)"
    if isinstance(v.get("layers"), (list, tuple)):
        return "its image tower is a ResNet (ModifiedResNet, RN50 family)"
    if cfg.get("custom_text") or "multimodal_cfg" in cfg:
        return "it has a custom text tower (SigLIP, MobileCLIP, EVA, CoCa, ...)"
    if t.get("hf_model_name"):
        return f"its text tower is the Hugging Face model {t['hf_model_name']!r}"
    pruned = isinstance(t.get("tokenizer_kwargs"), dict) and set(t["tokenizer_kwargs"]) == {"bpe_path"}
    if t.get("tokenizer_kwargs") and not pruned:
        return f"its tokenizer takes options edgeclip does not handle ({t['tokenizer_kwargs']})"
    if t.get("hf_tokenizer_name") or (t.get("vocab_size", CLIP_BPE_VOCAB) != CLIP_BPE_VOCAB and not pruned):
        return (f"its tokenizer is not CLIP's BPE ({t.get('hf_tokenizer_name') or 'vocabulary of ' + str(t.get('vocab_size'))}"
                f" tokens, CLIP's has {CLIP_BPE_VOCAB})")
    odd = sorted((set(v) - VISION_KEYS) | (set(t) - TEXT_KEYS))
    if odd:
        return f"its towers use options edgeclip does not handle ({', '.join(odd)})"
    return None


def check_supported(cfg: dict, name: str = "this model") -> dict:
    """Refuse, in one line naming what is supported, a family edgeclip cannot compress (ResNet, timm, SigLIP...)."""
    reason = unsupported_reason(cfg)
    if reason:
        raise ConfigError(f"{name} is not supported: {reason}; edgeclip supports CLIP models with {SUPPORTED}")
    return cfg


def check_config(cfg: dict) -> dict:
    """Reject configs with unknown top-level keys early (open_clip would fail deep inside CLIP.__init__)."""
    if not isinstance(cfg, dict) or "vision_cfg" not in cfg or "text_cfg" not in cfg:
        raise ConfigError("model config needs 'embed_dim', 'vision_cfg' and 'text_cfg'")
    unknown = set(cfg) - _CFG_KEYS
    if unknown:
        raise ConfigError(f"model config has unknown keys {sorted(unknown)}")
    return cfg
