"""Subcommands of the pipeline stages (compress, eval, export, parity, demo, quickstart)."""
from __future__ import annotations

import argparse

from .errors import EdgeClipError


class NotBuiltError(EdgeClipError):
    pass


def _not_built(name: str):
    def run(a) -> int:
        raise NotBuiltError(f"'{name}' is not built yet in this version of edgeclip")
    return run


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, help_ in (("compress", "distill a teacher into a smaller student"),
                        ("eval", "zero-shot and retrieval metrics of a model"),
                        ("export", "export a student to ONNX / TensorRT with parity checks"),
                        ("parity", "check an exported artifact against PyTorch"),
                        ("demo", "launch the Gradio demo"),
                        ("quickstart", "compress the reference teacher, export it, check parity, print the report")):
        q = sub.add_parser(name, help=help_)
        q.set_defaults(func=_not_built(name))
