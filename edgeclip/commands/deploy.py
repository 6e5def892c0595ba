"""``export``, ``parity``, ``bench``: turn a student into a checked artifact for the device, and time it there."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..artifact import PARITY_MD
from ..outputs import check_output
from ..errors import ConfigError
from .. import limits as L
from .common import TEXT, load_model, photos_default, spec_path, verdict

VARIANT_CHOICES = ("fp32-opt", "fp16", "int8-dynamic", "int8-dynamic-full", "int8-static", "bf16", "int8-weights")


def _variants(a) -> list[str]:
    """The ONNX variants: fp32 always (the artifact's base), INT8 with ``--int8`` when ONNX is a format asked for
    (``--onnx``, or ``--ort-mobile``/``--trt``, which are built from the ONNX variants)."""
    v = ["fp32"] + list(a.variant or [])
    if a.fp16:
        v.append("fp16")
    if a.int8 and (a.onnx or a.ort_mobile or a.trt):
        v += ["int8-dynamic", "int8-dynamic-full"] + (["int8-static"] if a.calib else [])
    if a.openvino:
        v += ["bf16", "int8-weights"]
    return list(dict.fromkeys(v))


def _targets(a) -> list[str]:
    """The device formats asked for: each registered format but the ONNX ones has its flag. Conversion-only ones
    (Core ML off macOS) get a note; what they need installed is ``plan_export``'s check."""
    from ..artifact.formats import FORMATS, RUNTIMES, runs_on_this_platform
    targets = [f for f in FORMATS if f not in ("onnx", "openvino-ir", "tensorrt")
               and getattr(a, f.replace("-", "_"), False)]
    for t in targets:
        runtime = FORMATS[t].runtimes[0]
        if not runs_on_this_platform(runtime):
            print(f"note: --{t} on {sys.platform} is conversion only: its runtime needs "
                  f"{RUNTIMES[runtime].needs}, so its parity is recorded as 'not run'", file=sys.stderr)
    return targets


def _cmd_export(a) -> int:
    from ..export import export_artifact
    from ..export.formats import plan_export
    from ..export.variants import require_openvino
    targets = _targets(a)
    require_openvino(_variants(a))  # before the model is loaded
    plan_export(_variants(a), targets, a.int8, bool(a.calib))  # converters and runtimes, before any work
    if not a.onnx and not a.trt and not targets:
        raise ConfigError("nothing to export: pass --onnx, --trt and/or a device format (--executorch, --litert, "
                          "--coreml, --ort-mobile)")
    out = check_output(a.out, "artifact", a.overwrite, inputs=[spec_path(a.model), a.images, a.calib, a.labels,
                                                                a.templates])
    from ..export.heads import read_head
    read_head(a.labels, a.templates)  # the head's files, checked before the model is loaded
    if a.int8 and not a.calib:
        print("note: --int8 without --calib builds no int8-static variant", file=sys.stderr)
    if a.trt:  # fail before any work when TensorRT or the GPU is missing
        from ..export.trt import require_tensorrt
        require_tensorrt()
    model = load_model(a.model, a.pretrained)
    res = export_artifact(model, out, _variants(a), images_dir=a.images, calib_dir=a.calib, trt=a.trt,
                          trt_precision=a.trt_precision, opset=a.opset, overwrite=a.overwrite, targets=targets,
                          int8_targets=a.int8, labels=a.labels, templates=a.templates)
    print((res.out / PARITY_MD).read_text())
    return verdict(res.parity)


def _cmd_parity(a) -> int:
    from ..outputs import write_json, write_text
    from ..artifact.manifest import read_manifest
    from ..export import check_parity, parity_markdown
    from ..models import model_config
    if a.report:  # PATH.json and PATH.md, both checked before anything is loaded
        inputs = [a.artifact, spec_path(a.against), a.images]
        report = [check_output(Path(a.report).with_suffix(s), "parity-report", a.overwrite, inputs)
                  for s in (".json", ".md")]
    m = read_manifest(a.artifact)
    variants = a.variant or _runnable(m, a.backend)
    _check_runnable(m, variants, a.backend)
    model = load_model(a.against, a.pretrained)
    if m.model_cfg and m.model_cfg != model_config(model):
        raise ConfigError(f"artifact {a.artifact!r} was exported from another architecture than {a.against!r}")
    from tqdm import tqdm
    reports = [check_parity(a.artifact, model, v, a.images, raise_on_fail=False, backend=a.backend)
               for v in tqdm(variants, desc="parity", unit="variant", leave=False)]
    print(parity_markdown(reports))
    if a.report:
        write_json(report[0], {"edgeclip_output": "parity-report", "reports": [r.to_dict() for r in reports]})
        write_text(report[1], parity_markdown(reports))
    return verdict(reports)


def _runnable(manifest, backend: str | None) -> list[str]:
    """The variants ``edgeclip parity`` checks by default: all that run here (on ``backend`` when it is named)."""
    from ..artifact.formats import runs_on_this_platform, runtimes_for
    out = []
    for v, rec in manifest.variants.items():
        runtimes = runtimes_for(rec)
        if not any(runs_on_this_platform(r) for r in runtimes):
            print(f"note: {v} is conversion only on {sys.platform} ({rec.format}); not checked", file=sys.stderr)
        elif backend is None or backend in runtimes:
            out.append(v)
    return out


def _check_runnable(manifest, variants: list[str], backend: str | None) -> None:
    """Before the model is loaded: each variant exists, and its runtime is installed and runs on this platform
    (a Core ML variant asked for on Linux is one line: conversion only)."""
    from ..artifact.formats import require_runtime, resolve
    for v in variants:
        require_runtime(resolve(manifest.variant(v), backend), v)


def _cmd_bench(a) -> int:
    from ..artifact.manifest import read_manifest
    from ..runtime.bench import bench, bench_markdown, write_report
    read_manifest(a.artifact)  # not an artifact, or one this edgeclip cannot read: one line, before any work
    out = check_output(a.out, "bench", a.overwrite, inputs=[a.artifact])
    rep = bench(a.artifact, a.backend, a.variant, a.batches, a.threads, a.repeat, a.warmup, a.rounds,
                peaks=not a.no_peaks)
    write_report(rep, out)
    print(bench_markdown(rep))
    if not a.no_record:  # measured and printed first: a read-only artifact still gets its numbers, then exit 2
        from ..runtime.bench import record
        try:
            record(a.artifact, rep)
        except ConfigError as e:
            raise ConfigError(f"measured, but the record could not be written: {e}") from None
        print(f"recorded the fastest passing backend/variant per batch size in {a.artifact}/manifest.json")
    print(f"report: {out / 'bench.md'}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register export, parity and bench on the ``edgeclip`` subparsers."""
    q = sub.add_parser("export", help="export a model to ONNX / TensorRT; parity runs automatically")
    q.add_argument("model", type=TEXT, help="student folder (or any teacher spec)")
    q.add_argument("--pretrained", type=TEXT, default=None, help="checkpoint FILE of the model named")
    q.add_argument("--onnx", action="store_true", help="export ONNX encoders (always written: the artifact's base)")
    q.add_argument("--executorch", action="store_true", help="also ExecuTorch .pte programs (XNNPACK; the "
                   "[executorch] extra)")
    q.add_argument("--litert", action="store_true", help="also LiteRT .tflite models (the [litert] extra, in a venv "
                   "of its own: see docs/runtime-and-devices.md)")
    q.add_argument("--coreml", action="store_true", help="also Core ML .mlpackage (fp32 + fp16; the [coreml] extra; "
                   "conversion only off macOS)")
    q.add_argument("--ort-mobile", action="store_true", help="also the ONNX variants in onnxruntime's .ort format, "
                   "with a reduced-operator config")
    q.add_argument("--fp16", action="store_true", help="also an fp16 variant")
    q.add_argument("--openvino", action="store_true", help="also OpenVINO's own variants: bf16 (its precision hint "
                   "on the fp32 graphs) and int8-weights (NNCF weight-only INT8, IR files); the [openvino] extra")
    q.add_argument("--int8", action="store_true", help="also INT8 (dynamic; static too with --calib), of every "
                   "format asked for")
    q.add_argument("--calib", type=TEXT, default=None, help="image folder for INT8 static calibration")
    q.add_argument("--variant", action="append", choices=VARIANT_CHOICES, help="extra variant (repeatable)")
    q.add_argument("--trt", action="store_true", help="build TensorRT engines (needs tensorrt + an NVIDIA GPU)")
    q.add_argument("--trt-precision", choices=("fp32", "fp16", "int8"), default="fp16", help="engine precision")
    q.add_argument("--images", type=TEXT, default=photos_default(),
                   help="photos for parity (default: shared ImageNet sample)")
    q.add_argument("--opset", type=int, choices=(17, 18), default=18, help="ONNX opset")
    q.add_argument("--labels", type=TEXT, default=None, help="a label head: FILE of labels, one per line (at most "
                   "100,000); the runtime's classify() then needs no text tower")
    q.add_argument("--templates", type=TEXT, default=None, help="FILE of prompt templates for --labels, one per "
                   "line, each with one {} (default: 'a photo of a {}.')")
    q.add_argument("--out", type=TEXT, required=True, help="artifact folder (new or empty)")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier artifact at --out")
    q.set_defaults(func=_cmd_export)

    q = sub.add_parser("parity", help="check an exported artifact against PyTorch")
    q.add_argument("artifact", type=TEXT, help="artifact folder written by 'edgeclip export'")
    q.add_argument("--against", type=TEXT, required=True, help="the PyTorch model it came from")
    q.add_argument("--pretrained", type=TEXT, default=None, help="checkpoint FILE of the --against model named")
    q.add_argument("--variant", type=TEXT, action="append", default=None, help="variants to check (default: all)")
    q.add_argument("--images", type=TEXT, default=photos_default(),
                   help="image folder (default: shared ImageNet sample)")
    q.add_argument("--report", type=TEXT, default=None, help="write PATH.json and PATH.md")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier parity report at --report")
    q.add_argument("--backend", choices=("onnxruntime", "openvino"), default=None,
                   help="runtime that runs the ONNX variants (same gates for both; default onnxruntime); the device "
                   "formats run on their own")
    q.set_defaults(func=_cmd_parity)

    q = sub.add_parser("bench", help="time every backend x variant x batch x threads of an artifact; record the "
                       "fastest passing pair per batch size in its manifest")
    q.add_argument("artifact", type=TEXT, help="artifact folder written by 'edgeclip export'")
    q.add_argument("--backend", action="append", choices=("onnxruntime", "openvino", "executorch", "litert"),
                   default=None, help="backend to time (repeatable; default: every installed one; the device formats "
                   "run on their own runtime and are timed, never recorded for 'auto')")
    q.add_argument("--variant", type=TEXT, action="append", default=None,
                   help="variant to time (repeatable; default: all)")
    q.add_argument("--batches", type=L.RangeList(L.BENCH_BATCH), default="1,8,32",
                   help="comma-separated image batch sizes")
    q.add_argument("--threads", type=L.RangeList(L.BENCH_THREADS), default=None,
                   help="comma-separated thread counts (default: 1,all)")
    q.add_argument("--repeat", type=L.REPEAT, default=5, help="timed calls per config and round (median)")
    q.add_argument("--warmup", type=L.WARMUP, default=2, help="untimed calls before timing")
    q.add_argument("--rounds", type=L.ROUNDS, default=1, help="passes over all configs (alternating order)")
    q.add_argument("--no-peaks", action="store_true", help="skip the GEMM peak measurement")
    q.add_argument("--no-record", action="store_true", help="do not write the fastest pairs into the manifest")
    q.add_argument("--out", type=TEXT, default="runs/bench", help="report folder (bench.json, bench.md, bench.png)")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier bench report in --out")
    q.set_defaults(func=_cmd_bench)
