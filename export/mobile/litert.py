"""LiteRT (.tflite) encoders through litert-torch, fp32 and INT8 (LiteRT's own ai-edge-quantizer).

litert-torch 0.10 cannot convert these encoders with a dynamic batch (its lowering needs concrete shapes), so each
file takes batch 1 and the runtime runs one item per call. Token ids become int32 in the converted graph (the
runtime narrows them; the vocabulary fits). INT8 is ai-edge-quantizer's ``dynamic_wi8_afp32`` recipe: INT8
weights, activations quantised per call, so it needs no calibration.

litert-torch pins typing-extensions < 4.13 (through xdsl), which Gradio 6 and transformers 5 cannot use: the
``[litert]`` extra installs beside ``[train]`` in a venv of its own (see docs/runtime-and-devices.md).
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch

from edgeclip.errors import ExportError
from edgeclip.runtime.targets import TARGETS, Target, variant_name

from ..onnx_export import no_mha_fastpath
from ._trace import encoders, file_name

SUFFIX = TARGETS[Target.LITERT].suffix


def _convert(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import litert_torch
    with no_mha_fastpath(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("absl").setLevel(logging.ERROR)
        litert_torch.convert(module, (example[:1],)).export(str(path))


def _int8(src: Path, dst: Path) -> None:
    import contextlib
    import io

    from ai_edge_quantizer import quantizer, recipe
    q = quantizer.Quantizer(str(src))
    q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    with contextlib.redirect_stdout(io.StringIO()):  # its size summary would land in the middle of parity.md
        q.quantize().export_model(str(dst), overwrite=True)


def build(model, out_dir: Path, int8: bool, calib=None) -> dict[str, dict]:
    """``litert-fp32`` and, with ``int8``, ``litert-int8-dynamic`` (``calib`` is not used: see the module doc)."""
    fp32 = variant_name(Target.LITERT, "fp32")
    out = {fp32: {"target": Target.LITERT.value, "precision": "fp32", "fixed_batch": 1}}
    q8 = variant_name(Target.LITERT, "int8-dynamic")
    if int8:
        out[q8] = {"target": Target.LITERT.value, "precision": "int8-dynamic", "fixed_batch": 1,
                   "quantizer": "ai-edge-quantizer dynamic_wi8_afp32"}
    for tower, module, example, _ in encoders(model):
        fname = file_name(tower, fp32, SUFFIX)
        try:
            _convert(module, example, out_dir / fname)
            out[fp32][tower] = fname
            if int8:
                out[q8][tower] = file_name(tower, q8, SUFFIX)
                _int8(out_dir / fname, out_dir / out[q8][tower])
        except Exception as e:
            raise ExportError(f"LiteRT export of {fname} failed: {str(e).splitlines()[0][:240]}") from None
    return out
