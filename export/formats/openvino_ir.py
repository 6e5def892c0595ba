"""OpenVINO IR: NNCF weight-only INT8 (``int8-weights``) of the fp32 ONNX graphs, as ``.xml`` + ``.bin`` files that
only OpenVINO runs. Activations stay fp32 (optimum-intel's ``--weight-format int8``)."""
from __future__ import annotations

from edgeclip.artifact.manifest import Variant

from ..variants import build_variants
from . import ExportBundle, FormatSettings


def build(bundle: ExportBundle, settings: FormatSettings) -> dict[str, Variant]:
    return build_variants(bundle.out, list(settings.precisions))
