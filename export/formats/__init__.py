"""One exporter per artifact format, one signature: ``build(bundle, settings) -> {variant name: Variant}``.

The registry (``edgeclip.artifact.formats``) names each format's exporter; this package holds them:
``onnx`` (the base, always built first), ``openvino_ir``, ``ort_mobile``, ``executorch``, ``litert``, ``coreml``,
``tensorrt``. An exporter writes its files into ``bundle.out`` and returns variant records; it never writes the
manifest (the pipeline writes it once, after parity).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeclip.artifact.formats import (FORMATS, Format, get_format, load_callable, require_converter,
                                      require_runtime, runs_on_this_platform)
from edgeclip.artifact.manifest import Manifest, Variant
from edgeclip.errors import ConfigError

__all__ = ["ExportBundle", "FormatSettings", "plan_export", "build_format", "file_name"]


@dataclass
class ExportBundle:
    """What every exporter gets: the model, the folder being built, what is built so far, the calibration photos."""
    model: Any  # canonical open_clip CLIP, fp32, eval
    out: Path  # the artifact folder being built (a hidden temp folder until the export ends)
    manifest: Manifest  # the variants built so far (the ONNX base first); read it, never write it
    calib_images: list | None = None  # PIL photos for static INT8 (``--calib``)
    opset: int = 18
    _calib: tuple | None = field(default=None, repr=False)

    def calibration(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(pixels [N, 3, H, W] float32, ids [M, L] int64) that every static INT8 recipe calibrates on: the
        calibration photos through the artifact's preprocessing and the parity prompts' ids; None without photos."""
        if not self.calib_images:
            return None
        if self._calib is None:
            from ..variants import calibration_inputs
            self._calib = calibration_inputs(self.out, self.calib_images, self.manifest.context_length)
        return self._calib


@dataclass(frozen=True)
class FormatSettings:
    """What the plan asks one format to build: its precisions (gate names such as ``int8-static``)."""
    precisions: tuple[str, ...]


def file_name(tower: str, variant: str, suffix: str) -> str:
    """``image_encoder.executorch-fp32.pte`` and the like."""
    return f"{tower}_encoder.{variant}{suffix}"


def plan_export(onnx: list[str], formats=(), int8: bool = False, calib: bool = False,
                trt_precision: str | None = None) -> list[tuple[Format, FormatSettings]]:
    """Which format builds which precisions, checked before anything is loaded or written.

    Args:
        onnx: the ONNX variants (``fp32`` first; OpenVINO's ``int8-weights`` goes to the ``openvino-ir`` format).
        formats: other registered formats by name (``executorch``, ``litert``, ...; a registered toy format too).
        int8: also each format's INT8 variant (static where it offers it and ``calib``, dynamic otherwise).
        trt_precision: build TensorRT engines of this precision (None: none).

    Raises:
        ConfigError: an unknown format. BackendError: its converter, or the runtime its parity needs, is not
            installed (names the extra).
    """
    names = list(dict.fromkeys(formats or ()))
    for n in names:
        if n not in FORMATS or n in ("onnx", "openvino-ir", "tensorrt"):
            known = [f for f in FORMATS if f not in ("onnx", "openvino-ir", "tensorrt")]
            raise ConfigError(f"unknown target {n!r}; choose from {known}")
    plan = [(FORMATS["onnx"], FormatSettings(tuple(v for v in onnx if v != "int8-weights")))]
    if "int8-weights" in onnx:
        plan.append((FORMATS["openvino-ir"], FormatSettings(("int8-weights",))))
    for n in names:
        fmt = get_format(n)
        want = list(fmt.default)
        if int8:
            q = "int8-static" if calib and "int8-static" in fmt.precisions else "int8-dynamic"
            want += [q] if q in fmt.precisions else []
        if fmt.from_onnx:  # converted from the ONNX graphs: the ONNX variants it can hold
            want = [p for p in fmt.precisions if p in onnx]
        plan.append((fmt, FormatSettings(tuple(dict.fromkeys(want)))))
    if trt_precision:
        plan.append((FORMATS["tensorrt"], FormatSettings((trt_precision,))))
    for fmt, _ in plan[1:]:  # what builds it, and what runs its parity where that runtime exists at all
        require_converter(fmt)
        if runs_on_this_platform(fmt.runtimes[0]):
            require_runtime(fmt.runtimes[0], f"--{fmt.name}")
    return plan


def build_format(fmt: Format, bundle: ExportBundle, settings: FormatSettings) -> dict[str, Variant]:
    """Run ``fmt``'s exporter; its records must name files it wrote into ``bundle.out``."""
    from edgeclip.errors import ExportError
    out = load_callable(fmt.exporter)(bundle, settings)
    for name, v in out.items():
        if fmt.prefix:  # the device formats say how they take the batch (the README's and the manifest's column)
            v.options.setdefault("batch", fmt.batch)
        if v.format != fmt.name or not all((bundle.out / f).exists() for f in v.files):
            raise ExportError(f"the {fmt.name} exporter returned variant {name!r} without its files")
    return out
