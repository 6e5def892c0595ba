"""Size, x86 latency and parity of every device format (issue #22), per target and precision, in one run.

For each model: ``edgeclip export --onnx --executorch --coreml --ort-mobile --int8`` in this venv, the LiteRT
variants by ``edgeclip export --litert --int8`` in the LiteRT venv (``bash .ci/litert_venv``; skipped with a note
when it is missing), then ``edgeclip bench`` over every variant that runs here (image encoder, batch 1 and 8,
threads 1 and all, each config in a fresh process, arms interleaved). Latency is measured on this x86 CPU through
each format's own runtime (XNNPACK for ExecuTorch and LiteRT): it is not a phone's latency, which cannot be
measured here. Core ML is converted only (predictions need macOS). Models:
  quickstart  the trained quickstart student (runs/quickstart/student; run 'edgeclip quickstart' first)
  vitb32      a random-init open_clip ViT-B-32 and its manual 8M student (inherited, untrained: speed and the
              fp32 parity gates do not depend on training; INT8 verdicts on random weights are not a quality claim)
Usage:  python benchmarks/mobile_targets.py [--models quickstart,vitb32] [--name mobile_targets]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, plot_path, write

ROOT = Path(__file__).resolve().parents[1]
LITERT_PY = Path(os.environ.get("EDGECLIP_LITERT_PYTHON", ROOT / ".venv-litert" / "bin" / "python"))
PHOTOS = next((p for p in (ROOT.parent / "shared" / "data" / "imagenet-sample-200",) if p.is_dir()), None)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="quickstart,vitb32", help="comma-separated: quickstart, vitb32")
    p.add_argument("--batches", default="1,8", help="batch sizes timed")
    p.add_argument("--threads", default=None, help="thread counts (default 1,all)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per config (median)")
    p.add_argument("--rounds", type=int, default=2, help="passes over all configs (alternating order)")
    p.add_argument("--name", default="mobile_targets", help="results file stem")
    return p.parse_args(argv)


def _student(name: str, work: Path) -> Path:
    if name == "quickstart":
        d = ROOT / "runs" / "quickstart" / "student"
        if not d.is_dir():
            raise SystemExit("no quickstart student: run 'edgeclip quickstart' first")
        return d
    from edgeclip.inherit import inherit_weights
    from edgeclip.models import load_teacher, model_config, save_student
    from edgeclip.models.params import student_config
    teacher = load_teacher("ViT-B-32")
    student, _ = inherit_weights(teacher, student_config(model_config(teacher), "8M"))
    save_student(student, work / "vitb32_8m")
    return work / "vitb32_8m"


def _run(cmd: list[str], log: Path) -> float:
    """Run one edgeclip command, its output to ``log``; returns seconds. A failed parity gate is a result (the
    artifact is written and the table shows FAIL); any other failure stops the benchmark."""
    t = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    gate = r.returncode == 2 and "parity gates failed" in log.read_text().strip().splitlines()[-1]
    if r.returncode != 0 and not gate:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed (exit {r.returncode}); see {log}")
    return time.perf_counter() - t


def _export(student: Path, out: Path, logs: Path) -> dict:
    photos = ["--images", str(PHOTOS)] if PHOTOS else []
    calib = ["--calib", str(PHOTOS)] if PHOTOS else []
    times = {"main": _run([sys.executable, "-m", "edgeclip.cli", "export", str(student), "--onnx", "--executorch",
                           "--coreml", "--ort-mobile", "--int8", *calib, *photos, "--out", str(out)],
                          logs / f"{out.name}_export.log")}
    if LITERT_PY.is_file():  # its own venv writes its own artifact; its variants are merged into ours below
        lt = out.parent / f"{out.name}_litert"
        times["litert"] = _run([str(LITERT_PY), "-m", "edgeclip.cli", "export", str(student), "--litert", "--int8",
                                *photos, "--out", str(lt)], logs / f"{out.name}_litert.log")
        _merge(lt, out)
    return times


def _merge(src: Path, dst: Path) -> None:
    """The LiteRT venv's variants, files and verdicts into the main artifact (both exported the same weights)."""
    import shutil

    from edgeclip.artifact.manifest import hash_folder, read_manifest, write_manifest
    a, b = read_manifest(src), read_manifest(dst)
    weights = [f for f in b.files if f.endswith(".onnx.data")]  # the graphs' metadata names each venv's paths
    if not weights or any(a.files.get(f) != b.files[f] for f in weights):
        raise SystemExit("the LiteRT venv exported other weights than the main one")
    lt = {v: e for v, e in a.variants.items() if e.format == "litert"}
    for e in lt.values():
        for f in e.files:
            shutil.copy(src / f, dst / f)
    reports = json.loads((dst / "parity.json").read_text()) + [r for r in json.loads((src / "parity.json").read_text())
                                                                if r["variant"] in lt]
    (dst / "parity.json").write_text(json.dumps(reports, indent=2) + "\n")
    b.variants.update(lt)
    b.parity.update({v: a.parity[v] for v in lt})
    b.files = hash_folder(dst)  # a benchmark's merged artifact: hashed like an export of both venvs' files
    write_manifest(dst, b)


def _table(model: str, art: Path, bench: dict) -> list[dict]:
    m = json.loads((art / "manifest.json").read_text())
    reports = {r["variant"]: r for r in json.loads((art / "parity.json").read_text())}
    rows = []
    for v, e in m["variants"].items():
        files = [art / e["image"], art / e["text"]]
        size = sum(sum(q.stat().st_size for q in p.rglob("*") if q.is_file()) if p.is_dir() else
                   sum(q.stat().st_size for q in art.glob(p.name + "*")) for p in files) / 1e6
        rep = reports.get(v, {})
        img = rep.get("metrics", {}).get("image", {})
        lat = {f"b{r['batch']}_t{r['threads']}": r["median_ms"] for r in bench["results"] if r["variant"] == v}
        rss = max((r["peak_rss_mib"] for r in bench["results"] if r["variant"] == v), default=None)
        rows.append({"model": model, "variant": v, "target": e.get("format", e.get("target", "onnx")), "size_mb": round(size, 2),
                     "parity": {True: "pass", False: "FAIL", None: rep.get("status", "not run")}[m["parity"][v]["passed"]]
                     if v in m["parity"] else "unchecked",
                     "image_max_abs_diff": img.get("max_abs_diff"), "image_min_cosine": img.get("min_cosine"),
                     "latency_ms": lat, "peak_rss_mib": rss, "failed": m["parity"].get(v, {}).get("failed", [])})
    return rows


def markdown(rows: list[dict], threads: list[int]) -> str:
    t_all = max(threads)
    head = f"| model | variant | size MB (both towers) | image b1, 1 thread ms | b1, {t_all} thr. | b8, {t_all} thr. | " \
           "peak RSS MiB | image max \\|Δ\\| | parity |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lat = r["latency_ms"]
        fmt = lambda k: f"{lat[k]:.2f}" if k in lat else "—"  # noqa: E731
        d, rss = r["image_max_abs_diff"], r["peak_rss_mib"]
        lines.append(f"| {r['model']} | {r['variant']} | {r['size_mb']:.2f} | {fmt('b1_t1')} | {fmt(f'b1_t{t_all}')} | "
                     f"{fmt(f'b8_t{t_all}')} | {'' if rss is None else f'{rss:.0f}'} | "
                     f"{'' if d is None else f'{d:.1e}'} | {r['parity']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, t_all: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        rs = [r for r in rows if r["model"] == model and f"b1_t{t_all}" in r["latency_ms"]]
        colors = {"onnx": "C0", "executorch": "C1", "litert": "C2", "ort-mobile": "C3"}
        for r in rs:
            ax.scatter(r["size_mb"], r["latency_ms"][f"b1_t{t_all}"], color=colors.get(r["target"], "k"),
                       marker="o" if r["parity"] == "pass" else "x")
            ax.annotate(r["variant"], (r["size_mb"], r["latency_ms"][f"b1_t{t_all}"]), fontsize=7)
        ax.set(xlabel="size of both encoders (MB)", ylabel=f"image encoder, batch 1, {t_all} threads (ms, x86)",
               title=model)
    fig.suptitle("device formats: size vs x86 latency (o = parity pass, x = fail); not phone latency", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    a = parse_args(argv)
    from edgeclip.runtime.bench import bench, cpu_model
    threads = [int(t) for t in a.threads.split(",")] if a.threads else sorted({1, os.cpu_count() or 1})
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows, export_s, work = [], {}, Path(tempfile.mkdtemp(prefix="edgeclip-mobile-"))
    for model in a.models.split(","):
        art = work / f"{model}_artifact"
        export_s[model] = _export(_student(model, work), art, logs)
        rep = bench(art, batches=[int(b) for b in a.batches.split(",")], threads=threads, repeat=a.repeat,
                    rounds=a.rounds, peaks=False)
        rows += _table(model, art, rep)
    out = {"cpu": cpu_model(), "threads": threads, "batches": a.batches, "rounds": a.rounds, "photos": bool(PHOTOS),
           "litert": LITERT_PY.is_file(), "export_seconds": export_s, "rows": rows,
           "note": "x86 latency through each format's own runtime; ARM/phone latency is not measured here; Core ML "
                   "is conversion only off macOS"}
    write(a.name, out)
    (RESULTS / f"{a.name}.md").write_text(f"CPU: {out['cpu']}\n\n" + markdown(rows, threads))
    plot(rows, plot_path(a.name), max(threads))
    print(markdown(rows, threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
