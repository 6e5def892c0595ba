"""ORT-mobile: the ONNX variants in onnxruntime's ``.ort`` format, for its mobile / minimal build.

Converted by onnxruntime's own ``convert_onnx_models_to_ort`` (fixed optimisations) with type reduction, which also
writes the operator config a reduced onnxruntime build is compiled from (``ort_mobile_required_operators.config``).
The generic platform is used, not ``target_platform="arm"``: the ARM setting fuses QDQ pairs into INT8 kernels whose
ARM numerics cannot be checked on these x86 machines, while the generic file computes what its ONNX source does,
and its parity runs here. onnxruntime's mobile-usability checker reads each fp32 graph;
its verdict (would NNAPI / Core ML execution providers help) is recorded in the manifest, its log in
``ort_mobile_usability.json``. Parity runs the ``.ort``
files through onnxruntime here.
"""
from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

from edgeclip.artifact import IMAGE_ONNX, TEXT_ONNX, weights_beside
from edgeclip.artifact.formats import variant_name
from edgeclip.artifact.manifest import Variant, split_precision
from edgeclip.errors import ExportError

from . import ExportBundle, FormatSettings, file_name

FORMAT, SUFFIX = "ort-mobile", ".ort"
CONFIG = "ort_mobile_required_operators.config"
USABILITY = "ort_mobile_usability.json"  # the checker's full log per tower
CONVERTED = ("fp32", "int8-dynamic", "int8-static")  # fp32-opt is what the conversion does anyway; fp16 is for GPUs


def usability(onnx_path: Path) -> dict:
    """onnxruntime's mobile-usability checker on one graph: its verdict and the lines it logged."""
    from onnxruntime.tools.mobile_helpers import usability_checker
    logger = logging.getLogger("edgeclip.ort_mobile_usability")
    logger.propagate, logger.level = False, logging.INFO
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: lines.append(rec.getMessage())
    logger.addHandler(handler)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            try_eps = usability_checker.analyze_model(onnx_path, skip_optimize=False, logger=logger)
    finally:
        logger.removeHandler(handler)
    return {"nnapi_or_coreml_may_help": bool(try_eps), "log": [ln for ln in lines if ln.strip()][:40]}


def build(bundle: ExportBundle, settings: FormatSettings) -> dict[str, Variant]:
    """``ort-mobile-<v>`` for each planned ONNX variant ``v`` (fp32, int8-dynamic, int8-static) the bundle holds."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    from edgeclip.outputs import write_json
    out_dir, onnx = bundle.out, bundle.manifest.variants
    todo = [v for v in settings.precisions if v in onnx]
    out = {}
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as td:
        src, dst = Path(td) / "src", Path(td) / "out"
        src.mkdir()
        for v in todo:  # one folder, so one operator config covers every variant
            for tower in ("image", "text"):
                name = getattr(onnx[v], tower)
                shutil.copy(out_dir / name, src / f"{tower}.{v}.onnx")
                if (out_dir / weights_beside(name)).is_file():  # external weights keep their recorded file name
                    shutil.copy(out_dir / weights_beside(name), src / weights_beside(name))
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                convert_onnx_models_to_ort(src, output_dir=dst, optimization_styles=[OptimizationStyle.Fixed],
                                           enable_type_reduction=True)
        except Exception as e:
            raise ExportError(f"ORT-format conversion failed: {str(e).splitlines()[0][:240]}") from None
        shutil.copy(dst / "required_operators_and_types.config", out_dir / CONFIG)
        for v in todo:
            name = variant_name(FORMAT, v)
            out[name] = Variant(FORMAT, *split_precision(v), options={"from": v, "operator_config": CONFIG})
            for tower in ("image", "text"):
                setattr(out[name], tower, file_name(tower, name, SUFFIX))
                shutil.copy(dst / f"{tower}.{v}.ort", out_dir / getattr(out[name], tower))
    checks = {tower: usability(out_dir / f) for tower, f in (("image", IMAGE_ONNX), ("text", TEXT_ONNX))}
    write_json(out_dir / USABILITY, checks)
    for e in out.values():
        e.options["mobile_usability"] = {t: c["nnapi_or_coreml_may_help"] for t, c in checks.items()}
        e.options["mobile_usability_report"] = USABILITY
    return out
