"""edgeclip: compress a CLIP teacher into an edge-sized student (TinyCLIP-style), export it, prove it works.

``import edgeclip`` stays light and never imports torch: every name below loads its module on first access, so
a runtime-only install (no ``[train]`` extra) can still ``import edgeclip`` and use ``edgeclip.load_runtime``.
The one-page API (every name in ``__all__``) is in docs/api.md between ``<!-- api:start -->`` and
``<!-- api:end -->``; ``tests/test_api.py`` keeps the two in step.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {  # public name -> (module, attribute in it)
    "create_model": ("edgeclip.models", "create_model"), "list_models": ("edgeclip.models", "list_models"),
    "load_teacher": ("edgeclip.models", "load_teacher"), "load_student": ("edgeclip.models", "load_student"),
    "save_student": ("edgeclip.models", "save_student"), "get_tokenizer": ("edgeclip.models", "get_tokenizer"),
    "get_preprocess": ("edgeclip.models", "get_preprocess"),
    "count_params": ("edgeclip.models.params", "count_params"),
    "parse_budget": ("edgeclip.models.params", "parse_budget"),
    "student_config": ("edgeclip.models.params", "student_config"),
    "inherit_weights": ("edgeclip.inherit", "inherit_weights"),
    "plan_stages": ("edgeclip.distill", "plan_stages"), "compress": ("edgeclip.distill", "compress"),
    "Recipe": ("edgeclip.distill.options", "Recipe"), "Schedule": ("edgeclip.distill.options", "Schedule"),
    "RunConfig": ("edgeclip.distill.options", "RunConfig"),
    "evaluate_model": ("edgeclip.evaluate", "evaluate_model"),
    "export_onnx": ("edgeclip.export", "export_onnx"), "export_artifact": ("edgeclip.export", "export_artifact"),
    "check_parity": ("edgeclip.export", "check_parity"),
    "load_runtime": ("edgeclip.runtime", "load"),
}
_SUBMODULES = ("models", "data", "inherit", "distill", "evaluate", "export", "runtime", "errors")
__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    if name in _SUBMODULES:  # edgeclip.runtime.load(...) after a bare ``import edgeclip``
        return importlib.import_module(f"edgeclip.{name}")
    raise AttributeError(f"module 'edgeclip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
