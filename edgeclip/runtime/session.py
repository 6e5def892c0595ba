"""What every session class in the runtime reports about its inputs: the fields of onnxruntime's ``NodeArg`` that
the runtime reads, so OpenVINO, ExecuTorch, LiteRT and Core ML sessions answer ``get_inputs()`` the same way.

A leaf module: the backends and the device-format sessions both import it, and neither imports the other at load.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SessionInput"]


@dataclass(frozen=True)
class SessionInput:
    """One graph input as a session reports it."""
    name: str
    type: str  # onnxruntime's spelling: "tensor(float)", "tensor(int64)", ...
    shape: list
