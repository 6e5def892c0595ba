"""TensorRT engines (``.plan``) from the artifact's ONNX graphs (UNTESTED here: TensorRT cannot be installed on these
machines). Written against the documented TensorRT Python API (``edgeclip.export.trt``); a variant
``tensorrt-<precision>`` opens through the registry like any other (``edgeclip.export.trt.run``)."""
from __future__ import annotations

from edgeclip.artifact import IMAGE_INPUT, TEXT_INPUT
from edgeclip.artifact.formats import variant_name
from edgeclip.artifact.manifest import Variant, split_precision
from edgeclip.errors import ExportError

from . import ExportBundle, FormatSettings

FORMAT = "tensorrt"


def build(bundle: ExportBundle, settings: FormatSettings) -> dict[str, Variant]:
    """One engine per tower and planned precision, built from the ONNX variant ``plan_build`` names for it."""
    from .. import trt
    m, out = bundle.manifest, {}
    version = trt.tensorrt_version()
    for precision in settings.precisions:
        name = variant_name(FORMAT, precision)
        rec = Variant(FORMAT, *split_precision(precision), options={"engines": {}})
        for tower, shape, input_name in (("image", (1, 3, m.image_size, m.image_size), IMAGE_INPUT.name),
                                         ("text", (1, m.context_length), TEXT_INPUT.name)):
            plan = trt.plan_build(version, precision, shape)
            if plan.onnx_variant not in m.variants:
                raise ExportError(f"TensorRT {precision} is built from the {plan.onnx_variant} ONNX variant; "
                                  f"add it (--variant {plan.onnx_variant})")
            src = bundle.out / getattr(m.variants[plan.onnx_variant], tower)
            facts = trt.build_engine(src, bundle.out / f"{tower}_encoder.{precision}.plan", input_name, shape,
                                     precision)
            rec.options["engines"][tower] = facts
            setattr(rec, tower, facts["engine"])
        rec.options.update({"tensorrt": rec.options["engines"]["image"]["tensorrt"],
                            "compute_capability": rec.options["engines"]["image"]["compute_capability"]})
        out[name] = rec
    return out
