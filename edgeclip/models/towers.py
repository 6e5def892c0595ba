"""Typed tower configs: open_clip's defaults written once, filled in where a config dict is read.

open_clip's ``CLIP`` turns a model config's ``vision_cfg`` / ``text_cfg`` dicts into ``CLIPVisionCfg`` /
``CLIPTextCfg`` dataclasses, so a key the config leaves out takes the dataclass default (224 px, 77 tokens, MLP
ratio 4, head width 64, ...). edgeclip reads the same dicts to count parameters, inherit weights, export and
convert to Hugging Face; it reads them through ``vision_cfg`` / ``text_cfg`` here, so every reader sees what open_clip
builds, and no other module restates a default (``tests/models/test_towers.py`` holds these defaults to
open_clip's and keeps ``.get("image_size", 224)``-style defaults from coming back).

The config stays a plain dict on disk and on the model (``model.edgeclip_cfg``); these are read-only views.
The torch-free runtime reads artifacts, not model configs, and keeps its own defaults for a ``preprocess.json``
(``edgeclip.runtime.preprocess.DEFAULTS``), tied to these by a test.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import ConfigError

__all__ = ["VisionCfg", "TextCfg", "vision_cfg", "text_cfg", "tower_cfg", "VISION_KEYS", "TEXT_KEYS",
           "CLIP_BPE_VOCAB"]

CLIP_BPE_VOCAB = 49408  # open_clip's SimpleTokenizer, the only tokenizer edgeclip, its inheritance and runtime use


class _Tower:
    """What both towers share: reading a dict, and the MLP width."""
    _key = ""  # the tower's key in a model config
    width: int
    mlp_ratio: float

    @classmethod
    def of(cls, tower: dict):
        """A tower dict, defaults filled. Raises ``ConfigError`` on a key edgeclip does not handle."""
        unknown = set(tower) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"{cls._key} has keys edgeclip does not handle: {sorted(unknown)}")
        return cls(**tower)

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)


@dataclass(frozen=True)
class VisionCfg(_Tower):
    """A ViT image tower (the keys edgeclip supports of open_clip's ``CLIPVisionCfg``, same defaults)."""
    _key = "vision_cfg"
    layers: int = 12
    width: int = 768
    head_width: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 16
    image_size: int | tuple[int, int] = 224

    @property
    def size(self) -> int:
        """Side of the (square) input image in pixels."""
        return self.image_size if isinstance(self.image_size, int) else int(self.image_size[0])

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.size // self.patch_size


@dataclass(frozen=True)
class TextCfg(_Tower):
    """A transformer text tower (the keys edgeclip supports of open_clip's ``CLIPTextCfg``, same defaults)."""
    _key = "text_cfg"
    context_length: int = 77
    vocab_size: int = CLIP_BPE_VOCAB
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    tokenizer_kwargs: dict | None = None  # a pruned CLIP BPE: {"bpe_path": file in the student folder}

    @property
    def head_width(self) -> int:
        return self.width // self.heads

    @property
    def bpe_file(self) -> str | None:
        """The merges file of a pruned vocabulary (``edgeclip.models.vocab``), named relative to the student folder;
        None for CLIP's own BPE."""
        return (self.tokenizer_kwargs or {}).get("bpe_path")


VISION_KEYS = frozenset(f.name for f in fields(VisionCfg))
TEXT_KEYS = frozenset(f.name for f in fields(TextCfg))


def vision_cfg(cfg: dict) -> VisionCfg:
    """The image tower of a model config (``{"embed_dim", "vision_cfg", "text_cfg"}``), open_clip's defaults filled."""
    return VisionCfg.of(cfg["vision_cfg"])


def text_cfg(cfg: dict) -> TextCfg:
    """The text tower of a model config, open_clip's defaults filled."""
    return TextCfg.of(cfg["text_cfg"])


def tower_cfg(tower: dict, kind: str) -> VisionCfg | TextCfg:
    """A ``vision_cfg`` (``kind="vision"``) or ``text_cfg`` (``kind="text"``) dict as its typed config."""
    return VisionCfg.of(tower) if kind == "vision" else TextCfg.of(tower)
