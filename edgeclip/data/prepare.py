"""One-time preparation of webdataset shards at the student's resolution (``edgeclip prepare``).

Why: at scale the data loader, not the accelerator, is the limit, and most of a sample's cost is decoding a
full-size JPEG only to shrink it to 224 px. Re-encoding every image once with its shortest side at ``size`` makes
every later epoch (and the teacher pass) decode a few times fewer pixels. Samples keep their ``__key__`` and
caption, so a teacher store keyed on the source shards still matches the prepared ones.

Reading goes through ``WdsPairs`` (same shard checks, same skip-and-count rule for corrupt samples); writing
through ``webdataset.ShardWriter`` into a hidden staging folder that replaces ``out`` only once complete.
"""
from __future__ import annotations

import io
import itertools
import time
from collections import Counter
from multiprocessing import get_context
from pathlib import Path

from PIL import Image

from ..outputs import KEY, atomic_path, check_output, write_json
from ..errors import DataError
from ..limits import JPEG_QUALITY, PREPARE_SIZE, WORKERS
from ..imageio import open_image
from .wds import WdsPairs, split_sample

KIND = "prepared-shards"
SHARD_SAMPLES = 10_000
SHARD_PATTERN = "shard-%06d.tar"
CHUNK = 64  # samples per task list handed to the pool per worker (bounded memory: Pool.imap would read ahead all)


def check_prepare_args(size: int, quality: int, workers: int | None) -> None:
    """One line for each bad argument, before anything is read or written."""
    PREPARE_SIZE.check(size)
    JPEG_QUALITY.check(quality)
    if workers is not None:
        WORKERS.check(workers)


def shrink(img: Image.Image, size: int) -> Image.Image:
    """Shortest side -> ``size`` (bicubic, antialiased); images already that small are left as they are."""
    w, h = img.size
    short = min(w, h)
    if short <= size:
        return img
    s = size / short
    return img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC, reducing_gap=3.0)


def _reencode(job: tuple) -> tuple:
    """(key, image bytes, caption) -> ("ok", key, jpeg, caption, kept) or ("skip", reason); runs in a worker."""
    key, data, cap, size, quality = job
    try:
        img = open_image(io.BytesIO(data))
    except Exception:
        return ("skip", "corrupt image")
    small = shrink(img, size)
    if small is img and data[:3] == b"\xff\xd8\xff":  # already small JPEG: keep its bytes (no second loss)
        return ("ok", key, data, cap, True)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=quality)
    return ("ok", key, buf.getvalue(), cap, False)


def _bounded_map(pool, jobs, chunk: int):
    """Ordered ``pool.map`` over ``jobs`` with one chunk in flight while the previous one is written."""
    it = iter(jobs)
    pending = None
    while True:
        nxt = list(itertools.islice(it, chunk))
        fut = pool.map_async(_reencode, nxt, chunksize=16) if nxt else None
        if pending is not None:
            yield from pending.get()
        if fut is None:
            return
        pending = fut


def prepare_shards(data: str, out: str | Path, size: int = 256, quality: int = 90, workers: int | None = None,
                   overwrite: bool = False, shard_samples: int = SHARD_SAMPLES, progress: bool = True) -> dict:
    """Re-encode the pairs of webdataset ``data`` at shortest side ``size`` into new shards in ``out``.

    Args:
        data: shard spec as ``compress --data`` takes it (brace list, folder of ``.tar``, ``pipe:CMD``).
        out: new folder; refused if it exists unless it is an earlier prepared-shards output and ``overwrite``.
        size: shortest side in pixels after preparation (>= 16; the student's input size or a little more).
        quality: JPEG quality of the re-encoded images.
        workers: processes re-encoding (default min(8, cores - 1); 0: in this process).
        shard_samples: samples per output shard (open_clip's shards hold ~10,000).

    Returns:
        The manifest written to ``out/manifest.json`` (counts of written, kept-as-is and skipped samples).
    """
    from webdataset import ShardWriter
    from tqdm import tqdm

    from .loader import check_workers

    check_prepare_args(size, quality, workers)
    workers = check_workers(workers)
    pairs = WdsPairs(data, shuffle_buffer=0)  # one line on no/unreadable shards, before anything is written
    local = [u.removeprefix("file:") for u in pairs.urls if not u.startswith("pipe:") and "://" not in u]
    if Path(str(data)).is_dir():  # never write into the folder of shards being read
        local.append(str(data))
    out = check_output(out, KIND, overwrite, inputs=local)
    skipped, kept, written, t0 = pairs.skipped, 0, 0, time.perf_counter()

    def jobs():
        for raw in pairs.raw(0, 0, 0, 1, shuffle=False):
            parts = split_sample(raw, skipped)
            if parts is not None:
                yield (*parts, size, quality)

    pool = get_context("spawn").Pool(workers) if workers else None
    try:
        results = _bounded_map(pool, jobs(), CHUNK * workers) if pool else map(_reencode, jobs())
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            with ShardWriter(str(tmp / SHARD_PATTERN), maxcount=shard_samples, verbose=0) as sink:
                for r in tqdm(results, desc=f"prepare {size}px", unit="img", disable=not progress):
                    if r[0] == "skip":
                        skipped.add(r[1])
                        continue
                    _, key, jpeg, cap, same = r
                    sink.write({"__key__": key, "jpg": jpeg, "txt": cap})
                    written += 1
                    kept += same
            shards = sorted(p.name for p in tmp.glob("*.tar"))
            manifest = {KEY: KIND, "source": str(data), "source_shards": pairs.urls, "size": size,
                        "quality": quality, "written": written, "kept_as_is": kept,
                        "skipped": dict(Counter(skipped.counts)), "shards": shards,
                        "shard_spec": str(out), "seconds": round(time.perf_counter() - t0, 2), "workers": workers}
            if not written:
                raise DataError(f"no readable pairs in {data!r} (skipped: {manifest['skipped']}); nothing written")
            write_json(tmp / "manifest.json", manifest)
    finally:
        if pool:
            pool.terminate()
    return manifest
