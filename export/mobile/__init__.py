"""Device formats beyond ONNX: ExecuTorch (.pte, XNNPACK), LiteRT (.tflite), Core ML (.mlpackage), ORT-mobile (.ort).

``build_targets`` writes each requested target's variants into an artifact folder that ``export_onnx`` made (the
tokenizer, preprocessing and manifest are shared) and returns their manifest entries. Every variant then goes
through the same parity gates as the ONNX ones (``edgeclip.export.export_artifact``). Which file, runtime and pip
extra belong to a target is recorded once, in ``edgeclip.runtime.targets``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeclip.runtime.targets import TARGETS, Target, require_target

__all__ = ["build_targets", "parse_targets", "Target"]


def parse_targets(targets) -> list[Target]:
    """Targets by name, each checked to be installed (one ``BackendError`` line naming the extra otherwise)."""
    from edgeclip.errors import ConfigError
    out = []
    for t in targets or ():
        try:
            out.append(Target(t))
        except ValueError:
            raise ConfigError(f"unknown target {t!r}; choose from {[x.value for x in Target]}") from None
        require_target(out[-1])
    return list(dict.fromkeys(out))


def build_targets(model, out_dir: Path, targets: list[Target], int8: bool, calib: tuple[np.ndarray, np.ndarray] | None,
                  onnx_variants: list[str]) -> dict[str, dict]:
    """Build every variant of ``targets`` in ``out_dir``; returns ``{variant: manifest entry}``.

    Args:
        int8: also the INT8 variants (static when ``calib`` holds calibration inputs, dynamic otherwise).
        calib: (pixels [N, 3, H, W] float32, ids [M, L] int64) from ``variants.calibration_inputs``, or None.
        onnx_variants: the ONNX variants already in ``out_dir`` (ORT-mobile converts those).
    """
    from . import coreml, executorch, litert, ort_mobile
    entries: dict[str, dict] = {}
    for t in targets:
        if t is Target.EXECUTORCH:
            entries.update(executorch.build(model, out_dir, int8, calib))
        elif t is Target.LITERT:
            entries.update(litert.build(model, out_dir, int8, calib))
        elif t is Target.COREML:
            entries.update(coreml.build(model, out_dir))
        elif t is Target.ORT_MOBILE:
            entries.update(ort_mobile.build(out_dir, onnx_variants))
    for name, e in entries.items():
        e.setdefault("batch", TARGETS[Target(e["target"])].batch)
    return entries
