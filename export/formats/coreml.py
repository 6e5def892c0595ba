"""Core ML ML programs (.mlpackage) with coremltools 9, fp32 and fp16 compute precision, dynamic batch 1..MAX_BATCH.

Core ML predictions need macOS: on Linux the packages are converted and hashed but never run, and their parity
is recorded as ``"not run (needs macOS)"``, never as passed. Token ids enter as int32 (Core ML has no int64).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from edgeclip.artifact import IMAGE_OUTPUT, TEXT_OUTPUT
from edgeclip.artifact.formats import MAX_BATCH, variant_name
from edgeclip.artifact.manifest import Variant
from edgeclip.errors import ExportError

from ..onnx_export import no_mha_fastpath
from . import ExportBundle, FormatSettings, file_name
from ._trace import encoders

FORMAT, SUFFIX = "coreml", ".mlpackage"
NOT_RUN = "not run (needs macOS)"
OUTPUTS = {"image": IMAGE_OUTPUT, "text": TEXT_OUTPUT}


def _convert(module: torch.nn.Module, example: torch.Tensor, name: str, out_name: str, precision: str):
    logging.getLogger("coremltools").setLevel(logging.ERROR)  # before import: its untested-version notes on Linux
    import coremltools as ct
    with no_mha_fastpath(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(module, (example,),
                                 dynamic_shapes={name: {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}})
        shape = ct.Shape((ct.RangeDim(1, MAX_BATCH, default=1),) + tuple(example.shape[1:]))
        dtype = np.float32 if example.is_floating_point() else np.int32
        return ct.convert(ep.run_decompositions({}), inputs=[ct.TensorType(name=name, shape=shape, dtype=dtype)],
                          outputs=[ct.TensorType(name=out_name)], convert_to="mlprogram",
                          compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
                          minimum_deployment_target=ct.target.iOS17)


def build(bundle: ExportBundle, settings: FormatSettings) -> dict[str, Variant]:
    """``coreml-fp32`` and ``coreml-fp16``; each is an ``.mlpackage`` folder per encoder."""
    out = {}
    for p in settings.precisions:
        v = variant_name(FORMAT, p)
        out[v] = Variant(FORMAT, p, options={"max_batch": MAX_BATCH, "minimum_deployment_target": "iOS17"})
        for tower, module, example, name in encoders(bundle.model):
            fname = file_name(tower, v, SUFFIX)
            try:
                _convert(module, example, name, OUTPUTS[tower], p).save(str(bundle.out / fname))
            except Exception as e:
                raise ExportError(f"Core ML conversion of {fname} failed: {str(e).splitlines()[0][:240]}") from None
            setattr(out[v], tower, fname)
    return out
