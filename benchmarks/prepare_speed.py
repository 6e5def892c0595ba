"""Decode cost of source vs prepared shards (``edgeclip prepare``), per CPU core.

For the 10,000-pair shard of real-size JPEGs made by ``data_throughput.py`` (crops / flips / resizes to 300-640 px
of the shared ImageNet photos), and of those 200 photos at their own size (~200 kpx, the issue's reference), each
against its ``edgeclip prepare --size 256`` copy, one process on one thread times:
- read: the webdataset stream alone (tar members, no decode);
- decode + resize + centre crop + normalise to 224 px (open_clip's eval transform, the student's input), images/s;
- the one-time cost of preparing (decode + resize + JPEG re-encode), images/s, so the break-even epoch count
  follows. Rounds alternate source / prepared so load from other jobs hits both alike.
GPU decode (``compress --decode gpu``) is not measured: no GPU on this machine.

The machine is shared (2 cores, other jobs running): compare ratios within one run only. Usage:
    python benchmarks/prepare_speed.py [--samples 800 --rounds 2]      # ~2-3 min
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import torch

from _common import plot_path, write

DEFAULT_SHARD = "/tmp/edgeclip-bench-data/jpeg-10000.tar"
PHOTOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "imagenet-sample-200" / "images"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shard", default=DEFAULT_SHARD, help="source shard (made by benchmarks/data_throughput.py)")
    p.add_argument("--prepared", default="/tmp/edgeclip-bench-data/prepared-256", help="prepared copy (made here "
                   "with edgeclip prepare if absent)")
    p.add_argument("--size", type=int, default=256, help="shortest side of the prepared copy")
    p.add_argument("--image-size", type=int, default=224, help="student input size of the timed transform")
    p.add_argument("--samples", type=int, default=800, help="images timed per round and shard")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (best round is kept)")
    p.add_argument("--photos", default=str(PHOTOS), help="also time the shared ImageNet photos at their own size")
    return p.parse_args(argv)


def _raws(spec: str, n: int) -> list[dict]:
    from edgeclip.data.wds import WdsPairs
    pairs = WdsPairs(spec, shuffle_buffer=0)
    out = []
    for raw in pairs.raw(0, 0, 0, 1, shuffle=False):
        out.append(raw)
        if len(out) == n:
            break
    return out


def read_rate(spec: str, n: int) -> float:
    """Samples/s of the tar stream alone (page cache warm: the shard was read just before)."""
    from edgeclip.data.wds import WdsPairs
    pairs = WdsPairs(spec, shuffle_buffer=0)
    t, k = time.perf_counter(), 0
    for _ in pairs.raw(0, 0, 0, 1, shuffle=False):
        k += 1
        if k == n:
            break
    return k / (time.perf_counter() - t)


def decode_rate(raws: list[dict], tf) -> dict:
    """Images/s of decode + resize + crop + normalise (WdsPairs.decode, then the student's eval transform)."""
    from edgeclip.data.pairs import SkipCounter
    from edgeclip.data.wds import decode_sample
    skipped = SkipCounter()
    t, n, px = time.perf_counter(), 0, 0
    for raw in raws:
        item = decode_sample(raw, skipped)
        if item is None:
            continue
        px += item[1].width * item[1].height
        x = tf(item[1])
        n += 1
    dt = time.perf_counter() - t
    return {"images": n, "s": dt, "images_per_s": n / dt, "ms_per_image": 1000 * dt / n, "mean_kpx": px / n / 1e3,
            "skipped": dict(skipped.counts)}


def prepare_rate(raws: list[dict], size: int) -> dict:
    """Images/s of the one-time preparation (decode, resize, re-encode at quality 90), one core."""
    from edgeclip.data.pairs import SkipCounter
    from edgeclip.data.prepare import _reencode
    from edgeclip.data.wds import split_sample
    skipped = SkipCounter()
    jobs = [(*p, size, 90) for p in (split_sample(r, skipped) for r in raws) if p is not None]
    t = time.perf_counter()
    for j in jobs:
        _reencode(j)
    dt = time.perf_counter() - t
    return {"images": len(jobs), "s": dt, "images_per_s": len(jobs) / dt, "ms_per_image": 1000 * dt / len(jobs)}


def photos_shard(path: Path, photos: Path) -> Path:
    """The shared ImageNet photos at their own size (bytes as they are), one pair each."""
    import tarfile
    if path.is_file():
        return path
    tmp = path.with_suffix(".part")
    with tarfile.open(tmp, "w") as tf:
        for k, f in enumerate(sorted(photos.glob("*.JPEG"))):
            for name, data in ((f"{k:06d}.jpg", f.read_bytes()), (f"{k:06d}.txt", f"a photo of {f.stem}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    tmp.rename(path)
    return path


def measure(shard: Path, prep: Path, a, tf) -> dict:
    """One source shard vs its prepared copy: alternating rounds, best round of each kept."""
    from edgeclip.data.prepare import prepare_shards
    prep_wall = None
    if not (prep / "manifest.json").is_file():
        t = time.perf_counter()
        prepare_shards(str(shard), prep, size=a.size, workers=1, progress=False)
        prep_wall = time.perf_counter() - t
    manifest = json.loads((prep / "manifest.json").read_text())
    src_raws, prep_raws = _raws(str(shard), a.samples), _raws(str(prep), a.samples)
    rounds = {"source": [], "prepared": []}
    for _ in range(a.rounds):
        rounds["source"].append(decode_rate(src_raws, tf))
        rounds["prepared"].append(decode_rate(prep_raws, tf))
    best = {k: max(v, key=lambda r: r["images_per_s"]) for k, v in rounds.items()}
    prep_cost = prepare_rate(src_raws, a.size)
    saved_ms = best["source"]["ms_per_image"] - best["prepared"]["ms_per_image"]
    src_bytes = sum(len(next(r[k] for k in ("jpg", "jpeg", "png", "webp") if k in r)) for r in src_raws)
    prep_bytes = sum(len(r["jpg"]) for r in prep_raws)
    return {
        "source_shard": str(shard), "prepared": str(prep), "samples_per_round": len(src_raws),
        "read_samples_per_s": {"source": read_rate(str(shard), a.samples),
                               "prepared": read_rate(str(prep), a.samples)},
        "decode_transform": best, "decode_transform_rounds": rounds,
        "speedup_prepared_vs_source": best["source"]["ms_per_image"] / best["prepared"]["ms_per_image"],
        "prepare_cost": prep_cost,
        "break_even_epochs": prep_cost["ms_per_image"] / saved_ms if saved_ms > 0 else None,
        "kb_per_image": {"source": src_bytes / len(src_raws) / 1e3, "prepared": prep_bytes / len(prep_raws) / 1e3},
        "prepare_manifest": {k: manifest[k] for k in ("written", "kept_as_is", "skipped", "seconds", "workers")},
        "prepare_wall_s_this_run": prep_wall,
    }


def plot(res: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = res["sets"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, r) in enumerate(sets.items()):
        d = r["decode_transform"]
        ax[0].bar([i - 0.2, i + 0.2], [d["source"]["images_per_s"], d["prepared"]["images_per_s"]], 0.4,
                  color=["C0", "C1"])
        ax[1].bar([i - 0.2, i + 0.2], [r["kb_per_image"]["source"], r["kb_per_image"]["prepared"]], 0.4,
                  color=["C0", "C1"])
    for x in ax:
        x.set_xticks(range(len(sets)), list(sets))
    ax[0].set_ylabel("images/s per core"), ax[1].set_ylabel("kB per image")
    ax[0].set_title(f"decode+resize+crop+normalise to {res['image_size']} px (blue: source, orange: {res['size']} px)")
    ax[1].set_title("bytes per image")
    fig.tight_layout()
    fig.savefig(plot_path("prepare_speed"), dpi=100)


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(1)
    from open_clip.transform import image_transform
    t0 = time.time()
    shard = Path(a.shard)
    if not shard.is_file():
        sys.exit(f"{shard} not found: run benchmarks/data_throughput.py --parts a first (it makes the shard)")
    tf = image_transform(a.image_size, is_train=False)
    sets = {"bench shard (300-640 px)": measure(shard, Path(a.prepared), a, tf)}
    photos = Path(a.photos)
    if photos.is_dir():
        ps = photos_shard(shard.parent / "imagenet-photos.tar", photos)
        sets["ImageNet photos (own size)"] = measure(ps, shard.parent / f"imagenet-photos-prepared-{a.size}", a, tf)
    res = {
        "note": "2 shared CPU cores, other engineers' jobs running at the same time: compare ratios within this run "
                "only; one process, torch.set_num_threads(1) (rates are per core)",
        "size": a.size, "image_size": a.image_size, "rounds": a.rounds, "sets": sets,
        "gpu_decode": "not measured: no GPU on this machine (compress --decode gpu is unverified)",
    }
    res["wall_s"] = time.time() - t0
    res["command"] = "python benchmarks/prepare_speed.py " + " ".join(argv or sys.argv[1:])
    for name, r in sets.items():
        print(name, {k: round(v["images_per_s"], 1) for k, v in r["decode_transform"].items()},
              "x%.2f" % r["speedup_prepared_vs_source"], "prepare %.0f/s" % r["prepare_cost"]["images_per_s"],
              "break-even epochs %.2f" % (r["break_even_epochs"] or -1), r["kb_per_image"])
    write("prepare_speed", res)
    plot(res)


if __name__ == "__main__":
    main()
