"""Canonical CLIP models: configs, construction, loading teachers, saving students, parameter budgets."""
from .factory import create_model, model_config, model_meta
from .io import REFERENCE_TEACHER, get_preprocess, load_student, load_teacher, read_state_dict, save_student
from .registry import get_model_config, list_models
from .towers import TextCfg, VisionCfg, text_cfg, vision_cfg


def get_tokenizer(model_or_cfg):
    """open_clip's BPE tokenizer (its vocabulary ships in the wheel) at the model's context length."""
    from open_clip.tokenizer import SimpleTokenizer
    cfg = model_or_cfg if isinstance(model_or_cfg, dict) else model_config(model_or_cfg)
    return SimpleTokenizer(context_length=text_cfg(cfg).context_length)


__all__ = ["create_model", "model_config", "model_meta", "load_teacher", "load_student", "save_student", "read_state_dict",
           "get_model_config", "list_models", "get_tokenizer", "get_preprocess", "REFERENCE_TEACHER", "VisionCfg",
           "TextCfg", "vision_cfg", "text_cfg"]
