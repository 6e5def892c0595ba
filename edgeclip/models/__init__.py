"""Canonical CLIP models: configs, construction, loading teachers, saving students, parameter budgets."""
from .factory import create_model, model_config, model_meta
from .io import REFERENCE_TEACHER, get_preprocess, load_student, load_teacher, read_state_dict, save_student
from .registry import get_model_config, list_models
from .towers import TextCfg, VisionCfg, text_cfg, vision_cfg


def get_tokenizer(model_or_cfg):
    """open_clip's BPE tokenizer at the model's context length: CLIP's own merges (they ship in the wheel), or the
    model's pruned ones (``edgeclip.models.vocab``; the model carries their file as ``model.edgeclip_bpe``)."""
    from open_clip.tokenizer import SimpleTokenizer

    from ..errors import ConfigError
    cfg = model_or_cfg if isinstance(model_or_cfg, dict) else model_config(model_or_cfg)
    t = text_cfg(cfg)
    if t.bpe_file is None:
        return SimpleTokenizer(context_length=t.context_length)
    bpe = getattr(model_or_cfg, "edgeclip_bpe", None)
    if bpe is None:
        raise ConfigError("this model has a pruned vocabulary: get its tokenizer from the model (load_student), "
                          "not from its config alone")
    return SimpleTokenizer(bpe_path=str(bpe), context_length=t.context_length)


__all__ = ["create_model", "model_config", "model_meta", "load_teacher", "load_student", "save_student", "read_state_dict",
           "get_model_config", "list_models", "get_tokenizer", "get_preprocess", "REFERENCE_TEACHER", "VisionCfg",
           "TextCfg", "vision_cfg", "text_cfg"]
