"""edgeclip against Hugging Face optimum on the same model, inputs and threads (issue #27): image-tower latency.

The model: a random HF ``CLIPModel`` of ViT-B/32 shape (224 px, seed 0), saved once by the side venv's transformers;
optimum exports its vision tower (``CLIPVisionModel``, task feature-extraction), edgeclip exports the whole model.
Arms, each timed in a fresh process, alternated (forward, then reversed) over ``--rounds``:
  optimum      onnxruntime  optimum-cli export onnx (fp32); optimum-cli onnxruntime quantize --avx2 / --avx512_vnni
                            (ORTQuantizer's dynamic INT8): an onnxruntime session with the threads set
               OpenVINO     optimum-cli export openvino --weight-format fp32 / int8 (NNCF weight-only): compiled with
                            optimum-intel's latency hint and OpenVINO's default precision (bf16 where the CPU has it)
                            (optimum's own classes do not fit: OVModelForFeatureExtraction asks for input_ids, and
                            ORTModelForFeatureExtraction returns last_hidden_state only; both add only overhead)
  edgeclip     every variant of ``edgeclip export --int8 --openvino`` on each backend it runs on, by edgeclip.runtime
Same inputs: the first ``--images`` photos (ShapesWorld scenes where the folder is absent), preprocessed once by
edgeclip and fed as float32 pixels to every arm; b1 is the first of them, b32 all 32. Quality: cosine of each arm's
image embedding with the PyTorch fp32 ``CLIPModel.get_image_features`` on those pixels (optimum's graphs stop at
``pooler_output``: its fp32 projection is applied outside the timed call, which only helps optimum). An edgeclip
arm counts only when its variant passed edgeclip's parity gates at export.

optimum runs in a venv of its own (``--venv``, made by this script when missing: optimum-onnx pins
huggingface-hub < 1, which gradio 6 in the main venv does not accept).

Usage:  python benchmarks/vs_optimum.py [--rounds 3] [--threads 2] [--repeat 10] [--work DIR]
Writes benchmarks/results/vs_optimum.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ["torch==2.14.1", "transformers==4.57.6", "optimum-onnx[onnxruntime]==0.1.0", "optimum-intel[openvino]==1.27.0",
        "onnxruntime==1.32.0", "openvino==2026.4.1", "nncf==3.4.0"]  # the main venv's runtimes, same versions
EDGECLIP_VARIANTS = ["int8-dynamic", "int8-dynamic-full", "int8-static", "bf16", "int8-weights"]  # + fp32
BATCHES = (1, 32)
SHORT = {"onnxruntime": "onnxruntime", "openvino": "OpenVINO"}
# ViT-B/32 (openai/clip-vit-base-patch32's config, random weights)
VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=32,
              image_size=224)
TEXT = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
            max_position_embeddings=77, vocab_size=49408)


def cpu_flags() -> set[str]:
    try:
        return set(next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return set()


# ---------------------------------------------------------------- side venv (optimum, transformers 4.x)

def ensure_venv(venv: Path) -> Path:
    """The side venv's python, made and filled with ``PINS`` when it does not import them yet."""
    py = venv / "bin" / "python"
    probe = "import optimum.onnxruntime, optimum.intel, transformers, onnxruntime, openvino, nncf"
    if py.is_file() and subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0:
        return py
    print(f"making the optimum venv at {venv} (a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *PINS], check=True)
    return py


def side_model(work: Path) -> None:
    """(side venv) The random ViT-B/32 CLIPModel, its vision tower alone (what optimum exports), and the fp32
    reference embeddings of ``pixels.npy``."""
    import numpy as np
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPVisionModel
    torch.manual_seed(0)
    if not (work / "hf" / "config.json").is_file():
        model = CLIPModel(CLIPConfig(vision_config=VISION, text_config=TEXT, projection_dim=512)).eval()
        model.save_pretrained(work / "hf", safe_serialization=True)
        vision = CLIPVisionModel(model.config.vision_config).eval()
        vision.vision_model.load_state_dict(model.vision_model.state_dict())
        vision.save_pretrained(work / "hf_vision", safe_serialization=True)
        np.save(work / "projection.npy", model.visual_projection.weight.detach().numpy().T.copy())  # [768, 512]
    if (work / "pixels.npy").is_file() and not (work / "reference.npy").is_file():
        model = CLIPModel.from_pretrained(work / "hf").eval()
        with torch.no_grad():
            ref = model.get_image_features(pixel_values=torch.from_numpy(np.load(work / "pixels.npy")))
        np.save(work / "reference.npy", torch.nn.functional.normalize(ref, dim=-1).numpy())


def side_exports(work: Path) -> dict:
    """(side venv) optimum's arms, each by the command a user runs; returns {arm: seconds to build}."""
    cli = str(Path(sys.executable).with_name("optimum-cli"))
    src, out, record = str(work / "hf_vision"), work / "optimum", work / "optimum_export_s.json"
    secs = json.loads(record.read_text()) if record.is_file() else {}
    jobs = {"ort-fp32": [cli, "export", "onnx", "--model", src, "--task", "feature-extraction", str(out / "ort-fp32")],
            "ov-fp32": [cli, "export", "openvino", "--model", src, "--task", "feature-extraction",
                        "--weight-format", "fp32", str(out / "ov-fp32")],
            "ov-int8-weights": [cli, "export", "openvino", "--model", src, "--task", "feature-extraction",
                                "--weight-format", "int8", str(out / "ov-int8-weights")]}
    for isa in ("avx2", "avx512_vnni"):
        if isa in cpu_flags():
            jobs[f"ort-int8-dynamic-{isa}"] = [cli, "onnxruntime", "quantize", "--onnx_model", str(out / "ort-fp32"),
                                              f"--{isa}", "-o", str(out / f"ort-int8-dynamic-{isa}")]
    for arm, cmd in jobs.items():
        if (out / arm).is_dir():
            continue
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(out / arm, ignore_errors=True)  # a half-written arm would count as built next time
            raise SystemExit(f"optimum {arm} failed:\n{r.stderr[-2000:]}")
        secs[arm] = round(time.perf_counter() - t0, 1)
        record.write_text(json.dumps(secs))
    return secs


# ---------------------------------------------------------------- timing worker (either venv)

def worker(spec: dict) -> dict:
    """Load one arm, check its embedding against the reference, time b1 and b32; runs in a fresh process."""
    import numpy as np
    work = Path(spec["work"])
    pixels, ref = np.load(work / "pixels.npy"), np.load(work / "reference.npy")
    threads = spec["threads"]
    info = {}
    if spec["tool"] == "edgeclip":
        from edgeclip.runtime import load
        rt = load(spec["path"], spec["variant"], threads=threads, backend=spec["backend"])

        def embed(x):
            return rt.embed_pixels(x, len(x))
        quality = embed  # already projected and normalised
    else:
        proj = np.load(work / "projection.npy")
        folder = Path(spec["path"])
        if spec["backend"] == "onnxruntime":  # optimum's session options: its defaults, with the threads set
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(next(folder.glob("*.onnx"))), so, providers=["CPUExecutionProvider"])

            def embed(x):
                return sess.run(["pooler_output"], {"pixel_values": x})[0]
        else:  # optimum-intel's compile config (latency hint), OpenVINO's default precision for this CPU
            import openvino as ov
            core = ov.Core()
            compiled = core.compile_model(core.read_model(str(folder / "openvino_model.xml")), "CPU",
                                          {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
            info["inference_precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            request = compiled.create_infer_request()

            def embed(x):
                return request.infer({"pixel_values": x})["pooler_output"]

        def quality(x):
            e = np.asarray(embed(x)) @ proj
            return e / np.linalg.norm(e, axis=1, keepdims=True)
    got = np.asarray(quality(pixels), np.float32)
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    out = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), **info}
    for b in BATCHES:
        x = np.ascontiguousarray(pixels[:b])
        for _ in range(spec["warmup"]):
            embed(x)
        ts = []
        for _ in range(spec["repeat"]):
            t = time.perf_counter()
            embed(x)
            ts.append((time.perf_counter() - t) * 1e3)
        out[f"b{b}_ms"] = ts
    return out


def run_worker(python: str, spec: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run([python, __file__, "worker", json.dumps(spec)], capture_output=True, text=True, env=env,
                       cwd=tempfile.gettempdir(), timeout=1200)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        raise SystemExit(f"worker {spec['tool']}/{spec['arm']} failed:\n{r.stderr[-2000:]}")
    return json.loads(lines[-1])


# ---------------------------------------------------------------- the run (main venv)

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="passes over the arms (order alternates)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads in every arm")
    p.add_argument("--repeat", type=int, default=10, help="timed calls per batch size per arm and round")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    p.add_argument("--images", default=str(ROOT.parent / "shared/data/imagenet-sample-200"),
                   help="photos for the inputs (ShapesWorld scenes if absent)")
    p.add_argument("--venv", default=str(ROOT / ".venv-optimum"), help="optimum's venv (made when missing)")
    p.add_argument("--work", default=None, help="work folder, kept and reused (default: a temporary one)")
    p.add_argument("--name", default="vs_optimum", help="results file stem")
    p.add_argument("--replot", action="store_true", help="only redraw the PNG from the results JSON")
    return p.parse_args(argv)


def edgeclip_export(work: Path, images: str | None) -> tuple[float, dict]:
    """``edgeclip export`` of the HF folder with every variant compared here, as a user runs it."""
    art = work / "edgeclip"
    if not (art / "manifest.json").is_file():
        cmd = [str(Path(sys.executable).with_name("edgeclip")), "export", str(work / "hf"), "--onnx", "--out", str(art)]
        cmd += [x for v in EDGECLIP_VARIANTS for x in ("--variant", v)]
        if images:
            cmd += ["--images", images, "--calib", images]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        print(r.stderr[-1500:], flush=True)
        if r.returncode != 0:
            raise SystemExit(f"edgeclip export failed (exit {r.returncode})")
        (work / "edgeclip_export_s.txt").write_text(f"{time.perf_counter() - t0:.1f}")
    from edgeclip.artifact import read_manifest
    return float((work / "edgeclip_export_s.txt").read_text()), read_manifest(art)


def make_pixels(work: Path, images: str | None, art: Path) -> None:
    import numpy as np

    from edgeclip.export.parity import parity_images
    from edgeclip.runtime import load
    rt = load(art, "fp32")
    imgs = parity_images(images, rt.preprocess.size, max(BATCHES))[0][:max(BATCHES)]
    np.save(work / "pixels.npy", rt.preprocess.batch(imgs).astype(np.float32))


def arms(work: Path, manifest) -> list[dict]:
    from edgeclip.artifact.formats import ONNX_RUNTIMES, runtimes_for
    out = []
    for d in sorted((work / "optimum").iterdir()):
        out.append({"tool": "optimum", "arm": d.name, "path": str(d),
                    "backend": "onnxruntime" if d.name.startswith("ort-") else "openvino"})
    for v, e in manifest.variants.items():
        verdict = manifest.parity[v].passed if v in manifest.parity else None
        for b in [r for r in runtimes_for(e) if r in ONNX_RUNTIMES]:
            out.append({"tool": "edgeclip", "arm": f"{b}/{v}", "variant": v, "backend": b, "passed": verdict,
                        "path": str(work / "edgeclip")})
    return out


def summarize(rows: list[dict]) -> dict:
    """Median ms per arm and batch over every timed call of every round, and per backend the ratio of edgeclip's
    fastest passing arm to optimum's fastest arm."""
    by_arm: dict[str, dict] = {}
    for r in rows:
        a = by_arm.setdefault(f"{r['tool']}:{r['arm']}", {k: r.get(k) for k in ("tool", "arm", "backend", "passed")}
                              | {"min_cosine": r["min_cosine"], "samples": {b: [] for b in BATCHES}})
        a["min_cosine"] = min(a["min_cosine"], r["min_cosine"])
        for b in BATCHES:
            a["samples"][b] += r[f"b{b}_ms"]
        if "inference_precision" in r:
            a["inference_precision"] = r["inference_precision"]
    for a in by_arm.values():
        a.update({f"b{b}_ms": round(statistics.median(a["samples"][b]), 2) for b in BATCHES})
        del a["samples"]
    table = {}
    for backend in ("onnxruntime", "openvino"):
        row = {}
        for b in BATCHES:
            opt = [a for a in by_arm.values() if a["tool"] == "optimum" and a["backend"] == backend]
            ours = [a for a in by_arm.values() if a["tool"] == "edgeclip" and a["backend"] == backend and a["passed"]]
            if not opt or not ours:
                continue
            o, e = min(opt, key=lambda a: a[f"b{b}_ms"]), min(ours, key=lambda a: a[f"b{b}_ms"])
            row[f"b{b}"] = {"optimum": o["arm"], "optimum_ms": o[f"b{b}_ms"],
                            "optimum_cos": round(o["min_cosine"], 5), "edgeclip": e["arm"],
                            "edgeclip_ms": e[f"b{b}_ms"], "edgeclip_cos": round(e["min_cosine"], 5),
                            "ratio": round(e[f"b{b}_ms"] / o[f"b{b}_ms"], 3)}
        table[backend] = row
    return {"arms": list(by_arm.values()), "ratios": table}


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(BATCHES), figsize=(11, 5.5))
    arms_ = sorted(summary["arms"], key=lambda a: (a["backend"], a["tool"], a["arm"]))
    for ax, b in zip(axes, BATCHES):
        ys = range(len(arms_))
        colours = ["#999" if a["tool"] == "optimum" else ("#4a4" if a["passed"] else "#ddd") for a in arms_]
        ax.barh(list(ys), [a[f"b{b}_ms"] for a in arms_], color=colours)
        ax.set_yticks(list(ys), [f"{a['tool']} {a['arm']}" + (f" [{a['inference_precision']} compute]"
                                 if a.get("inference_precision") else "") for a in arms_], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"median ms, batch {b}")
        ratios = ", ".join(f"{SHORT[k]} {v[f'b{b}']['ratio']:.2f}x" for k, v in summary["ratios"].items()
                           if f"b{b}" in v)
        ax.set_title(f"batch {b}: edgeclip best passing / optimum best\n{ratios}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def title(cpu: str, isa: list[str], threads: int) -> str:
    return f"random ViT-B/32 image tower, {threads} threads, {cpu} ({', '.join(isa)}); grey: optimum, green: edgeclip"


def main(argv=None) -> None:
    a = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import RESULTS, plot_path, write
    if a.replot:  # redraw the PNG from the JSON of an earlier run
        r = json.loads((RESULTS / f"{a.name}.json").read_text())
        return plot(r, plot_path(a.name), title(r["cpu"], r["isa"], r["threads"]))

    from edgeclip.runtime.bench import cpu_model
    images = a.images if Path(a.images).is_dir() else None
    side = ensure_venv(Path(a.venv))
    tmp = None if a.work else tempfile.TemporaryDirectory()
    work = Path(a.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    side_call = [str(side), __file__]
    subprocess.run([*side_call, "side-model", str(work)], check=True)
    opt_s = json.loads(subprocess.run([*side_call, "side-exports", str(work)], check=True, capture_output=True,
                                      text=True).stdout.strip().splitlines()[-1])
    print(f"optimum exports built: {opt_s}", flush=True)
    ec_s, manifest = edgeclip_export(work, images)
    print(f"edgeclip export: {ec_s:.0f} s, parity {manifest.timings.get('parity_s')} s", flush=True)
    if not (work / "reference.npy").is_file():
        make_pixels(work, images, work / "edgeclip")
        subprocess.run([*side_call, "side-model", str(work)], check=True)
    todo, rows = arms(work, manifest), []
    for r in range(a.rounds):
        for arm in (todo if r % 2 == 0 else todo[::-1]):
            spec = {**arm, "work": str(work), "threads": a.threads, "repeat": a.repeat, "warmup": a.warmup}
            res = run_worker(sys.executable if arm["tool"] == "edgeclip" else str(side), spec)
            rows.append({**arm, "round": r, **res})
            print(f"round {r} {arm['tool']:8s} {arm['arm']:34s} b1 {statistics.median(res['b1_ms']):8.2f} ms  "
                  f"b32 {statistics.median(res['b32_ms']):9.2f} ms  cos {res['min_cosine']:.5f}", flush=True)
    summary = summarize(rows)
    versions = subprocess.run([str(side), "-c", "import importlib.metadata as m, json; print(json.dumps({p: "
                               "m.version(p) for p in ('optimum-onnx', 'optimum-intel', 'optimum', 'transformers', "
                               "'onnxruntime', 'openvino', 'nncf')}))"], capture_output=True, text=True).stdout.strip()
    out = {"cpu": cpu_model(), "isa": sorted(cpu_flags() & {"avx2", "avx512_vnni", "avx512_bf16", "amx_bf16"}),
           "threads": a.threads, "rounds": a.rounds, "repeat": a.repeat, "photos": images is not None,
           "optimum_versions": json.loads(versions or "{}"), "optimum_export_s": opt_s, "edgeclip_export_s": ec_s,
           "edgeclip_timings": manifest.timings, **summary, "rows": rows}
    write(a.name, out)
    plot(summary, plot_path(a.name), title(out["cpu"], out["isa"], a.threads))
    for backend, row in summary["ratios"].items():
        for b, v in row.items():
            print(f"{backend:12s} {b:4s} optimum {v['optimum']:26s} {v['optimum_ms']:8.2f} ms | edgeclip "
                  f"{v['edgeclip']:30s} {v['edgeclip_ms']:8.2f} ms | {v['ratio']:.2f}x")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "side-model":
        side_model(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "side-exports":
        print(json.dumps(side_exports(Path(sys.argv[2]))))
    else:
        main()
