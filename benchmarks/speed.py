"""CPU speed of every artifact, side by side in one run: PyTorch eager vs onnxruntime fp32 / fp32-opt / fp16 /
INT8, for a teacher and its student, at batch 1 and 32; peak RSS per runtime; model file sizes; and the parity
numbers of each variant. Default pair: random-init ViT-B-32 teacher vs an "8M" student (speed does not depend
on the weights). Usage:
    python benchmarks/speed.py [--teacher ViT-B-32 --target 8M] [--image-only]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from _common import plot_path, timeit, write

VARIANTS = ["fp32", "fp32-opt", "fp16", "int8-dynamic"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="ViT-B-32", help="teacher spec (random init for open_clip names)")
    p.add_argument("--target", default="8M", help="student vision budget")
    p.add_argument("--batches", default="1,32", help="batch sizes")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats (median)")
    p.add_argument("--threads", type=int, default=2, help="threads for torch and onnxruntime")
    p.add_argument("--name", default="speed", help="results file stem")
    return p.parse_args(argv)


def _peak_rss(code: str) -> float:
    """Peak RSS (MiB) of a fresh process running ``code`` (which must not print anything else).

    Reads VmHWM from /proc: ``ru_maxrss`` would include the parent's peak carried across fork + exec."""
    code += ("; print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))"
             " / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _ort_rss(artifact: str, variant: str, threads: int) -> float:
    return _peak_rss(f"import numpy as np, edgeclip.runtime as rt; r = rt.load({artifact!r}, {variant!r}, "
                     f"threads={threads}); s = r.preprocess.size; r.embed_pixels(np.zeros((8, 3, s, s), np.float32))")


def _torch_rss(spec: str, threads: int) -> float:
    return _peak_rss(f"import torch; torch.set_num_threads({threads}); from edgeclip.models import load_teacher; "
                     f"m = load_teacher({spec!r}); s = m.visual.image_size[0]; torch.set_grad_enabled(False); "
                     "m.encode_image(torch.zeros(8, 3, s, s))")


def bench_model(name: str, model, spec: str, workdir: Path, a) -> dict:
    import edgeclip.runtime as rt
    from edgeclip.export import export_artifact
    art = workdir / f"{name}-onnx"
    res = export_artifact(model, art, VARIANTS, images_dir=_photos())
    parity = {r.variant: {"passed": r.passed, "min_cos_image": r.metrics["image"]["min_cosine"],
                          "min_cos_text": r.metrics["text"]["min_cosine"],
                          "top1_agreement": r.metrics["retrieval"]["top1_agreement"]} for r in res.parity}
    m = json.loads((art / "manifest.json").read_text())
    size = m["image_size"]
    out = {"parity": parity, "latency_ms": {}, "rss_mib": {}, "file_mb": {}}
    model.eval()
    for b in map(int, a.batches.split(",")):
        x = torch.randn(b, 3, size, size)
        with torch.no_grad():
            out["latency_ms"][f"torch-eager/b{b}"] = timeit(lambda: model.encode_image(x), a.repeat)
        for v in VARIANTS:
            r = rt.load(art, v, threads=a.threads)
            xn = x.numpy()
            out["latency_ms"][f"ort-{v}/b{b}"] = timeit(lambda: r.embed_pixels(xn, b), a.repeat)
    out["rss_mib"]["torch-eager"] = _torch_rss(spec, a.threads)
    for v in VARIANTS:
        out["rss_mib"][f"ort-{v}"] = _ort_rss(str(art), v, a.threads)
        files = m["variants"][v]
        out["file_mb"][f"ort-{v}"] = sum(_size(art, files[t]) for t in ("image", "text")) / 1e6
    return out


def _size(art: Path, name: str) -> int:
    return sum(p.stat().st_size for p in art.glob(name + "*"))


def _photos():
    p = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-200"
    return p if p.is_dir() else None


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    from edgeclip.inherit import inherit_weights
    from edgeclip.models import load_teacher, model_config, save_student
    from edgeclip.models.params import count_params, student_config
    teacher = load_teacher(a.teacher)
    cfg = student_config(model_config(teacher), a.target if not a.target.endswith("%") else
                         round(count_params(teacher).vision * float(a.target[:-1]) / 100))
    student, _ = inherit_weights(teacher, cfg)
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        save_student(student, td / "student")
        results = {"teacher": a.teacher, "target": a.target, "threads": a.threads,
                   "params": {"teacher": count_params(teacher).__dict__, "student": count_params(student).__dict__},
                   "teacher_run": bench_model("teacher", teacher, a.teacher, td, a),
                   "student_run": bench_model("student", student, str(td / "student"), td, a)}
    lat_t, lat_s = results["teacher_run"]["latency_ms"], results["student_run"]["latency_ms"]
    results["ratios"] = {f"teacher-eager / student-{k}": lat_t[f"torch-eager/{k.split('/')[1]}"] / v
                         for k, v in lat_s.items()}
    write(a.name, results)
    _plot(results, a.name)


def _plot(r, name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = list(r["student_run"]["latency_ms"])
    fig, ax = plt.subplots(figsize=(10, 4))
    xs = np.arange(len(keys))
    ax.bar(xs - 0.2, [r["teacher_run"]["latency_ms"][k] for k in keys], 0.4, label=f"teacher ({r['teacher']})")
    ax.bar(xs + 0.2, [r["student_run"]["latency_ms"][k] for k in keys], 0.4, label=f"student ({r['target']})")
    ax.set_xticks(xs, keys, rotation=30, ha="right")
    ax.set_ylabel("image encoder latency (ms, median)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot_path(name), dpi=110)


if __name__ == "__main__":
    main()
