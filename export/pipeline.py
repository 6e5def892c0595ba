"""``edgeclip export`` as one pipeline: plan -> build -> parity -> write the manifest once.

Why this order: every check that can fail on the user's input (unknown format, missing extra, an output that may
not be written) runs in the plan, before the model is touched; the exporters then only write files and return
variant records; parity runs each variant through the runtime its format names, from the manifest held in memory;
and ``manifest.json`` is written once, with the hash of every file, when nothing is left to change. The whole
folder is built hidden and renamed into place, so an interrupted export leaves no partial artifact.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeclip.artifact import PARITY_JSON, PARITY_MD, weights_beside
from edgeclip.artifact.formats import require_runtime, runs_on_this_platform, runtimes_for
from edgeclip.artifact.manifest import Verdict, hash_folder, write_manifest

from .formats import ExportBundle, build_format, plan_export
from .parity import ParityReport, References, check_parity, load_photos, parity_markdown
from .tolerances import OPTIONAL, Precision

__all__ = ["ArtifactResult", "export_artifact"]

NOT_RUN = "not run (needs {})"


@dataclass
class ArtifactResult:
    out: Path
    parity: list[ParityReport] = field(default_factory=list)
    parity_s: dict = field(default_factory=dict)  # variant -> seconds its parity check took

    @property
    def passed(self) -> bool:
        """No gate failed (variants that cannot run here, such as Core ML off macOS, have no verdict; optional
        variants that failed were dropped from the artifact)."""
        return all(r.passed is not False or r.dropped for r in self.parity)


def export_artifact(model, out: str | Path, variants=("fp32",), images_dir: str | Path | None = None,
                    calib_dir: str | Path | None = None, trt: bool = False, trt_precision: str = "fp16",
                    opset: int = 18, overwrite: bool = False, targets=(), int8_targets: bool = False,
                    labels: str | Path | None = None, templates: str | Path | None = None) -> ArtifactResult:
    """Export ``model``, build ``variants`` and the formats in ``targets``, gate each on parity, write the manifest.

    Args:
        model: canonical open_clip CLIP (fp32).
        out: artifact folder: new, empty, or (with ``overwrite``) an earlier artifact (``edgeclip.outputs``).
        variants: the ONNX variants (``fp32`` always; ``fp16``, ``int8-*``, OpenVINO's ``bf16`` / ``int8-weights``).
        images_dir / calib_dir: photos for parity / for static INT8 calibration.
        trt / trt_precision: also TensorRT engines (needs TensorRT and an NVIDIA GPU).
        targets: other registered formats by name (``executorch``, ``litert``, ``coreml``, ``ort-mobile``, ...).
        int8_targets: also their INT8 variants (static where offered and ``calib_dir`` is given).
        labels / templates: a label head (``export.heads``): a file of labels, one per line, and optionally one
            of prompt templates; ``Runtime.classify`` then needs no text tower.

    Returns:
        ``ArtifactResult``; a failed gate does not raise: its verdict is in the manifest and ``passed`` is False.

    Raises:
        ConfigError: ``out`` may not be written, or an unknown format. BackendError: a converter is missing.
        ExportError: a format could not be built.
    """
    from edgeclip.outputs import check_output, one_writer

    from .heads import read_head
    from .variants import require_openvino
    require_openvino(variants)  # names both packages OpenVINO's variants need
    plan = plan_export(list(variants), targets, int8_targets, bool(calib_dir), trt_precision if trt else None)
    head = read_head(labels, templates)  # checked up front
    with one_writer(check_output(out, "artifact", overwrite)):  # a second export to ``out`` is refused
        return _export_locked(model, check_output(out, "artifact", overwrite), plan, images_dir, calib_dir, opset,
                              head)


def _export_locked(model, out: Path, plan, images_dir, calib_dir, opset: int, head=None) -> ArtifactResult:
    """``export_artifact`` once ``out`` is checked (again, under the lock) and held."""
    from tqdm import tqdm

    from edgeclip.outputs import atomic_path, write_json, write_text

    from .onnx_export import model_manifest
    calib = load_photos(calib_dir, 64)[0] if calib_dir else None  # read once: every format's INT8 shares them
    refs = References(model.float().eval())  # PyTorch's side of parity, once for every variant
    with atomic_path(out) as tmp:
        tmp.mkdir()
        m = model_manifest(model, opset)
        bundle = ExportBundle(model.float().eval(), tmp, m, calib, opset)
        t0 = time.perf_counter()
        bar = tqdm(plan, desc="export", unit="format", leave=False)
        for fmt, settings in bar:  # build
            bar.set_description_str(f"export {fmt.name}")
            m.variants.update(build_format(fmt, bundle, settings))
        if head is not None:
            from .heads import write_head
            m.head = write_head(bundle.model, tmp, *head)
            print(f"label head: {m.head['count']:,} labels x {len(m.head['templates'])} template(s), "
                  f"{m.head['bytes'] / 1e6:.2f} MB", file=sys.stderr)
        built = time.perf_counter() - t0
        _record_sizes(m, tmp)
        res = ArtifactResult(out)
        bar = tqdm(list(m.variants), desc="parity", unit="variant", leave=False)
        for name in bar:  # parity
            bar.set_description_str(f"parity {name}")
            res.parity.append(_parity(bundle, name, images_dir, refs, res.parity_s))
        for r in res.parity:
            if r.passed is False and Precision._value2member_map_.get(m.variants[r.variant].gate) in OPTIONAL:
                _drop(bundle, r)
        m.parity = {r.variant: Verdict(r.passed, list(r.failed), r.status) for r in res.parity if not r.dropped}
        parity_s = sum(res.parity_s.values())
        m.timings = {"build_s": round(built, 2), "parity_s": round(parity_s, 2), "references_s": round(refs.seconds, 2),
                     "parity_s_by_variant": {k: round(v, 2) for k, v in res.parity_s.items()}}
        print(f"export: {len(m.variants)} variants built in {built:.0f} s; parity in {parity_s:.1f} s (PyTorch "
              f"references {refs.seconds:.1f} s, computed once)", file=sys.stderr)
        write_json(tmp / PARITY_JSON, [r.to_dict() for r in res.parity])
        write_text(tmp / PARITY_MD, parity_markdown(res.parity))
        m.files = hash_folder(tmp)  # every file, the parity reports included: an edited report is refused on load
        write_manifest(tmp, m)  # the one write
    return res


def _record_sizes(m, folder: Path) -> None:
    """Each variant's shipped bytes (image, text, tokenizer files) in its record and in the export log: the budget
    a phone app pays, which parameter counts alone do not show."""
    from edgeclip.artifact import TOKENIZER, VOCAB
    from edgeclip.artifact.manifest import variant_bytes
    lines = ["| variant | image MB | text MB | tokenizer MB | total MB |", "|---|---:|---:|---:|---:|"]
    for name, v in m.variants.items():
        b = v.options["bytes"] = variant_bytes(folder, v, (VOCAB, TOKENIZER))
        lines.append(f"| {name} | {b['image'] / 1e6:.2f} | {b['text'] / 1e6:.2f} | {b['tokenizer'] / 1e6:.2f} | "
                     f"{b['total'] / 1e6:.2f} |")
    print("what each variant ships:\n" + "\n".join(lines), file=sys.stderr)


def _parity(bundle: ExportBundle, name: str, images_dir, refs: References, seconds: dict) -> ParityReport:
    """One variant against PyTorch on the runtime its format names; 'not run' where that runtime cannot exist."""
    rec = bundle.manifest.variants[name]
    runtime = runtimes_for(rec)[0]
    if not runs_on_this_platform(runtime):
        from edgeclip.artifact.formats import RUNTIMES
        return ParityReport(name, 0, 0, {}, [], runtime, status=NOT_RUN.format(RUNTIMES[runtime].needs))
    require_runtime(runtime, f"parity of {name}")
    t0 = time.perf_counter()
    report = check_parity(bundle.out, bundle.model, name, images_dir, raise_on_fail=False, refs=refs,
                          manifest=bundle.manifest)
    seconds[name] = time.perf_counter() - t0
    return report


def _drop(bundle: ExportBundle, report: ParityReport) -> None:
    """Remove an optional variant that failed its gates: its files and record go, the reason stays."""
    m = bundle.manifest
    rec = m.variants.pop(report.variant)
    used = {f for v in m.variants.values() for f in v.files}
    for name in rec.files:
        if name not in used:
            for f in (bundle.out / name, bundle.out / weights_beside(name)):
                f.unlink(missing_ok=True)
    m.dropped[report.variant] = list(report.failed)
    report.dropped = True
    print(f"{report.variant}: dropped (optional; failed {'; '.join(report.failed)})", file=sys.stderr)
