"""CPU speed of teacher-vs-student pairs through ``edgeclip bench``: onnxruntime and OpenVINO x fp32 / INT8
dynamic / INT8 static (QDQ) x batch x threads, each config in a fresh process (median latency, images/s, peak
RSS), file sizes, parity verdicts, GEMM peaks and the fraction of peak each encoder reaches; plus the issue-18
goal check (best INT8 at <= 0.5x onnxruntime fp32 at batch 1 and <= 0.4x at batch 32; fp32 within 1.5x of
the FLOP limit at batch 32). Pairs: a random-init ViT-B-32 and its manual "8M" student (speed does not depend on
the weights), and the reference teacher with its 25% student (``--student`` for a trained one). Usage:
    python benchmarks/speed.py [--pairs vitb32,reference] [--student /tmp/ov_student/student]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import plot_path, write

VARIANTS = ["fp32", "int8-dynamic", "int8-static"]
PHOTOS = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-200",
                           Path("/work/shared/data/imagenet-sample-200")) if p.is_dir()), None)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", default="vitb32,reference", help="comma-separated: vitb32, reference or "
                   "TEACHER_SPEC=TARGET")
    p.add_argument("--student", default=None, help="trained student folder of the reference teacher (default: "
                   "its inherited, untrained 25%% student — same speed)")
    p.add_argument("--batches", default="1,8,32", help="batch sizes")
    p.add_argument("--threads", default=None, help="thread counts (default 1,all)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per config (median)")
    p.add_argument("--rounds", type=int, default=1, help="passes over all configs")
    p.add_argument("--name", default="speed", help="results file stem")
    return p.parse_args(argv)


def _models(pair: str, student_dir: str | None):
    """``vitb32`` (ViT-B-32 + manual 8M), ``reference`` (+ 25%) or ``TEACHER_SPEC=TARGET``."""
    from edgeclip.inherit import inherit_weights
    from edgeclip.models import load_teacher, model_config
    from edgeclip.models.params import count_params, student_config
    spec, target = {"vitb32": ("ViT-B-32", "8M"), "reference": ("reference", "25%")}.get(pair) or pair.split("=", 1)
    teacher = load_teacher(spec)
    if pair == "reference" and student_dir:
        return teacher, load_teacher(student_dir), "trained 25% student"
    budget = round(count_params(teacher).vision * float(target[:-1]) / 100) if target.endswith("%") else target
    student, _ = inherit_weights(teacher, student_config(model_config(teacher), budget))
    return teacher, student, f"manual {target} student (inherited, untrained)"


def fill_peaks(rows: list[dict], gemm: list[dict]) -> None:
    """Peaks are measured once per run: hold later artifacts' rows to the same machine limits."""
    from edgeclip.runtime.bench import BenchConfig, _peak
    for r in rows:
        peak = _peak(gemm, BenchConfig(r["backend"], r["variant"], r["batch"], r["threads"]),
                     "int8" if r["variant"].startswith("int8") else "fp32")  # speed.py's own ONNX variants
        r["peak_gflops"], r["fraction_of_peak"] = peak, (r["gflops"] / peak if peak else None)


def goal_check(rows: list[dict]) -> dict:
    """Best INT8 latency / onnxruntime fp32 latency per batch (all threads), and fp32's fraction of peak."""
    t = max(r["threads"] for r in rows)
    out = {}
    for b in sorted({r["batch"] for r in rows}):
        at = [r for r in rows if r["batch"] == b and r["threads"] == t]
        ort32 = next(r for r in at if r["backend"] == "onnxruntime" and r["variant"] == "fp32")
        int8 = min((r for r in at if r["variant"].startswith("int8")), key=lambda r: r["median_ms"])
        int8_ok = min((r for r in at if r["variant"].startswith("int8") and r["eligible"]),
                      key=lambda r: r["median_ms"], default=None)
        fp32 = max((r for r in at if r["variant"] == "fp32"), key=lambda r: r["fraction_of_peak"] or 0)
        out[str(b)] = {"ort_fp32_ms": ort32["median_ms"], "best_int8": f"{int8['backend']}/{int8['variant']}",
                       "best_int8_ratio": int8["median_ms"] / ort32["median_ms"],
                       "best_passing_int8": None if int8_ok is None else f"{int8_ok['backend']}/{int8_ok['variant']}",
                       "best_passing_int8_ratio": None if int8_ok is None else int8_ok["median_ms"] / ort32["median_ms"],
                       "goal_ratio": 0.5 if b == 1 else 0.4 if b == 32 else None,
                       "fp32_best_fraction_of_peak": fp32["fraction_of_peak"], "fp32_best": fp32["backend"]}
    return out


def main(argv=None):
    a = parse_args(argv)
    from edgeclip.export import export_artifact
    from edgeclip.models.params import count_params
    from edgeclip.runtime.bench import bench, bench_markdown
    batches = [int(b) for b in a.batches.split(",")]
    threads = [int(t) for t in a.threads.split(",")] if a.threads else None
    results = {"shared_machine": True, "variants": VARIANTS, "pairs": {}}
    md = []
    with tempfile.TemporaryDirectory() as td:
        for pair in a.pairs.split(","):
            teacher, student, desc = _models(pair, a.student)
            res = {"student": desc}
            for role, model in (("teacher", teacher), ("student", student)):
                art = Path(td) / f"{pair}-{role}"
                exp = export_artifact(model, art, VARIANTS, images_dir=PHOTOS, calib_dir=PHOTOS)
                rep = bench(art, batches=batches, threads=threads, repeat=a.repeat, rounds=a.rounds,
                            peaks=not results.get("gemm_peaks"))
                results.setdefault("gemm_peaks", rep["gemm_peaks"])
                fill_peaks(rep["results"], results["gemm_peaks"])
                results.setdefault("cpu", rep["cpu"])
                results.setdefault("versions", rep["versions"])
                res[role] = {"params": count_params(model).__dict__, "image_flops": rep["image_flops"],
                             "parity": {r.variant: {"passed": r.passed, "failed": r.failed,
                                                    "min_cos_image": r.metrics["image"]["min_cosine"],
                                                    "top1_agreement": r.metrics["retrieval"]["top1_agreement"]}
                                        for r in exp.parity},
                             "results": rep["results"], "fastest": rep["fastest"], "goal": goal_check(rep["results"])}
                rep["gemm_peaks"] = results["gemm_peaks"]
                md.append(f"## {pair} {role} ({desc if role == 'student' else 'teacher'})\n\n" + bench_markdown(rep))
                print(md[-1], flush=True)
            results["pairs"][pair.split("=")[0].split("/")[-1]] = res
    write(a.name, results)
    (plot_path(a.name).with_suffix(".md")).write_text("\n".join(md))
    _plot(results, a.name)


def _plot(r, name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pairs = list(r["pairs"])
    fig, axes = plt.subplots(1, 2 * len(pairs), figsize=(5 * 2 * len(pairs), 4), squeeze=False)
    for ax, (pair, role) in zip(axes[0], [(p, ro) for p in pairs for ro in ("teacher", "student")]):
        rows = r["pairs"][pair][role]["results"]
        t = max(x["threads"] for x in rows)
        for key in dict.fromkeys((x["backend"], x["variant"]) for x in rows):
            pts = sorted((x["batch"], x["median_ms"]) for x in rows if (x["backend"], x["variant"]) == key
                         and x["threads"] == t)
            ax.plot(*zip(*pts), marker="o", ls="-" if key[0] == "onnxruntime" else "--", label=f"{key[0]} {key[1]}")
        ax.set(xscale="log", yscale="log", xlabel="batch", ylabel="image encoder ms (median)",
               title=f"{pair} {role}, {t} threads")
        ax.legend(fontsize=7)
    fig.suptitle(f"{r['cpu']} — shared machine, compare within this run only", fontsize=9)
    fig.tight_layout()
    fig.savefig(plot_path(name), dpi=100)


if __name__ == "__main__":
    main()
