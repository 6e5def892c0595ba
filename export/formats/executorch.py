"""ExecuTorch programs (.pte) lowered to the XNNPACK delegate, fp32 and INT8 (PT2E with the XNNPACK quantizer).

The batch dimension is dynamic up to ``MAX_BATCH``: ExecuTorch plans its memory for the largest shape, so the
runtime runs larger inputs in chunks. INT8 is symmetric per-channel weights with INT8 activations: static
(calibrated on the same photos and prompts as the ONNX int8-static variant) when calibration inputs are given,
dynamic (activation ranges per call) otherwise.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from edgeclip.artifact.formats import MAX_BATCH, variant_name
from edgeclip.artifact.manifest import Variant, split_precision
from edgeclip.errors import ExportError

from ..onnx_export import no_mha_fastpath
from . import ExportBundle, FormatSettings, file_name
from ._trace import encoders

FORMAT, SUFFIX = "executorch", ".pte"


def _quantize(ep, example: torch.Tensor, dynamic_shapes: dict, calib: np.ndarray | None):
    """PT2E: prepare with the XNNPACK quantizer, calibrate (static only), convert, export again."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=calib is None))
    m = prepare_pt2e(ep.module(), quantizer)
    for i in range(0, len(calib) if calib is not None else 0, 8):
        m(torch.from_numpy(calib[i:i + 8]))
    if calib is None:
        m(example)  # dynamic quantization observes nothing, but convert needs one pass through the observers
    m = convert_pt2e(m)
    return torch.export.export(m, (example,), dynamic_shapes=dynamic_shapes)


def _lower(module: torch.nn.Module, example: torch.Tensor, name: str, calib: np.ndarray | None, int8: bool) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    shapes = {name: {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}
    with no_mha_fastpath(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch").setLevel(logging.ERROR)
        ep = torch.export.export(module, (example,), dynamic_shapes=shapes)
        if int8:
            ep = _quantize(ep, example, shapes, calib)
        return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


def build(bundle: ExportBundle, settings: FormatSettings) -> dict[str, Variant]:
    """``executorch-fp32`` and, when planned, ``executorch-int8-static`` (calibrated) or ``-int8-dynamic``."""
    calib = bundle.calibration() if "int8-static" in settings.precisions else None
    out = {}
    for p in settings.precisions:
        v = variant_name(FORMAT, p)
        rec = Variant(FORMAT, *split_precision(p), options={"max_batch": MAX_BATCH})
        for (tower, module, example, name), data in zip(encoders(bundle.model), calib or (None, None)):
            fname = file_name(tower, v, SUFFIX)
            try:
                (bundle.out / fname).write_bytes(_lower(module, example, name, data if p == "int8-static" else None,
                                                        p != "fp32"))
            except Exception as e:
                raise ExportError(f"ExecuTorch export of {fname} failed: {str(e).splitlines()[0][:240]}") from None
            setattr(rec, tower, fname)
        if p == "int8-static":
            rec.options["calibration"] = {"images": int(len(calib[0])), "texts": int(len(calib[1]))}
        out[v] = rec
    return out
