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

from edgeclip.artifact.formats import variant_name
from edgeclip.artifact.manifest import Variant
from edgeclip.errors import ExportError

from ..onnx_export import no_mha_fastpath
from . import ExportBundle, FormatSettings, file_name
from ._trace import encoders

FORMAT, SUFFIX = "litert", ".tflite"


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


def build(bundle: ExportBundle, settings: FormatSettings) -> dict[str, Variant]:
    """``litert-fp32`` and, when planned, ``litert-int8-dynamic`` (needs no calibration: see the module doc)."""
    fp32, q8 = variant_name(FORMAT, "fp32"), variant_name(FORMAT, "int8-dynamic")
    int8 = "int8-dynamic" in settings.precisions
    out = {fp32: Variant(FORMAT, "fp32", options={"fixed_batch": 1})}
    if int8:
        out[q8] = Variant(FORMAT, "int8", "dynamic", options={"fixed_batch": 1,
                                                             "quantizer": "ai-edge-quantizer dynamic_wi8_afp32"})
    for tower, module, example, _ in encoders(bundle.model):
        fname = file_name(tower, fp32, SUFFIX)
        try:
            _convert(module, example, bundle.out / fname)
            setattr(out[fp32], tower, fname)
            if int8:
                setattr(out[q8], tower, file_name(tower, q8, SUFFIX))
                _int8(bundle.out / fname, bundle.out / file_name(tower, q8, SUFFIX))
        except Exception as e:
            raise ExportError(f"LiteRT export of {fname} failed: {str(e).splitlines()[0][:240]}") from None
    return out
