"""Data throughput: old per-sample tar reads vs the webdataset stream, loader rate vs step rate, store vs teacher.

(a) a 10,000-pair shard of real-size JPEGs (crops / flips / resizes to 300-640 px of the shared ImageNet photos):
    samples/s of the removed per-sample ``TarPairs.load`` (reopen the tar, scan the headers, decode) vs the
    webdataset stream (decode included in both).
(b) the loader's delivery rate with 0/1/2 DataLoader workers vs the rate one training step consumes, for the
    quickstart student (ShapesWorld, reference teacher -> 25%) and ViT-B-32 -> 8M at 224 px (JPEG shard).
(c) one epoch with the live teacher vs with a teacher store (quickstart setup).
(d) compress's peak RSS with a 10k- and a 100k-sample teacher store.

The machine is shared (2 cores, other jobs running): compare ratios within one run only. Usage:
    python benchmarks/data_throughput.py                 # ~5-10 min on 2 shared cores
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import plot_path, write

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "imagenet-sample-200" / "images"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default=str(PHOTOS), help="folder of source photos (the shared ImageNet sample)")
    p.add_argument("--work", default="/tmp/edgeclip-bench-data", help="folder for the generated shard and stores")
    p.add_argument("--pairs", type=int, default=10_000, help="pairs in the JPEG shard")
    p.add_argument("--old-samples", type=int, default=4, help="samples timed with the old per-sample reader")
    p.add_argument("--stream-samples", type=int, default=400, help="samples timed with the webdataset stream")
    p.add_argument("--loader-batches", type=int, default=6, help="batches timed per loader setting")
    p.add_argument("--batch-size", type=int, default=32, help="pairs per step in (b)")
    p.add_argument("--epoch-samples", type=int, default=512, help="pairs per epoch in (c)")
    p.add_argument("--skip-rss", action="store_true", help="skip (d)")
    p.add_argument("--parts", default="abcd", help="parts to run; others are kept from the last results JSON")
    return p.parse_args(argv)


def make_shard(path: Path, n: int, photos_dir: Path) -> Path:
    """n JPEG pairs made from the shared photos: random crop, flip, longest side 300-640 px, quality 90."""
    if path.is_file():
        return path
    srcs = sorted(Path(photos_dir).glob("*.JPEG")) + sorted(Path(photos_dir).glob("*.jpg"))
    photos = [Image.open(p).convert("RGB") for p in srcs]
    rng = random.Random(0)
    tmp = path.with_suffix(".part")
    with tarfile.open(tmp, "w") as tf:
        for k in range(n):
            im = photos[k % len(photos)]
            w, h = im.size
            cw, ch = int(w * rng.uniform(0.6, 1)), int(h * rng.uniform(0.6, 1))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            im2 = im.crop((x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                im2 = im2.transpose(Image.FLIP_LEFT_RIGHT)
            s = rng.randint(300, 640) / max(im2.size)
            im2 = im2.resize((max(1, round(im2.width * s)), max(1, round(im2.height * s))), Image.BICUBIC)
            b = io.BytesIO()
            im2.save(b, "JPEG", quality=90)
            cap = f"a photo, variant {k} of {srcs[k % len(srcs)].stem}".encode()
            for name, data in ((f"{k:06d}.jpg", b.getvalue()), (f"{k:06d}.txt", cap)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    tmp.rename(path)
    return path


def old_reader_rate(shard: Path, n: int) -> dict:
    """The removed ``TarPairs``: index every member once, then reopen + scan the tar for each sample."""
    from edgeclip.data.pairs import open_image
    with tarfile.open(shard) as tf:
        names = tf.getnames()
    items = sorted({nm.rsplit(".", 1)[0] for nm in names})
    idx = np.random.default_rng(0).choice(len(items), n, replace=False)
    t = time.perf_counter()
    for i in idx:
        with tarfile.open(shard) as tf:
            cap = tf.extractfile(f"{items[i]}.txt").read().decode()
            img = open_image(io.BytesIO(tf.extractfile(f"{items[i]}.jpg").read()))
        assert cap and img.size
    dt = time.perf_counter() - t
    return {"samples": n, "s": dt, "samples_per_s": n / dt, "s_per_sample": dt / n}


def stream_rate(shard: Path, n: int) -> dict:
    from edgeclip.data.wds import WdsPairs
    pairs = WdsPairs(str(shard))
    t, got = time.perf_counter(), 0
    for raw in pairs.raw(0, 0, 0, 1):
        if pairs.decode(raw) is not None:
            got += 1
        if got == n:
            break
    dt = time.perf_counter() - t
    return {"samples": got, "s": dt, "samples_per_s": got / dt}


def loader_rate(make_source, workers: int, batches: int) -> float:
    """Pairs/s the BatchLoader hands to the training loop (first batch excluded: worker start-up)."""
    from edgeclip.data.loader import BatchLoader
    src = make_source(workers)
    it = BatchLoader(src, workers).iterate(0, batches + 1)
    first = next(it)
    t, n = time.perf_counter(), 0
    for b in it:
        n += len(b[0])
    del first
    return n / (time.perf_counter() - t)


def step_rate(student, image_size: int, batch: int, ctx: int, steps: int = 3) -> float:
    """Pairs/s one training step of ``student`` consumes (stored teacher embeddings: no teacher forward)."""
    from edgeclip.distill.losses import affinity_loss
    from edgeclip.distill.config import DistillConfig, make_optimizer
    opt = make_optimizer(student, DistillConfig())
    px, ids = torch.randn(batch, 3, image_size, image_size), torch.randint(1, 49000, (batch, ctx))
    ti = torch.nn.functional.normalize(torch.randn(batch, student.visual.output_dim), dim=-1)
    student.train()

    def one():  # noqa: E306
        opt.zero_grad()
        s_i, s_t, _ = student(px, ids)
        affinity_loss(s_i, s_t, ti, ti)["loss"].backward()
        opt.step()
    one()
    t = time.perf_counter()
    for _ in range(steps):
        one()
    return batch * steps / (time.perf_counter() - t)


def _ratio(v: dict) -> None:
    """Step rate measured before and after the loaders (the machine is shared): the mean is the reference."""
    v["step_pairs_per_s"] = sum(v["step_pairs_per_s_before_after"]) / 2
    v["loader_over_step"] = {w: r / v["step_pairs_per_s"] for w, r in v["loader_pairs_per_s"].items()}


def part_b(a, shard: Path) -> dict:
    from edgeclip.data.loader import Batches, WdsBatches
    from edgeclip.data.pairs import ShapesPairs
    from edgeclip.data.wds import WdsPairs
    from edgeclip.inherit import inherit_weights
    from edgeclip.models import create_model, get_tokenizer, load_teacher, model_config
    from edgeclip.models.io import image_transform, preprocess_cfg
    from edgeclip.models.params import student_config
    out = {}
    teacher = load_teacher("reference")
    pre = preprocess_cfg(teacher)
    tok = get_tokenizer(teacher)
    student, _ = inherit_weights(teacher, student_config(model_config(teacher), "25%"))
    size = pre["size"] if isinstance(pre["size"], int) else pre["size"][0]
    shapes = ShapesPairs(4096, size)
    mk = lambda w: Batches(shapes, a.batch_size, 0, image_transform(pre), tok, tok)  # noqa: E731
    ctx = model_config(student)["text_cfg"]["context_length"]
    before = step_rate(student, size, a.batch_size, ctx)
    rates = {w: loader_rate(mk, w, a.loader_batches) for w in (0, 1, 2)}
    out["quickstart"] = {"image_size": size, "loader_pairs_per_s": rates,
                         "step_pairs_per_s_before_after": [before, step_rate(student, size, a.batch_size, ctx)]}
    del teacher, student
    big = create_model("ViT-B-32", seed=0)
    pre = preprocess_cfg(big)
    student = create_model(student_config(model_config(big), "8M"), seed=0)
    pairs = WdsPairs(str(shard), shuffle_buffer=100)
    tok = get_tokenizer(big)
    mk = lambda w: WdsBatches(pairs, a.batch_size, 0, image_transform(pre), tok, tok, workers=w)  # noqa: E731
    before = step_rate(student, 224, a.batch_size, 77)
    rates = {w: loader_rate(mk, w, a.loader_batches) for w in (0, 1, 2)}
    out["vit_b_32_to_8m_224px"] = {"image_size": 224, "loader_pairs_per_s": rates,
                                   "step_pairs_per_s_before_after": [before, step_rate(student, 224, a.batch_size, 77)]}
    for v in out.values():
        _ratio(v)
    return out


def part_c(a, work: Path) -> dict:
    """One epoch of the quickstart distillation: live teacher (fresh cache) vs a store written beforehand."""
    from edgeclip.data.loader import Batches
    from edgeclip.data.pairs import ShapesPairs
    from edgeclip.distill.store import TeacherStore, teach
    from edgeclip.distill import DistillConfig, TeacherCache, distill
    from edgeclip.inherit import inherit_weights
    from edgeclip.models import get_tokenizer, load_teacher, model_config
    from edgeclip.models.io import image_transform, preprocess_cfg
    from edgeclip.models.params import student_config
    teacher = load_teacher("reference")
    pre = preprocess_cfg(teacher)
    cfg = student_config(model_config(teacher), "25%")
    pairs = ShapesPairs(a.epoch_samples, pre["size"])
    store = work / f"store-shapes-{a.epoch_samples}"
    t = time.perf_counter()
    if not store.exists():
        teach(teacher, pairs, store, batch_size=128, workers=0)
    teach_s = time.perf_counter() - t
    res = {"teach_s": teach_s}
    steps = a.epoch_samples // 64
    for name, cache in (("live_teacher", TeacherCache()), ("store", TeacherStore.open(store, teacher, pre))):
        student, _ = inherit_weights(teacher, cfg)
        b = Batches(pairs, 64, 0, image_transform(pre), get_tokenizer(teacher), get_tokenizer(student))
        t = time.perf_counter()
        distill(student, teacher, b, DistillConfig(steps=steps, batch_size=64, warmup=2), cache=cache, desc=name)
        res[f"{name}_epoch_s"] = time.perf_counter() - t
    res["speedup"] = res["live_teacher_epoch_s"] / res["store_epoch_s"]
    return res


RSS_CHILD = """
import resource, sys, torch
torch.set_num_threads(1)
from edgeclip.distill import compress
compress("reference", "25%", data=f"shapes:{sys.argv[2]}", steps=4, batch_size=64, stages=1, workers=0,
         evaluate=False, teacher_store=sys.argv[1], out=sys.argv[3])
print("RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
status = dict(ln.split(":", 1) for ln in open("/proc/self/status").read().splitlines() if ":" in ln)
print("END_KB", status["VmRSS"].split()[0], status["RssAnon"].split()[0])
"""


def fake_store(path: Path, n: int) -> None:
    """A store in the real format with random embeddings for 'shapes:0..n-1' (the reference teacher's hash)."""
    from edgeclip.distill.store import StoreWriter, build_index, write_manifest
    from edgeclip.models import load_teacher
    from edgeclip.models.io import preprocess_cfg
    if path.exists():
        return
    teacher = load_teacher("reference")
    d = teacher.visual.output_dim
    tmp = path.with_name(path.name + ".part")
    tmp.mkdir(parents=True, exist_ok=True)
    w, rng = StoreWriter(tmp), np.random.default_rng(0)
    for s in range(0, n, 10_000):
        keys = [f"shapes:{i}" for i in range(s, min(n, s + 10_000))]
        w.add(keys, rng.standard_normal((len(keys), d)).astype(np.float16),
              rng.standard_normal((len(keys), d)).astype(np.float16))
    w.flush()
    count = build_index(tmp, w.shards)
    write_manifest(tmp, teacher, preprocess_cfg(teacher), f"ShapesWorld train[0:{n}] (random embeddings)", w.shards,
                   count, (d, d))
    tmp.rename(path)


def part_d(work: Path) -> dict:
    out = {}
    for n in (10_000, 100_000):
        store = work / f"fake-store-{n}"
        fake_store(store, n)
        r = subprocess.run([sys.executable, "-c", RSS_CHILD, str(store), str(n), str(work / f"rss-run-{n}")],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        kb = [int(ln.split()[1]) for ln in r.stdout.splitlines() if ln.startswith("RSS_KB")]
        end = [ln.split()[1:] for ln in r.stdout.splitlines() if ln.startswith("END_KB")]
        out[n] = {"peak_rss_mb": kb[0] / 1024 if kb else None, "error": None if kb else r.stderr[-400:],
                  "end_rss_mb": int(end[0][0]) / 1024 if end else None,
                  "end_anon_rss_mb": int(end[0][1]) / 1024 if end else None,
                  "store_mb": sum(f.stat().st_size for f in store.iterdir()) / 2**20}
        subprocess.run(["rm", "-rf", str(work / f"rss-run-{n}")])
    if all(v["peak_rss_mb"] for v in out.values()):
        out["difference_mb"] = out[100_000]["peak_rss_mb"] - out[10_000]["peak_rss_mb"]
        out["end_difference_mb"] = out[100_000]["end_rss_mb"] - out[10_000]["end_rss_mb"]
    return out


def plot(res: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    a = res["a_tar_read"]
    ax[0].bar(["old per-sample", "webdataset"], [a["old"]["samples_per_s"], a["stream"]["samples_per_s"]])
    ax[0].set_yscale("log"), ax[0].set_ylabel("samples/s (decode incl.)"), ax[0].set_title("(a) 10k-pair shard")
    for i, (k, v) in enumerate(res["b_loader_vs_step"].items()):
        ws = list(v["loader_pairs_per_s"])
        ax[1].bar([x + 0.4 * i for x in range(len(ws))], list(v["loader_pairs_per_s"].values()), 0.4, label=k)
        ax[1].axhline(v["step_pairs_per_s"], ls="--", color=f"C{i}")
    ax[1].set_xticks([x + 0.2 for x in range(3)], [f"{w} workers" for w in (0, 1, 2)])
    ax[1].set_yscale("log"), ax[1].set_title("(b) loader pairs/s (bars) vs step (dashed)"), ax[1].legend(fontsize=7)
    c = res["c_store_vs_teacher"]
    ax[2].bar(["live teacher", "store"], [c["live_teacher_epoch_s"], c["store_epoch_s"]])
    ax[2].set_ylabel("s per epoch"), ax[2].set_title("(c) quickstart epoch")
    fig.tight_layout()
    fig.savefig(plot_path("data_throughput"), dpi=100)


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(2)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    shard = make_shard(work / f"jpeg-{a.pairs}.tar", a.pairs, Path(a.photos))
    print(f"shard: {shard} ({shard.stat().st_size / 2**20:.0f} MB, {time.time() - t0:.0f} s)", flush=True)
    from _common import RESULTS
    old = RESULTS / "data_throughput.json"
    prev = json.loads(old.read_text()) if old.is_file() and a.parts != "abcd" else {}
    res = {**{k: v for k, v in prev.items() if k != "machine"}, "note": "2 shared CPU cores, other engineers' jobs running at the same time: compare ratios within "
                   "this run only", "shard_mb": shard.stat().st_size / 2**20, "pairs": a.pairs}
    if "a" in a.parts:
        res["a_tar_read"] = {"old": old_reader_rate(shard, a.old_samples), "stream": stream_rate(shard, a.stream_samples)}
        res["a_tar_read"]["speedup"] = (res["a_tar_read"]["stream"]["samples_per_s"]
                                        / res["a_tar_read"]["old"]["samples_per_s"])
    if "b" in a.parts:
        res["b_loader_vs_step"] = part_b(a, shard)
    if "c" in a.parts:
        res["c_store_vs_teacher"] = part_c(a, work)
    if "d" in a.parts and not a.skip_rss:
        res["d_store_rss"] = part_d(work)
    res.setdefault("parts_run", {})[time.strftime("%H:%M")] = a.parts
    print(json.dumps({k: v for k, v in res.items() if k.endswith(("read", "step", "teacher", "rss"))}), flush=True)
    res["wall_s"] = time.time() - t0
    res["command"] = "python benchmarks/data_throughput.py " + " ".join(argv or sys.argv[1:])
    write("data_throughput", res)
    plot(res)


if __name__ == "__main__":
    main()
