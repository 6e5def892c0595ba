"""The prepared GPU check (issue #24): run it first whenever a session is lent a GPU; one JSON, <= 8 min on one GPU.

  (a) precision  compress TEACHER -> TARGET for --steps in fp32, bf16 and fp16 (autocast + gradient scaler) on
                 the same shard, seed and order: no non-finite loss, the fp16 scaler skips at most --max-skips
                 steps, and the mean loss of the last 20% of steps is within --loss-rtol of fp32's
  (b) decode     --decode gpu (nvjpeg + tensor transforms) against the CPU decoder on the same JPEGs: max pixel
                 |delta| (normalised units) <= --pixel-atol, and images/s of each
  (c) ddp        torchrun with 2 ranks on the one GPU (nccl refuses two ranks per device, so
                 EDGECLIP_DIST_BACKEND=gloo) against 1 process with the same global batch: max weight |delta|
                 <= 1e-5, as tests/distill/test_torchrun.py checks on the CPU. A failure is recorded, not hidden
  (d) speed      benchmarks/vs_open_clip.py with --device cuda (open_clip_train's loop against compress)
  (e) memory     peak CUDA memory of a few compress steps per batch size
Without CUDA (``--device cpu``, which the test suite runs with tiny settings so the script cannot rot) the parts
that need a GPU are recorded as "skipped: needs CUDA" and the rest run on the CPU.
Data: ShapesWorld scenes written here as JPEGs into one webdataset shard (and beside a CSV for (c)): no files needed.
Usage:  python benchmarks/gpu_check.py [--device cuda] [--teacher ViT-B-32] [--target 8M] [--steps 200]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write

HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (the parts that run without a GPU)")
    p.add_argument("--teacher", default="ViT-B-32", help="teacher spec (random-init open_clip ViT-B-32: no weights)")
    p.add_argument("--target", default="8M", help="student budget")
    p.add_argument("--steps", type=int, default=200, help="steps per precision in (a)")
    p.add_argument("--batch-size", type=int, default=128, help="pairs per step in (a) and (c)")
    p.add_argument("--samples", type=int, default=2048, help="pairs in the shard")
    p.add_argument("--image-size", type=int, default=224, help="JPEG side in the shard")
    p.add_argument("--ddp-steps", type=int, default=20, help="steps of the 1-rank / 2-rank comparison")
    p.add_argument("--memory-batches", default="32,64,128,256", help="batch sizes for (e)")
    p.add_argument("--loss-rtol", type=float, default=0.05, help="(a): |mean tail loss - fp32's| / fp32's")
    p.add_argument("--max-skips", type=int, default=5, help="(a): fp16 steps the scaler may skip")
    p.add_argument("--pixel-atol", type=float, default=0.08, help="(b): max |delta| of normalised pixels (JPEG "
                   "decoders may differ by a few levels: 5/255 / std 0.26 = 0.075)")
    p.add_argument("--parts", default="precision,decode,ddp,speed,memory", help="comma list of parts to run")
    p.add_argument("--name", default="gpu_check", help="results file stem")
    return p.parse_args(argv)


def make_data(work: Path, n: int, size: int) -> tuple[Path, Path]:
    """ShapesWorld scenes as JPEGs (what nvjpeg decodes): one webdataset tar, and the same files beside a CSV for
    (c), whose ranks must see the very samples one process sees (streamed shards are split by rank instead)."""
    import webdataset as wds
    from edgeclip.data.pairs import ShapesPairs
    pairs, jpgs, rows = ShapesPairs(n), work / "jpg", ["filepath,title"]
    jpgs.mkdir()
    with wds.TarWriter(str(work / "shapes-000000.tar")) as sink:
        for i in range(n):
            img, cap = pairs.load(i)
            buf = io.BytesIO()
            img.resize((size, size)).save(buf, "JPEG", quality=90)
            sink.write({"__key__": f"{i:06d}", "jpg": buf.getvalue(), "txt": cap})
            (jpgs / f"{i:06d}.jpg").write_bytes(buf.getvalue())
            rows.append(f"jpg/{i:06d}.jpg,{cap}")  # ShapesWorld captions have no commas
    (work / "shapes.csv").write_text("\n".join(rows) + "\n")
    return work / "shapes-000000.tar", work / "shapes.csv"


def _compress(a, shard: Path, out: Path, steps: int, batch: int, **kw) -> dict:
    from edgeclip import compress
    res = compress(a.teacher, a.target, data=str(shard), steps=steps, stages=1, out=out, device=a.device,
                   batch_size=batch, evaluate=False, ckpt_every=10 ** 9, keep_ckpt=False,
                   workers=min(8, max(0, (os.cpu_count() or 1) - 1)), **kw)
    return res.report["stages"][0]


def part_precision(a, shard: Path, work: Path) -> dict:
    import math
    cuda = a.device.startswith("cuda")
    out = {}
    for prec in ("fp32", "bf16", "fp16"):
        if prec != "fp32" and not cuda:
            out[prec] = {"skipped": "needs CUDA (autocast)"}
            continue
        t0 = time.time()
        st = _compress(a, shard, work / f"prec_{prec}", a.steps, a.batch_size, precision=prec)
        curve = st["loss_curve"]
        tail = curve[-max(1, len(curve) // 5):]
        out[prec] = {"final_loss": st["final_loss"], "tail_mean_loss": statistics.fmean(tail), "loss_curve": curve,
                     "finite": all(math.isfinite(x) for x in curve), "skipped_steps": st["skipped_steps"],
                     "pairs_per_s": _rate(st["step_s"], a.batch_size), "wall_s": round(time.time() - t0, 1)}
    ref = out["fp32"]["tail_mean_loss"]
    for prec in ("bf16", "fp16"):
        r = out[prec]
        if "skipped" in r:
            continue
        r["rel_diff_vs_fp32"] = round(abs(r["tail_mean_loss"] - ref) / ref, 4)
        r["passed"] = bool(r["finite"] and r["rel_diff_vs_fp32"] <= a.loss_rtol
                           and (prec != "fp16" or r["skipped_steps"] <= a.max_skips))
    out["fp32"]["passed"] = out["fp32"]["finite"]
    return out


def _rate(step_s: list[float], batch: int) -> float:
    """Pairs/s over the steps after warm-up (the first 5, or half of a tiny run)."""
    t = step_s[min(5, len(step_s) // 2):]
    return round(batch * len(t) / max(1e-9, sum(t)), 1)


def part_decode(a, shard: Path) -> dict:
    import torch
    import webdataset as wds
    from edgeclip.data.gpu_decode import GpuTransform, decode_batch
    from edgeclip.data.skips import SkipCounter
    if not a.device.startswith("cuda"):
        return {"skipped": "needs CUDA (nvjpeg)"}
    blobs = [s["jpg"] for s in wds.WebDataset(str(shard), shardshuffle=False)][:512]
    spec = GpuTransform(224, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
    res = {}
    outs = {}
    for dev in ("cpu", a.device):
        decode_batch(blobs[:16], spec, dev, SkipCounter())  # warm-up (nvjpeg handles, kernels)
        if dev != "cpu":
            torch.cuda.synchronize()
        t0 = time.time()
        x, kept = decode_batch(blobs, spec, dev, SkipCounter())
        if dev != "cpu":
            torch.cuda.synchronize()
        res[f"{dev}_images_per_s"] = round(len(kept) / (time.time() - t0), 1)
        outs[dev] = x.float().cpu()
    diff = (outs["cpu"] - outs[a.device]).abs()
    res.update(images=len(blobs), max_abs_diff=round(float(diff.max()), 5), mean_abs_diff=round(float(diff.mean()), 6))
    res["passed"] = res["max_abs_diff"] <= a.pixel_atol
    return res


def part_ddp(a, csv: Path, work: Path) -> dict:
    """1 process against 2 torchrun ranks (same global batch); on CUDA both ranks share device 0 over gloo."""
    from safetensors.torch import load_file
    base = [str(Path(sys.executable).parent / "edgeclip"), "compress", a.teacher, "--target", a.target, "--data",
            str(csv), "--steps", str(a.ddp_steps), "--batch-size", str(min(a.batch_size, 64)), "--stages", "1",
            "--workers", "0", "--device", "cuda" if a.device.startswith("cuda") else "cpu"]
    env = {**os.environ, "EDGECLIP_DIST_BACKEND": "gloo", "PYTHONUNBUFFERED": "1"}
    if not a.device.startswith("cuda"):
        env["OMP_NUM_THREADS"] = "1"
    runs = {}
    for ranks in (1, 2):
        launch = [] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                        "--nproc_per_node", "2", "-m", "edgeclip.cli"]
        cmd = (launch + base[1:] if launch else base) + ["--out", str(work / f"ddp{ranks}")]
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        runs[ranks] = {"exit": p.returncode, "wall_s": round(time.time() - t0, 1),
                       "error": p.stderr.strip().splitlines()[-1][:300] if p.returncode and p.stderr.strip() else None}
    res = {"backend": "gloo", "runs": runs}
    if all(r["exit"] == 0 for r in runs.values()):
        w1, w2 = (load_file(str(work / f"ddp{r}" / "student" / "model.safetensors")) for r in (1, 2))
        res["max_abs_diff"] = max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1)
        res["passed"] = res["max_abs_diff"] <= 1e-5
    else:
        res["passed"] = False
    return res


def part_speed(a) -> dict:
    if not a.device.startswith("cuda"):
        return {"skipped": "needs CUDA (on the CPU: benchmarks/vs_open_clip.py)"}
    sys.path.insert(0, str(HERE))
    import vs_open_clip
    r = vs_open_clip.main(["--device", a.device, "--samples", "3840", "--epochs", "2", "--rounds", "2",
                           "--workers", "4", "--name", f"{a.name}_vs_open_clip"])
    return {k: {kk: v[kk] for kk in ("median_after_warmup", "median_epoch2", "x_open_clip_after_warmup",
                                     "x_open_clip_epoch2") if kk in v} for k, v in r["summary"].items()}


def part_memory(a, shard: Path, work: Path) -> dict:
    import torch
    if not a.device.startswith("cuda"):
        return {"skipped": "needs CUDA (torch.cuda.max_memory_allocated)"}
    out = {}
    for b in (int(x) for x in a.memory_batches.split(",")):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            _compress(a, shard, work / f"mem{b}", 5, b)
            out[str(b)] = {"peak_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)}
        except torch.cuda.OutOfMemoryError:
            out[str(b)] = {"peak_mib": None, "error": "out of memory"}
    return out


def main(argv=None) -> dict:
    a = parse_args(argv)
    import torch
    parts = [p for p in a.parts.split(",") if p]
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but no CUDA GPU is visible; use --device cpu")
    res = {"device": a.device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "options": vars(a), "parts": {}}
    t_all = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shard, csv = make_data(work, a.samples, a.image_size)
        runners = {"precision": lambda: part_precision(a, shard, work), "decode": lambda: part_decode(a, shard),
                   "ddp": lambda: part_ddp(a, csv, work), "speed": lambda: part_speed(a),
                   "memory": lambda: part_memory(a, shard, work)}
        for name in parts:
            t0 = time.time()
            try:
                res["parts"][name] = runners[name]()
            except Exception as e:  # noqa: BLE001 - a part that breaks is a finding; the other parts still run
                res["parts"][name] = {"passed": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            res["parts"][name]["seconds"] = round(time.time() - t0, 1)
            print(f"{name}: {json.dumps(res['parts'][name])[:300]}", flush=True)
            write(a.name, res)
    verdicts = [_passed(p) for p in res["parts"].values()]
    res["passed"] = all(v is not False for v in verdicts)
    res["minutes"] = round((time.time() - t_all) / 60, 2)
    write(a.name, res)
    return res


def _passed(part: dict):
    """True / False for a part that ran, None for one skipped (nested precisions are checked one by one)."""
    if "passed" in part:
        return part["passed"]
    sub = [v.get("passed") for v in part.values() if isinstance(v, dict) and "skipped" not in v]
    return None if not sub else all(x is not False for x in sub)


if __name__ == "__main__":
    r = main()
    sys.exit(0 if r["passed"] else 1)
