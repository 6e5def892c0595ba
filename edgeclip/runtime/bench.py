"""``edgeclip bench``: every backend x variant x batch x threads of an artifact, each in a fresh process.

Per config: median latency of the image encoder, images/s, peak RSS (``VmHWM`` of the worker process), file
size, the variant's parity verdict (from the manifest) and, for OpenVINO, its agreement with onnxruntime on the
same graph. Configs run one after another in an interleaved order (backends alternate) so that load from other
jobs spreads over all of them; compare ratios within one report only. ``fastest_record`` ranks the passing
(backend, variant) pairs per batch size: the record ``backend="auto"`` / ``variant="auto"`` read.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..artifact import weights_beside
from ..artifact.formats import ONNX_RUNTIMES, RUNTIMES, runtime_installed, runtimes_for
from ..artifact.manifest import Manifest, read_manifest, write_manifest
from ..errors import BackendError, ConfigError
from .backends import available_backends, parse_backend

__all__ = ["BenchConfig", "bench", "fastest_record", "bench_markdown", "write_report", "cpu_model", "record",
           "bench_pairs"]

BATCHES = (1, 8, 32)
ONNX_NAMES = ONNX_RUNTIMES
AGREE_MIN_COSINE = 0.999  # OpenVINO vs onnxruntime on the same graph: a backend bug, not quantisation, below this


@dataclass(frozen=True)
class BenchConfig:
    backend: str
    variant: str
    batch: int
    threads: int


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
    except Exception:
        return platform.processor() or "unknown"


def _worker(spec: dict) -> dict:
    """Runs inside the fresh process: load, warm up, time ``repeat`` calls; report ms and VmHWM."""
    from . import load
    if spec.get("gemm"):
        from .limits import gemm_peak
        res = gemm_peak(spec["backend"], spec["kind"], spec["threads"], spec.get("n", 1024), spec.get("seconds", 2.0))
    else:
        rt = load(spec["artifact"], spec["variant"], threads=spec["threads"], backend=spec["backend"],
                  allow_failed_parity=True)  # timed and reported with its verdict; only passing pairs are recorded
        s = rt.preprocess.size
        x = np.random.default_rng(0).standard_normal((spec["batch"], 3, s, s)).astype(np.float32)
        for _ in range(spec["warmup"]):
            rt.embed_pixels(x, spec["batch"])
        ts = []
        for _ in range(spec["repeat"]):
            t = time.perf_counter()
            rt.embed_pixels(x, spec["batch"])
            ts.append((time.perf_counter() - t) * 1e3)
        res = {"times_ms": ts}
    res["peak_rss_mib"] = next(int(ln.split()[1]) for ln in open("/proc/self/status")
                               if ln.startswith("VmHWM")) / 1024
    return res


def run_isolated(spec: dict, timeout: float = 600) -> dict:
    """``_worker(spec)`` in a fresh Python process (clean RSS, no allocator or thread-pool state carried over)."""
    r = subprocess.run([sys.executable, "-m", "edgeclip.runtime.bench", json.dumps(spec)], capture_output=True,
                       text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])})
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        err = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackendError(f"bench worker {spec.get('backend')}/{spec.get('variant', spec.get('kind'))} failed: {err[:200]}")
    return json.loads(lines[-1])


def _file_mb(art: Path, name: str) -> float:
    """An encoder's size with what it reads beside it (ONNX ``.data``; an OpenVINO ``.xml``'s ``.bin``)."""
    from ..artifact.manifest import encoder_bytes
    return encoder_bytes(art, name) / 1e6


def _agreement(art: Path, variant: str, n: int = 16) -> float:
    """Min cosine between OpenVINO and onnxruntime image embeddings of one variant on seeded inputs."""
    from . import load
    a = load(art, variant, allow_failed_parity=True)
    b = load(art, variant, backend="openvino", allow_failed_parity=True)
    s = a.preprocess.size
    x = np.random.default_rng(1).standard_normal((n, 3, s, s)).astype(np.float32)
    ea, eb = a.embed_pixels(x, 8), b.embed_pixels(x, 8)
    return float(((ea * eb).sum(1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1) + 1e-12)).min())


def _resolve(manifest: Manifest, backends, variants, threads) -> tuple[list[str], list[str], list[int]]:
    have = [b.value for b in available_backends()]
    backends = [parse_backend(b).value if b != "auto" else b for b in (backends or have)]
    if "auto" in backends:
        raise ConfigError("bench measures named backends; 'auto' is what it records")
    missing = [b for b in backends if b not in have and b in ONNX_NAMES]
    if missing:
        raise BackendError(f"backend {missing[0]!r} is not installed here (pip install 'edgeclip[{missing[0]}]')")
    known = list(manifest.variants)
    bad = [v for v in variants or () if v not in known]
    if bad:
        raise ConfigError(f"artifact has no variant {bad[0]!r}; it has {known}")
    threads = sorted(set(threads or (1, os.cpu_count() or 1)))
    if any(t < 1 for t in threads):
        raise ConfigError(f"threads must be >= 1, got {threads}")
    return backends, list(variants or known), threads


def bench_pairs(manifest: Manifest, backends: list[str] | None, variants: list[str]) -> list[tuple[str, str]]:
    """(runtime, variant) to time: each variant on every runtime that runs it here (its format's, per the registry)
    among ``backends`` (None: any installed). A variant no such runtime runs is left out."""
    ok = {r for r in RUNTIMES if runtime_installed(r)}
    return [(r, v) for v in variants for r in runtimes_for(manifest.variants[v])
            if r in ok and (backends is None or r in backends)]


def bench(artifact: str | Path, backends=None, variants=None, batches=BATCHES, threads=None, repeat: int = 5,
          warmup: int = 2, rounds: int = 1, peaks: bool = True, progress: bool = True) -> dict:
    """Benchmark an artifact folder; returns the report dict (see ``write_report``). Reads, never writes.

    Args:
        artifact: folder written by ``edgeclip export``.
        backends / variants: default all installed backends / all variants in the manifest.
        batches: image batch sizes. threads: thread counts (default 1 and all cores).
        repeat / warmup: timed / untimed calls per config and round; rounds: passes over all configs (median).
        peaks: also measure the GEMM peaks and report each latency as a fraction of them.

    Raises:
        ConfigError: not an artifact, unknown variant or backend. BackendError: a backend is not installed.
    """
    from tqdm import tqdm

    from .limits import GEMM_KINDS, encoder_flops
    art = Path(artifact)
    m = read_manifest(art)
    named = bool(backends)
    backends, variants, threads = _resolve(m, backends, variants, threads)
    if any(int(b) < 1 for b in batches):
        raise ConfigError(f"batch sizes must be >= 1, got {list(batches)}")
    if repeat < 1 or rounds < 1 or warmup < 0:
        raise ConfigError(f"need --repeat >= 1, --rounds >= 1, --warmup >= 0; got {repeat}, {rounds}, {warmup}")
    pairs = bench_pairs(m, backends if named else None, variants)
    if not pairs:
        raise ConfigError(f"no runtime installed here runs {variants} on {backends}")
    onnx = [v for v in variants if set(runtimes_for(m.variants[v])) & set(ONNX_NAMES)]  # "auto" picks among these
    shared = [v for v in onnx if set(ONNX_NAMES) <= set(runtimes_for(m.variants[v]))]  # one file, both backends
    agree = {v: _agreement(art, v) for v in shared if (("openvino", v) in pairs)}
    configs = [BenchConfig(be, v, b, t) for b in batches for t in threads for be, v in pairs]
    times: dict[BenchConfig, list[float]] = {c: [] for c in configs}
    rss: dict[BenchConfig, float] = {}
    mins: dict[BenchConfig, float] = {}
    bar = tqdm(total=len(configs) * rounds, desc="bench", disable=not progress)
    for r in range(rounds):
        for c in (configs if r % 2 == 0 else configs[::-1]):  # reverse every other round: no config always first
            out = run_isolated({"artifact": str(art), **asdict(c), "repeat": repeat, "warmup": warmup})
            times[c] += [statistics.median(out["times_ms"])]
            mins[c] = min(mins.get(c, float("inf")), min(out["times_ms"]))
            rss[c] = max(rss.get(c, 0.0), out["peak_rss_mib"])
            bar.update()
    bar.close()
    flops = {b: _flops(encoder_flops, art, m, b) for b in batches}
    gemm = []
    if peaks and importlib.util.find_spec("onnx") is None:
        print("bench: GEMM peaks skipped (they build graphs with onnx: pip install 'edgeclip[bench]')", file=sys.stderr)
    elif peaks:
            gemm = [run_isolated({"gemm": True, "backend": be, "kind": k, "threads": t})
                for t in threads for be in backends if be in GEMM_KINDS for k in GEMM_KINDS[be]]
    rows = []
    for c in configs:
        ms = statistics.median(times[c])
        passed = m.parity[c.variant].passed if c.variant in m.parity else None
        # "auto" picks among the ONNX graphs only: a device format is timed for its table, never chosen on this CPU
        # an OpenVINO-only variant was gated on OpenVINO itself; a shared one must also agree with onnxruntime
        ok = bool(passed) and c.variant in onnx and (c.backend == "onnxruntime" or c.variant not in shared or
                                                     agree.get(c.variant, 0) >= AGREE_MIN_COSINE)
        best = mins[c]
        gflops = flops[c.batch] / best / 1e6 if flops[c.batch] else None  # best case against the peak GEMM rate
        peak = _peak(gemm, c, m.variants[c.variant].precision)
        rows.append({**asdict(c), "median_ms": ms, "min_ms": best, "round_medians_ms": times[c], "images_per_s": c.batch / ms * 1e3,
                     "peak_rss_mib": rss[c], "file_mb": _file_mb(art, m.variants[c.variant].image),
                     "parity_passed": passed, "backend_agreement_min_cos": agree.get(c.variant),
                     "eligible": ok, "gflops": gflops, "peak_gflops": peak,
                     "fraction_of_peak": gflops / peak if peak and gflops else None})
    return {"edgeclip_output": "bench", "artifact": str(art.resolve()), "cpu": cpu_model(),
            "cores": os.cpu_count(), "shared_machine": True, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "settings": {"repeat": repeat, "warmup": warmup, "rounds": rounds, "batches": list(batches),
                         "threads": threads, "tower": "image"},
            "versions": _versions(), "image_flops": flops, "gemm_peaks": gemm, "results": rows,
            "fastest": fastest_record(rows)}


def _flops(encoder_flops, art: Path, m: Manifest, batch: int) -> int | None:
    """The fp32 image graph's FLOPs at ``batch``; None where onnx (the [bench] extra) is not installed: the
    fraction-of-peak column stays empty then, the timings do not need it."""
    import importlib.util
    fp32 = m.variants.get("fp32")
    if fp32 is None or importlib.util.find_spec("onnx") is None or not fp32.image.endswith(".onnx"):
        return None
    return encoder_flops(art / fp32.image, batch)


def _peak(gemm: list[dict], c: BenchConfig, precision: str) -> float | None:
    """The machine's limit a config is held to, at its thread count: the best fp32 GEMM any runtime reached for
    float variants, the best int8 GEMM (MatMulInteger or QDQ, any runtime) for int8 ones."""
    kinds = ("int8-matmulinteger", "int8-qdq") if precision == "int8" else ("fp32",)
    vals = [g["best_gflops"] for g in gemm if g["threads"] == c.threads and g["kind"] in kinds]
    return max(vals) if vals else None


def _versions() -> dict:
    """Installed versions of the runtimes timed (read from the package metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("onnxruntime", "openvino", "numpy", "executorch", "ai-edge-litert"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def fastest_record(rows: list[dict]) -> dict:
    """Per batch size, every passing (backend, variant) at the most threads measured, fastest first."""
    if not rows:
        return {"threads": None, "by_batch": {}}
    t = max(r["threads"] for r in rows)
    by_batch: dict[str, list] = {}
    for r in sorted((r for r in rows if r["threads"] == t and r["eligible"]), key=lambda r: r["median_ms"]):
        by_batch.setdefault(str(r["batch"]), []).append(
            {"backend": r["backend"], "variant": r["variant"], "median_ms": round(r["median_ms"], 3)})
    return {"threads": t, "by_batch": by_batch}


def bench_markdown(rep: dict) -> str:
    lines = [f"CPU: {rep['cpu']} ({rep['cores']} cores, shared with other jobs: {rep['shared_machine']}); "
             f"image encoder; median of {rep['settings']['repeat']} calls x {rep['settings']['rounds']} round(s)", "",
             "| backend | variant | batch | threads | median ms | images/s | % of GEMM peak (best run) | peak RSS MiB | file MB | "
             "parity | OV≈ORT min cos | eligible |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in rep["results"]:
        frac = "" if r["fraction_of_peak"] is None else f"{100 * r['fraction_of_peak']:.0f}%"
        ag = "" if r["backend_agreement_min_cos"] is None or r["backend"] == "onnxruntime" else \
            f"{r['backend_agreement_min_cos']:.5f}"
        verdict = {True: "pass", False: "FAIL", None: "not run"}[r["parity_passed"]]
        lines.append(f"| {r['backend']} | {r['variant']} | {r['batch']} | {r['threads']} | {r['median_ms']:.2f} | "
                     f"{r['images_per_s']:.1f} | {frac} | {r['peak_rss_mib']:.0f} | {r['file_mb']:.2f} | {verdict} | "
                     f"{ag} | {'yes' if r['eligible'] else 'no'} |")
    lines += ["", f"Fastest passing pair per batch size (threads={rep['fastest']['threads']}):", ""]
    for b, entries in rep["fastest"]["by_batch"].items():
        e = entries[0]
        lines.append(f"- batch {b}: {e['backend']} / {e['variant']} ({e['median_ms']:.2f} ms)")
    if rep["gemm_peaks"]:
        lines += ["", "| GEMM peak | kind | threads | best GFLOP/s | median GFLOP/s |", "|---|---|---:|---:|---:|"]
        lines += [f"| {g['backend']} | {g['kind']} | {g['threads']} | {g['best_gflops']:.0f} | {g['median_gflops']:.0f} |"
                  for g in rep["gemm_peaks"]]
    return "\n".join(lines) + "\n"


def plot(rep: dict, path: Path) -> bool:
    """``bench.png``; False (and one line on stderr) where matplotlib is not installed: the JSON and markdown
    reports do not need it."""
    try:
        import matplotlib
    except ImportError:
        print("bench: plot skipped (needs matplotlib: pip install 'edgeclip[bench]')", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = rep["results"]
    threads = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 4), squeeze=False)
    for ax, t in zip(axes[0], threads):
        for key in dict.fromkeys((r["backend"], r["variant"]) for r in rows):
            pts = sorted((r["batch"], r["images_per_s"]) for r in rows if (r["backend"], r["variant"]) == key
                         and r["threads"] == t)
            ax.plot(*zip(*pts), marker="o", ls="-" if key[0] == "onnxruntime" else "--", label=f"{key[0]} {key[1]}")
        ax.set(xscale="log", yscale="log", xlabel="batch", ylabel="images/s (image encoder)", title=f"{t} thread(s)")
        ax.legend(fontsize=7)
    fig.suptitle(f"edgeclip bench — {rep['cpu']} (shared machine)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(rep: dict, out: str | Path) -> Path:
    """``out/bench.json`` (``"edgeclip_output": "bench"``), ``bench.md`` and ``bench.png`` (where matplotlib is
    installed), written atomically."""
    from ..outputs import atomic_path
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "bench.json").write_text(json.dumps(rep, indent=2) + "\n")
        (tmp / "bench.md").write_text(bench_markdown(rep))
        plot(rep, tmp / "bench.png")
    return out


def record(artifact: str | Path, rep: dict) -> Path:
    """Write the report's fastest passing pairs into the artifact's manifest (what ``"auto"`` reads), through the
    manifest's one writer: the file hashes stay as the export recorded them.

    Raises:
        ConfigError: the artifact cannot be read, or its folder cannot be written (read-only): one line.
    """
    m = read_manifest(artifact)
    m.fastest = {**rep["fastest"], "cpu": rep["cpu"], "date": rep["date"]}
    return write_manifest(artifact, m)


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
