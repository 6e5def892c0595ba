"""A toy artifact format, defined outside the project (as a user's plugin would be): its one exporter and its one
registry line. ``toy`` variants are the fp32 ONNX graphs copied to ``*.toy.onnx``, so onnxruntime runs them and
every gate applies. Imported by tests/export/test_toy_format.py and, through ``$EDGECLIP_FORMATS``, by the processes
``edgeclip bench`` starts."""
from __future__ import annotations

import shutil

from edgeclip.artifact import Variant
from edgeclip.artifact.formats import Format, register_format


def build(bundle, settings) -> dict[str, Variant]:
    """The exporter: files into ``bundle.out``, variant records out (the manifest is the pipeline's)."""
    out = {}
    for p in settings.precisions:
        name = f"toy-{p}"
        rec = Variant("toy", p, options={"toy_note": "a copy of the fp32 graphs"})
        for tower in ("image", "text"):
            dst = f"{tower}_encoder.{name}.toy.onnx"  # its weights stay in the fp32 graph's .onnx.data beside it
            shutil.copy(bundle.out / getattr(bundle.manifest.variants["fp32"], tower), bundle.out / dst)
            setattr(rec, tower, dst)
        out[name] = rec
    return out


TOY = register_format(Format("toy", (".toy.onnx",), ("onnxruntime",), ("fp32",), build, description="a toy"))
