"""edgeclip: compress a CLIP teacher into an edge-sized student (TinyCLIP-style), export it, prove it works.

``import edgeclip`` stays light: submodules load on first attribute access.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_teacher": "edgeclip.models", "load_student": "edgeclip.models", "save_student": "edgeclip.models",
    "create_model": "edgeclip.models", "list_models": "edgeclip.models", "get_tokenizer": "edgeclip.models",
    "count_params": "edgeclip.models.params", "parse_budget": "edgeclip.models.params",
    "student_config": "edgeclip.models.params",
    "inherit_weights": "edgeclip.inherit", "compress": "edgeclip.distill", "plan_stages": "edgeclip.distill",
    "evaluate": "edgeclip.evaluate",
}
__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        mod = importlib.import_module(_LAZY[name])
        return mod if name == mod.__name__.rsplit(".", 1)[-1] else getattr(mod, name)
    raise AttributeError(f"module 'edgeclip' has no attribute {name!r}")
