"""Subcommands of the pipeline stages: compress, eval, export, parity, demo, quickstart.

Each is a thin wrapper: parse flags, call one public function, print its report.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._io import check_output
from .errors import ConfigError, ParityError

SHARED_PHOTOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "imagenet-sample-200"
VARIANT_CHOICES = ("fp32-opt", "fp16", "int8-dynamic", "int8-static")
QUICKSTART_OUT = "runs/quickstart"
QUICKSTART_ARTIFACT = f"{QUICKSTART_OUT}/artifact"  # where 'edgeclip demo' looks by default


def _photos_default() -> str | None:
    return str(SHARED_PHOTOS) if SHARED_PHOTOS.is_dir() else None


def _stages(value: str):
    """argparse type of --stages: 'auto' or an integer >= 1."""
    import argparse
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {value!r}")
    return int(value)


def _number(kind, lo: float, what: str):
    """argparse type: a finite ``kind`` (int or float) >= ``lo``; anything else is one usage error line."""
    import argparse
    import math

    def parse(value: str):
        try:
            x = kind(value)
        except ValueError:
            x = None
        if x is None or not math.isfinite(x) or x < lo:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value!r}")
        return x
    return parse


def _checked(check):
    """argparse type that runs one of edgeclip's own checkers on the string (its one-line error becomes argparse's)
    and keeps the string: the checker stays the only home of the rule."""
    def parse(value: str) -> str:
        import argparse

        from .errors import EdgeClipError
        try:
            check(value)
        except EdgeClipError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value
    return parse


def _check_budget(value: str) -> None:
    """--target: the one budget parser (``%`` is resolved once the teacher is loaded)."""
    from .models.params import budget_spec
    budget_spec(value)


def _check_data(value: str) -> None:
    """--data: 'shapes:N' needs a whole N >= 1 (other sources are checked when opened)."""
    from .data.pairs import shapes_count
    shapes_count(value)


_budget, _data = _checked(_check_budget), _checked(_check_data)
_STEPS = _number(int, 1, "an integer >= 1")
_BATCH = _number(int, 2, "an integer >= 2 (the affinity loss compares pairs within a batch)")
_POSITIVE = _number(float, 1e-300, "a positive finite number")


def _spec_path(spec):
    """The folder a model spec reads ('reference' is the shipped teacher), for check_output's inputs."""
    from .models import REFERENCE_TEACHER
    return REFERENCE_TEACHER if spec in (None, "reference") else spec
def _add_csv_flags(q) -> None:
    """open_clip's CSV flags, same names and defaults (the separator is sniffed when not given)."""
    q.add_argument("--csv-separator", default=None, help="CSV separator (default: sniffed among tab, comma, "
                   "semicolon and pipe, else tab as open_clip); '\\t' means tab")
    q.add_argument("--csv-img-key", default="filepath", help="CSV column of image paths (default: filepath)")
    q.add_argument("--csv-caption-key", default="title", help="CSV column of captions (default: title)")


def _csv_data(a, data):
    """A CSV path becomes a CsvPairs read with the --csv-* flags; anything else is passed on as it is."""
    if data is None or not Path(str(data)).is_file() or Path(str(data)).suffix.lower() == ".tar":
        return data
    from .data.pairs import CsvPairs
    return CsvPairs(data, a.csv_img_key, a.csv_caption_key, a.csv_separator)


def _model(spec, pretrained):
    """``--model NAME --pretrained FILE`` as open_clip takes them (a folder or 'reference' needs no file)."""
    from .models import load_teacher
    return load_teacher(spec, pretrained=pretrained)


def _cmd_compress(a) -> int:
    from .distill import compress
    teacher = _model(a.teacher, a.pretrained) if a.pretrained else a.teacher
    res = compress(teacher, a.target, data=_csv_data(a, a.data), steps=a.steps, epochs=a.epochs, method=a.method,
                   stages=a.stages, out=a.out, device=a.device,
                   batch_size=a.batch_size, lr=a.lr, resume=a.resume, seed=a.seed, depth=a.depth, width=a.width,
                   hf=a.hf, tie_layers=not a.per_layer,
                   prune_steps=a.prune_steps, workers=a.workers, precision=a.precision,
                   teacher_store=a.teacher_store, keep_ckpt=not a.drop_ckpt, overwrite=a.overwrite,
                   decode=a.decode)
    if not res.report:  # a torchrun rank other than 0: rank 0 prints
        return 0
    print((res.out / "report.md").read_text())
    print(f"student: {res.out / 'student'}")
    return 0


def _cmd_teach(a) -> int:
    from .distill.store import teach
    m = teach(a.teacher, a.data, a.out, batch_size=a.batch_size, workers=a.workers, device=a.device,
              overwrite=a.overwrite)
    if m:  # rank 0
        print(f"teacher store: {a.out} ({m['count']} samples, {len(m['shards'])} shards, dims {m['dims']})")
    return 0


def _cmd_prepare(a) -> int:
    from .data.prepare import prepare_shards
    m = prepare_shards(a.data, a.out, size=a.size, quality=a.quality, workers=a.workers, overwrite=a.overwrite)
    print(f"prepared shards: {a.out} ({m['written']} pairs at {m['size']} px in {len(m['shards'])} shards; "
          f"skipped {sum(m['skipped'].values())}: {m['skipped'] or 'none'})")
    return 0


def _cmd_eval(a) -> int:
    from ._io import write_json
    from .evaluate import evaluate_model
    inputs = [_spec_path(a.model), a.teacher and _spec_path(a.teacher), a.data, a.classes]
    out = None if a.out is None else check_output(a.out, "eval-report", a.overwrite, inputs)
    model = _model(a.model, a.pretrained)
    teacher = _model(a.teacher, a.teacher_pretrained) if a.teacher else None
    res = evaluate_model(model, a.data, teacher=teacher, class_names=a.classes, limit=a.limit,
                         csv_img_key=a.csv_img_key, csv_caption_key=a.csv_caption_key, csv_separator=a.csv_separator)
    print(json.dumps(res, indent=2))
    if out is not None:
        write_json(out, {"edgeclip_output": "eval-report", **res})
    return 0


def _variants(a) -> list[str]:
    v = ["fp32"] + list(a.variant or [])
    if a.fp16:
        v.append("fp16")
    if a.int8:
        v += ["int8-dynamic"] + (["int8-static"] if a.calib else [])
    return list(dict.fromkeys(v))


def _cmd_export(a) -> int:
    from .export import export_artifact
    if not a.onnx and not a.trt:
        raise ConfigError("nothing to export: pass --onnx and/or --trt")
    out = check_output(a.out, "artifact", a.overwrite, inputs=[_spec_path(a.model), a.images, a.calib])
    if a.int8 and not a.calib:
        print("note: --int8 without --calib builds int8-dynamic only", file=sys.stderr)
    if a.trt:  # fail before any work when TensorRT or the GPU is missing
        from .export.trt import require_tensorrt
        require_tensorrt()
    model = _model(a.model, a.pretrained)
    res = export_artifact(model, out, _variants(a), images_dir=a.images, calib_dir=a.calib, trt=a.trt,
                          trt_precision=a.trt_precision, opset=a.opset, overwrite=a.overwrite)
    print((res.out / "parity.md").read_text())
    return _verdict(res.parity)


def _verdict(reports) -> int:
    failed = [f"{r.variant}: {'; '.join(r.failed)}" for r in reports if not r.passed]
    if failed:
        raise ParityError("parity gates failed -> " + " | ".join(failed))
    print("parity: all gates passed")
    return 0


def _cmd_parity(a) -> int:
    from ._io import write_json, write_text
    from .export import check_parity, parity_markdown, read_manifest
    if a.report:  # PATH.json and PATH.md, both checked before anything is loaded
        inputs = [a.artifact, _spec_path(a.against), a.images]
        report = [check_output(Path(a.report).with_suffix(s), "parity-report", a.overwrite, inputs)
                  for s in (".json", ".md")]
    model = _model(a.against, a.pretrained)
    m = read_manifest(a.artifact)
    if m.get("model_cfg") and m["model_cfg"] != model.edgeclip_cfg:
        raise ConfigError(f"artifact {a.artifact!r} was exported from another architecture than {a.against!r}")
    variants = a.variant or list(m.get("variants", {}))
    from tqdm import tqdm
    reports = [check_parity(a.artifact, model, v, a.images, raise_on_fail=False, backend=a.backend)
               for v in tqdm(variants, desc="parity", unit="variant", leave=False)]
    print(parity_markdown(reports))
    if a.report:
        write_json(report[0], {"edgeclip_output": "parity-report", "reports": [r.to_dict() for r in reports]})
        write_text(report[1], parity_markdown(reports))
    return _verdict(reports)


def _cmd_bench(a) -> int:
    from .runtime.bench import bench, bench_markdown, write_report
    from ._io import check_output
    out = check_output(a.out, "bench", a.overwrite, inputs=[a.artifact])
    rep = bench(a.artifact, a.backend, a.variant, [int(b) for b in a.batches.split(",")],
                [int(t) for t in a.threads.split(",")] if a.threads else None, a.repeat, a.warmup, a.rounds,
                peaks=not a.no_peaks)
    write_report(rep, out)
    print(bench_markdown(rep))
    if not a.no_record:
        from .export import update_manifest
        update_manifest(a.artifact, fastest={**rep["fastest"], "cpu": rep["cpu"], "date": rep["date"]})
        print(f"recorded the fastest passing backend/variant per batch size in {a.artifact}/manifest.json")
    print(f"report: {out / 'bench.md'}")
    return 0


def _batches(value: str) -> str:
    """argparse type of --batches: comma-separated integers >= 1."""
    if not all(p.isdigit() and int(p) >= 1 for p in value.split(",")):
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 1, got {value!r}")
    return value


def _cmd_demo(a) -> int:
    """Check the demo's install first, build the quickstart student when the default artifact is missing, serve."""
    import importlib.util

    from .errors import BackendError
    if importlib.util.find_spec("gradio") is None:  # before anything is loaded, and before a 10-minute quickstart
        raise BackendError("the demo needs gradio, which is not installed: pip install 'edgeclip[demo]'")
    try:
        from .apps.demo.app import serve
    except ModuleNotFoundError as e:
        if (e.name or "").startswith("edgeclip.apps"):
            raise BackendError(f"this edgeclip install has no demo app ({e.name} is missing): reinstall edgeclip "
                               "(pip install 'edgeclip[demo]', or pip install -e . in a checkout)") from None
        raise BackendError(f"the demo needs {e.name!r}, which is not installed: pip install 'edgeclip[demo]'") from None
    if not (Path(a.artifact) / "manifest.json").is_file():
        if a.artifact != QUICKSTART_ARTIFACT:
            raise ConfigError(f"no exported artifact at {a.artifact!r}; run 'edgeclip export MODEL --onnx --out DIR'")
        print("no quickstart student yet: running 'edgeclip quickstart' first (about 10 min on 2 cores)")
        p = argparse.ArgumentParser(prog="edgeclip")
        add_commands(p.add_subparsers(dest="command"))
        _cmd_quickstart(p.parse_args(["quickstart"]))  # with its own defaults; a failed parity gate raises
    serve(a.artifact, a.teacher, a.gallery, a.host, a.port, block=True, pretrained=a.teacher_pretrained)
    return 0


def _cmd_quickstart(a) -> int:
    """compress + export into --out; an earlier quickstart (--overwrite) is replaced only once both are done."""
    import atexit
    import shutil
    from ._io import output_kind, replace_with, staging_path
    from .distill import compress
    from .export import export_artifact
    out = check_output(a.out, "run", a.overwrite, inputs=[_spec_path("reference"), a.images])
    work = staging_path(out) if output_kind(out) == "run" else out  # an earlier run passes only with --overwrite
    if work != out:
        atexit.register(shutil.rmtree, work.parent, True)  # a failed quickstart leaves the earlier one as it was
    res = compress("reference", a.target, data=f"shapes:{a.samples}", steps=a.steps, out=work, stages=a.stages,
                   batch_size=a.batch_size, seed=a.seed)
    art = export_artifact(res.student, work / "artifact", ["fp32", "fp32-opt", "fp16", "int8-dynamic"],
                          images_dir=a.images)
    if work != out:
        replace_with(work, out)
        work.parent.rmdir()
    print((out / "report.md").read_text())
    print((out / "artifact" / "parity.md").read_text())
    print(f"student: {out / 'student'}\nartifact: {out / 'artifact'}")
    return _verdict(art.parity)


def add_commands(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("compress", help="distill a teacher into a smaller student")
    q.add_argument("teacher", help="'reference', an open_clip name, a student folder or an HF CLIPModel folder")
    q.add_argument("--target", required=True, type=_budget, help="vision budget ('8M', '500k', '25%%') or JSON "
                   "'{\"image\": \"8M\", \"text\": \"3M\"}'")
    q.add_argument("--pretrained", default=None, help="checkpoint FILE of the teacher named (open_clip's --model "
                   "NAME --pretrained FILE); .safetensors, or .pt/.bin read without unpickling code")
    q.add_argument("--data", default=None, type=_data, help="a CSV (open_clip's filepath/title columns), webdataset "
                   "shards ('shards/{00000..00099}.tar', a folder of .tar, 'pipe:CMD'), or 'shapes[:N]' (the default "
                   "only for the reference teacher and its students)")
    _add_csv_flags(q)
    q.add_argument("--steps", type=_STEPS, default=800, help="optimizer steps in total (split across stages)")
    q.add_argument("--epochs", type=_POSITIVE, default=None, help="epochs over the data (overrides --steps)")
    q.add_argument("--method", choices=("manual", "auto", "scratch"), default="manual", help="weight inheritance")
    q.add_argument("--stages", default="auto", type=_stages, help="'auto' (<= ~50%% cut per stage) or a number")
    q.add_argument("--per-layer", action="store_true", help="auto method: untie masks so each layer of the last "
                   "stage keeps its own head/MLP counts (loads through edgeclip, not plain open_clip)")
    q.add_argument("--prune-steps", type=_STEPS, default=200, help="auto method: L0-mask steps per stage")
    q.add_argument("--depth", choices=("interval", "uniform"), default="interval", help="layer selection rule")
    q.add_argument("--width", choices=("leading", "magnitude"), default="leading", help="channel selection rule")
    q.add_argument("--batch-size", type=_BATCH, default=128, help="pairs per step")
    q.add_argument("--lr", type=_POSITIVE, default=None, help="peak learning rate (default 5e-4 * batch/128)")
    q.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cuda:LOCAL_RANK, nccl)")
    q.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="autocast precision on CUDA (loss and softmax stay fp32); fp32 on the CPU")
    q.add_argument("--workers", type=int, default=None, help="DataLoader workers decoding images "
                   "(default min(8, cores-1); 0: decode in the training process)")
    q.add_argument("--teacher-store", default=None, help="teacher embeddings written by 'edgeclip teach' "
                   "(stored samples never run the teacher)")
    q.add_argument("--decode", choices=("cpu", "gpu"), default="cpu", help="where images are decoded: cpu "
                   "(DataLoader workers) or gpu (nvjpeg on --device cuda; webdataset shards only; unverified)")
    q.add_argument("--seed", type=int, default=0, help="seed for init and data order")
    q.add_argument("--resume", action="store_true", help="continue from OUT/ckpt after an interruption")
    q.add_argument("--drop-ckpt", action="store_true", help="delete OUT/ckpt (resumable checkpoints, several "
                   "times the student's size) once the run has succeeded")
    q.add_argument("--hf", action="store_true", help="also save a Hugging Face CLIPModel copy (student/hf)")
    q.add_argument("--out", default="runs/student", help="output folder")
    q.add_argument("--overwrite", action="store_true", help="start over in an --out that holds an earlier run "
                   "(it is replaced only once the new run is complete)")
    q.set_defaults(func=_cmd_compress)

    q = sub.add_parser("teach", help="run a teacher once over the data and store its embeddings (for compress "
                       "--teacher-store)")
    q.add_argument("teacher", help="'reference', an open_clip name, a student folder or an HF CLIPModel folder")
    q.add_argument("--data", required=True, help="'shapes[:N]', a CSV/TSV (filepath,title) or webdataset shards")
    q.add_argument("--out", required=True, help="store folder to write")
    q.add_argument("--batch-size", type=int, default=256, help="pairs per teacher forward (per rank)")
    q.add_argument("--workers", type=int, default=None, help="DataLoader workers decoding images "
                   "(default min(8, cores-1))")
    q.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    q.add_argument("--overwrite", action="store_true", help="replace an existing teacher store at --out")
    q.set_defaults(func=_cmd_teach)

    q = sub.add_parser("prepare", help="re-encode webdataset shards once at the student's resolution (faster "
                       "decoding in every later epoch)")
    q.add_argument("--data", required=True, help="source webdataset shards ('shards/{00000..00099}.tar', a folder "
                   "of .tar, 'pipe:CMD')")
    q.add_argument("--size", type=int, default=256, help="shortest side in px after preparation (default 256; "
                   "smaller images are kept as they are)")
    q.add_argument("--out", required=True, help="new folder for the prepared shards (+ manifest.json)")
    q.add_argument("--quality", type=int, default=90, help="JPEG quality of the re-encoded images (1-100)")
    q.add_argument("--workers", type=int, default=None, help="processes re-encoding (default min(8, cores-1); "
                   "0: in this process)")
    q.add_argument("--overwrite", action="store_true", help="replace earlier prepared shards at --out")
    q.set_defaults(func=_cmd_prepare)

    q = sub.add_parser("eval", help="zero-shot and retrieval metrics of a model")
    q.add_argument("model", help="model to evaluate (name, student folder, HF folder, 'reference')")
    q.add_argument("--data", default="shapes", help="'shapes', an image folder (class per sub-folder or "
                   "manifest.csv) or a CSV of image,caption pairs")
    q.add_argument("--pretrained", default=None, help="checkpoint FILE of the model named")
    _add_csv_flags(q)
    q.add_argument("--classes", default=None, help="class-name file (one per line) for an image folder")
    q.add_argument("--teacher", default=None, help="also report teacher-student agreement")
    q.add_argument("--teacher-pretrained", default=None, help="checkpoint FILE of the --teacher named")
    q.add_argument("--limit", type=int, default=None, help="evaluate at most N items (images for a CSV)")
    q.add_argument("--out", default=None, help="write the JSON report here")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier eval report at --out")
    q.set_defaults(func=_cmd_eval)

    q = sub.add_parser("export", help="export a model to ONNX / TensorRT; parity runs automatically")
    q.add_argument("model", help="student folder (or any teacher spec)")
    q.add_argument("--pretrained", default=None, help="checkpoint FILE of the model named")
    q.add_argument("--onnx", action="store_true", help="export ONNX encoders")
    q.add_argument("--fp16", action="store_true", help="also an fp16 variant")
    q.add_argument("--int8", action="store_true", help="also INT8 (dynamic; static too with --calib)")
    q.add_argument("--calib", default=None, help="image folder for INT8 static calibration")
    q.add_argument("--variant", action="append", choices=VARIANT_CHOICES, help="extra variant (repeatable)")
    q.add_argument("--trt", action="store_true", help="build TensorRT engines (needs tensorrt + an NVIDIA GPU)")
    q.add_argument("--trt-precision", choices=("fp32", "fp16", "int8"), default="fp16", help="engine precision")
    q.add_argument("--images", default=_photos_default(), help="photos for parity (default: shared ImageNet sample)")
    q.add_argument("--opset", type=int, choices=(17, 18), default=18, help="ONNX opset")
    q.add_argument("--out", required=True, help="artifact folder (new or empty)")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier artifact at --out")
    q.set_defaults(func=_cmd_export)

    q = sub.add_parser("parity", help="check an exported artifact against PyTorch")
    q.add_argument("artifact", help="artifact folder written by 'edgeclip export'")
    q.add_argument("--against", required=True, help="the PyTorch model it came from")
    q.add_argument("--pretrained", default=None, help="checkpoint FILE of the --against model named")
    q.add_argument("--variant", action="append", default=None, help="variants to check (default: all)")
    q.add_argument("--images", default=_photos_default(), help="image folder (default: shared ImageNet sample)")
    q.add_argument("--report", default=None, help="write PATH.json and PATH.md")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier parity report at --report")
    q.add_argument("--backend", choices=("onnxruntime", "openvino"), default="onnxruntime",
                   help="runtime that runs the artifact (same gates for both)")
    q.set_defaults(func=_cmd_parity)

    q = sub.add_parser("bench", help="time every backend x variant x batch x threads of an artifact; record the "
                       "fastest passing pair per batch size in its manifest")
    q.add_argument("artifact", help="artifact folder written by 'edgeclip export'")
    q.add_argument("--backend", action="append", choices=("onnxruntime", "openvino"), default=None,
                   help="backend to time (repeatable; default: every installed one)")
    q.add_argument("--variant", action="append", default=None, help="variant to time (repeatable; default: all)")
    q.add_argument("--batches", type=_batches, default="1,8,32", help="comma-separated image batch sizes")
    q.add_argument("--threads", type=_batches, default=None, help="comma-separated thread counts (default: 1,all)")
    q.add_argument("--repeat", type=int, default=5, help="timed calls per config and round (median)")
    q.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    q.add_argument("--rounds", type=int, default=1, help="passes over all configs (alternating order)")
    q.add_argument("--no-peaks", action="store_true", help="skip the GEMM peak measurement")
    q.add_argument("--no-record", action="store_true", help="do not write the fastest pairs into the manifest")
    q.add_argument("--out", default="runs/bench", help="report folder (bench.json, bench.md, bench.png)")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier bench report in --out")
    q.set_defaults(func=_cmd_bench)

    q = sub.add_parser("demo", help="launch the Gradio demo (student ONNX next to teacher PyTorch)")
    q.add_argument("--artifact", default=QUICKSTART_ARTIFACT, help="exported student artifact folder (default: the "
                   "quickstart's, built first when missing)")
    q.add_argument("--teacher", default="reference", help="teacher spec")
    q.add_argument("--teacher-pretrained", default=None, help="checkpoint FILE of the --teacher named")
    q.add_argument("--gallery", default=None, help="image folder for the gallery (default: ShapesWorld scenes)")
    q.add_argument("--host", default="127.0.0.1", help="bind address")
    q.add_argument("--port", type=int, default=7860, help="port")
    q.set_defaults(func=_cmd_demo)

    q = sub.add_parser("quickstart", help="compress the reference teacher, export it, check parity, print the report")
    q.add_argument("--target", default="25%", type=_budget, help="vision budget (default 25%% of the teacher)")
    q.add_argument("--steps", type=_STEPS, default=800, help="distillation steps")
    q.add_argument("--samples", type=_BATCH, default=12_800, help="ShapesWorld training pairs")
    q.add_argument("--stages", default=1, type=_stages, help="'auto' or a number of stages")
    q.add_argument("--batch-size", type=_BATCH, default=128, help="pairs per step")
    q.add_argument("--seed", type=int, default=0, help="seed")
    q.add_argument("--images", default=_photos_default(), help="photos for parity")
    q.add_argument("--out", default=QUICKSTART_OUT, help="output folder")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier quickstart run at --out")
    q.set_defaults(func=_cmd_quickstart)
