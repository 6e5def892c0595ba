"""One front door for building canonical CLIP models (open_clip's ``CLIP``) from a name or a config dict."""
from __future__ import annotations

import copy

import torch

from ..errors import ConfigError
from .nonuniform import KEY, apply_layers
from .registry import check_config, check_supported, get_model_config
from .towers import vision_cfg


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def default_preprocess_cfg(cfg: dict) -> dict:
    """open_clip's eval preprocessing for a config: OpenAI mean/std, bicubic, shortest-side resize at its size."""
    return {"size": vision_cfg(cfg).image_size, "mean": list(OPENAI_MEAN), "std": list(OPENAI_STD),
            "interpolation": "bicubic", "resize_mode": "shortest"}


def create_model(model: str | dict, device: str | torch.device = "cpu", seed: int | None = None):
    """Build a randomly initialised open_clip ``CLIP`` in eval mode.

    Args:
        model: an edgeclip or open_clip model name (e.g. ``"ViT-B-32"``, ``"TinyCLIP-ViT-8M-16-Text-3M"``) or an
            open_clip-style config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``, and ``edgeclip_layers``
            for per-layer head / MLP counts, see ``edgeclip.models.nonuniform``).
        device: where to put the model.
        seed: seeds the initialisation when given (reproducible random teachers in tests).

    Returns:
        ``open_clip.model.CLIP`` in eval mode; ``model.edgeclip_cfg`` holds the config it was built from.

    Raises:
        ConfigError: unknown name, malformed config, or a family edgeclip cannot compress (ResNet or timm
            image towers, custom text towers such as SigLIP / MobileCLIP, non-CLIP tokenizers).

    Example:
        >>> m = create_model("TinyCLIP-ViT-8M-16-Text-3M")
    """
    import open_clip.model as ocm

    if isinstance(model, str):  # refused from the config, before a large model is built
        cfg = check_config(check_supported(get_model_config(model), repr(model)))
    else:
        cfg = check_supported(check_config(copy.deepcopy(model)), "the model config")
    layers = cfg.pop(KEY, None)
    if seed is not None:
        torch.manual_seed(seed)
    try:
        clip = ocm.CLIP(**cfg)
    except (TypeError, ValueError, AssertionError) as e:
        raise ConfigError(f"cannot build CLIP from config: {e}") from None
    if layers:  # per-layer head / MLP counts (auto pruning with tie_layers=False)
        cfg[KEY] = layers
        apply_layers(clip, cfg)
    clip.edgeclip_cfg = cfg
    return clip.to(device).eval()


def model_config(model, required: bool = True) -> dict | None:
    """The config a canonical model was built from (set by ``create_model`` and the loaders); ``required=False``
    gives None for a module edgeclip did not build."""
    cfg = getattr(model, "edgeclip_cfg", None)
    if cfg is None and required:
        raise ConfigError("model carries no edgeclip config; build it with edgeclip.create_model or load_teacher")
    return cfg


def model_meta(model) -> dict:
    """What the loaders know about where a model came from (the reference teacher's provenance, a student's
    training data); empty for a model built in memory."""
    return getattr(model, "edgeclip_meta", None) or {}
