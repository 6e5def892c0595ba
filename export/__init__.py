"""edgeclip.export: ONNX encoders, parity gates against PyTorch, ORT-optimised / fp16 / INT8 variants, TensorRT,
and the device formats (ExecuTorch, LiteRT, Core ML, ORT-mobile: ``edgeclip.export.mobile``).

``export_artifact`` is the whole ``edgeclip export`` command: export, build variants, gate every variant on
parity, and refuse to report success when a gate fails.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeclip.artifact import (IMAGE_INPUT, IMAGE_ONNX, MANIFEST, PARITY_JSON, PARITY_MD, TEXT_INPUT, TEXT_ONNX,
                               weights_beside)

from .onnx_export import ExportResult, export_onnx, read_manifest, update_manifest
from .parity import ParityReport, References, check_parity, load_photos, parity_markdown
from .trt import build_engine, plan_build, trt_readiness
from .tolerances import GATES, OPTIONAL, TIE_MARGIN, Precision, check_gates
from .variants import build_variants

__all__ = ["export_onnx", "export_artifact", "check_parity", "build_variants", "build_engine", "plan_build",
           "trt_readiness", "Precision", "GATES", "check_gates", "ParityReport", "ArtifactResult",
           "read_manifest", "parity_markdown"]


@dataclass
class ArtifactResult:
    out: Path
    parity: list[ParityReport] = field(default_factory=list)
    engines: dict = field(default_factory=dict)
    parity_s: dict = field(default_factory=dict)  # variant -> seconds its parity check took

    @property
    def passed(self) -> bool:
        """No gate failed (variants that cannot run here, such as Core ML off macOS, have no verdict; optional
        variants that failed were dropped from the artifact)."""
        return all(r.passed is not False or r.dropped for r in self.parity)


def export_artifact(model, out: str | Path, variants=("fp32",), images_dir: str | Path | None = None,
                    calib_dir: str | Path | None = None, trt: bool = False, trt_precision: str = "fp16",
                    opset: int = 18, overwrite: bool = False, targets=(), int8_targets: bool = False) -> ArtifactResult:
    """Export ``model``, build ``variants``, run parity on each; writes ``parity.json`` / ``parity.md``.

    ``targets`` adds device formats beside the ONNX graphs (``"executorch"``, ``"litert"``, ``"coreml"``,
    ``"ort-mobile"``); ``int8_targets`` adds their INT8 variants (static when ``calib_dir`` is given). Each goes
    through the same gates; Core ML off macOS is recorded as not run. Missing extras fail before any work.

    A failed gate does not raise here: the verdicts land in the manifest and ``ArtifactResult.passed`` is
    False (the CLI turns that into a non-zero exit naming the gates). Everything is built in a hidden temp
    folder and renamed to ``out`` at the end, so an interrupted export leaves no partial artifact.

    ``out`` may be new, an empty folder, or (with ``overwrite``) an earlier artifact; anything else is
    refused before any work (``edgeclip.outputs.check_output``).

    Raises:
        ConfigError: ``out`` may not be written.
        ExportError / BackendError: export, a variant or TensorRT could not be built.
    """
    from edgeclip.outputs import check_output, one_writer

    from .mobile import parse_targets
    from .variants import require_openvino
    targets = parse_targets(targets)  # unknown or not installed: one line, before anything is written
    require_openvino(variants)
    with one_writer(check_output(out, "artifact", overwrite)):  # a second export to ``out`` is refused
        return _export_locked(model, check_output(out, "artifact", overwrite), variants, images_dir, calib_dir,
                              trt, trt_precision, opset, targets, int8_targets)


def _export_locked(model, out: Path, variants, images_dir, calib_dir, trt, trt_precision, opset, targets,
                   int8_targets) -> ArtifactResult:
    """``export_artifact`` once ``out`` is checked (again, under the lock) and held."""
    import sys

    from edgeclip.outputs import atomic_path, write_json, write_text
    calib = load_photos(calib_dir, 64)[0] if calib_dir else None  # read once: ONNX and device INT8 share them
    refs = References(model.float().eval())  # PyTorch's side of parity, once for every variant
    with atomic_path(out) as tmp:
        res = _build_artifact(model, tmp, variants, images_dir, calib, trt, trt_precision, opset, refs)
        if targets:
            res.parity += _build_targets(model, tmp, targets, int8_targets, images_dir, calib, refs, res.parity_s)
        parity_s = sum(res.parity_s.values())
        print(f"parity: {len(res.parity)} variants in {parity_s:.1f} s (PyTorch references {refs.seconds:.1f} s, "
              "computed once)", file=sys.stderr)
        update_manifest(tmp, timings={"parity_s": round(parity_s, 2), "references_s": round(refs.seconds, 2),
                                      "parity_s_by_variant": {k: round(v, 2) for k, v in res.parity_s.items()}})
        write_json(tmp / PARITY_JSON, [r.to_dict() for r in res.parity])
        write_text(tmp / PARITY_MD, parity_markdown(res.parity))
        update_manifest(tmp)  # the reports' sha256 too: a report edited afterwards is refused on load like a graph
    res.out = out
    return res


def _build_targets(model, out_dir: Path, targets, int8: bool, images_dir, calib_images, refs,
                   seconds: dict) -> list[ParityReport]:
    """The device formats' variants, their parity (not run where no runtime exists here), manifest and reports."""
    import sys

    from edgeclip.runtime.targets import TARGETS, require_target, runs_on_this_platform, variant_target

    from .mobile import build_targets
    from .mobile.coreml import NOT_RUN
    from .variants import calibration_inputs
    calib = calibration_inputs(out_dir, calib_images) if calib_images else None
    t0 = time.perf_counter()
    entries = build_targets(model, out_dir, targets, int8, calib, list(read_manifest(out_dir)["variants"]))
    update_manifest(out_dir, variants=entries)
    built = time.perf_counter() - t0
    reports = []
    for v, e in entries.items():
        target = variant_target(e)
        if not runs_on_this_platform(target):
            reports.append(ParityReport(v, 0, 0, {}, [], TARGETS[target].runtime, status=NOT_RUN))
            continue
        require_target(target, convert=False, run=True)
        t1 = time.perf_counter()
        reports.append(check_parity(out_dir, model, v, images_dir, raise_on_fail=False, refs=refs))
        seconds[v] = time.perf_counter() - t1
    print(f"device formats: {len(entries)} variants built in {built:.0f} s, parity in "
          f"{time.perf_counter() - t0 - built:.0f} s", file=sys.stderr)
    update_manifest(out_dir, parity={r.variant: {"passed": r.passed, "failed": r.failed, **({"status": r.status}
                                                  if r.status else {})} for r in reports})
    return reports


def _build_artifact(model, out_dir: Path, variants, images_dir, calib, trt, trt_precision, opset,
                    refs: References) -> ArtifactResult:
    from tqdm import tqdm
    extra = [v for v in variants if Precision(v) is not Precision.FP32]
    bar = tqdm(total=2 + len(extra) + int(bool(extra)), desc="export", unit="step", leave=False)
    bar.set_postfix_str("onnx")
    export_onnx(model, out_dir, opset=opset)
    bar.update()
    if extra:
        bar.set_postfix_str(", ".join(map(str, extra)))
        build_variants(out_dir, extra, calib)
        bar.update()
    reports, seconds = [], {}
    for v in ["fp32", *extra]:
        bar.set_postfix_str(f"parity {Precision(v).value}")
        t0 = time.perf_counter()
        reports.append(check_parity(out_dir, model, Precision(v).value, images_dir, raise_on_fail=False, refs=refs))
        seconds[Precision(v).value] = time.perf_counter() - t0
        bar.update()
    bar.close()
    for r in reports:
        if r.passed is False and Precision(r.variant) in OPTIONAL:
            _drop_variant(out_dir, r)
    res = ArtifactResult(out_dir, reports, parity_s=seconds)
    readiness = {k: trt_readiness(out_dir / f, n) for k, f, n in
                 (("image", IMAGE_ONNX, IMAGE_INPUT.name), ("text", TEXT_ONNX, TEXT_INPUT.name))}
    update_manifest(out_dir, parity={r.variant: {"passed": r.passed, "failed": r.failed} for r in reports
                                     if not r.dropped}, trt_readiness=readiness)
    if trt:
        m = read_manifest(out_dir)
        size, ctx = m["image_size"], m["context_length"]
        for tower, shape, name in (("image", (1, 3, size, size), IMAGE_INPUT.name),
                                   ("text", (1, ctx), TEXT_INPUT.name)):
            plan = plan_build(_trt_version(), trt_precision, shape)
            src = out_dir / m["variants"][plan.onnx_variant][tower]
            res.engines[tower] = build_engine(src, out_dir / f"{tower}_encoder.{trt_precision}.plan", name, shape,
                                              trt_precision)
        update_manifest(out_dir, tensorrt=res.engines)
        reports.append(_trt_parity(out_dir, model, res.engines, trt_precision, images_dir, refs))
    return res


def _drop_variant(out_dir: Path, report: ParityReport) -> None:
    """Remove an optional variant that failed its gates: its files and manifest entry go, the reason stays."""
    import sys

    from edgeclip.outputs import write_json
    m = read_manifest(out_dir)
    entry = m["variants"].pop(report.variant)
    for name in (entry["image"], entry["text"]):
        for f in (out_dir / name, out_dir / weights_beside(name)):
            f.unlink(missing_ok=True)
    write_json(out_dir / MANIFEST, m)
    update_manifest(out_dir, dropped={report.variant: report.failed})  # and the file hashes without its files
    report.dropped = True
    print(f"{report.variant}: dropped (optional; failed {'; '.join(report.failed)})", file=sys.stderr)


def _trt_parity(out_dir: Path, model, engines: dict, precision: str, images_dir, refs) -> ParityReport:
    from .parity import PROMPTS, compare
    from .trt import TrtRuntime
    rt = TrtRuntime(out_dir, engines)
    images, labels = refs.images(images_dir, rt.preprocess.size, 64)
    gate = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-static"}[precision]
    metrics = compare(model, rt, images, PROMPTS, labels, tie_margin=TIE_MARGIN[Precision(gate)], refs=refs)
    return ParityReport(f"tensorrt-{precision}", len(images), len(PROMPTS), metrics, check_gates(gate, metrics))


def _trt_version() -> str:
    from .trt import tensorrt_version
    return tensorrt_version()
