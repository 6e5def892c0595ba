"""webdataset shards streamed through the ``webdataset`` library (the format open_clip and TinyCLIP train from).

Shards are read sequentially, never opened per sample: random access to a member of an uncompressed tar scans
every header before it (2 s per sample on a 10,000-pair shard). The stream of one DataLoader worker is a pure
function of ``(seed, epoch, rank, world, worker, workers)``: shard order is a seeded permutation per epoch,
shards are split by rank then by worker (by sample when there are fewer shards than readers), and the shuffle
buffer has its own seeded RNG. So a position is just "epoch + raw samples each worker has handed out", and
resume replays the tar reads (not the decodes) up to it.
"""
from __future__ import annotations

import io
import random
import shlex
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError
from ..imageio import open_image
from .skips import SkipCounter

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
PROBE_TIMEOUT_S = 30


def expand_shards(spec: str) -> list[str]:
    """``shards/{00000..00099}.tar``, ``a.tar::b.tar``, a folder of ``.tar`` files, or ``pipe:CMD`` -> urls."""
    from webdataset.shardlists import expand_urls
    s = str(spec)
    if not s.startswith("pipe:") and Path(s).is_dir():
        return [str(p) for p in sorted(Path(s).glob("*.tar"))]
    return list(expand_urls(s))


def _probe_pipe(url: str) -> None:
    """Run a ``pipe:`` command just long enough to see a tar header (one line error otherwise)."""
    cmd = url[len("pipe:"):]
    exe = (shlex.split(cmd) or [""])[0]
    if not shutil.which(exe):
        raise DataError(f"pipe command {cmd!r}: {exe!r} not found on PATH")
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        head = p.stdout.read(512)
    finally:
        p.kill()
        _, err = p.communicate(timeout=PROBE_TIMEOUT_S)
    if not _is_tar_header(head):
        why = err.decode(errors="replace").strip().splitlines()
        raise DataError(f"pipe command {cmd!r} gave no tar data" + (f": {why[-1][:160]}" if why else ""))


def _is_tar_header(head: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
        return True
    except (tarfile.HeaderError, ValueError):
        return False


def truncated(url: str) -> bool:
    """A local tar that does not end in whole 512-byte blocks with zero blocks last (its end-of-archive marker):
    it was cut (a copy or download that stopped). Python's tarfile reads such a stream up to the cut without an
    error, so the member at the cut (a JPEG or a caption) comes out short. Remote and ``pipe:`` shards: False."""
    if url.startswith("pipe:") or "://" in url:
        return False
    p = Path(url.removeprefix("file:"))
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            f.seek(max(0, size - 1024))
            tail = f.read()
    except OSError:
        return False  # unreadable: counted by the reader's handler
    return size % 512 != 0 or tail.count(0) != len(tail)


def drop_cut_samples(samples: Iterator[dict], cut: set[str], skipped) -> Iterator[dict]:
    """``samples`` minus the last one read from each shard in ``cut`` (it may be short), counted."""
    held = None
    for s in samples:
        if held is not None and (held.get("__url__") not in cut or s.get("__url__") == held.get("__url__")):
            yield held
        elif held is not None:
            skipped.add("last sample of a truncated tar")
        held = s
    if held is not None:
        if held.get("__url__") in cut:
            skipped.add("last sample of a truncated tar")
        else:
            yield held


def check_shards(urls: list[str], spec: str) -> None:
    """Fail in one line before training: no shards, a missing or non-tar local shard, a failing pipe."""
    if not urls:
        raise DataError(f"no webdataset shards match {spec!r}")
    for u in urls:
        if u.startswith("pipe:"):
            continue
        if "://" in u:  # remote urls are left to webdataset's gopen (and counted if unreadable)
            continue
        p = Path(u.removeprefix("file:"))
        if not p.is_file():
            raise DataError(f"shard {u!r} not found")
        try:
            with open(p, "rb") as f:
                ok = _is_tar_header(f.read(512))
        except OSError as e:
            raise DataError(f"shard {u!r} is not readable: {e.strerror}") from None
        if not ok:
            raise DataError(f"shard {u!r} is not a tar file")
    pipes = [u for u in urls if u.startswith("pipe:")]
    if pipes:
        _probe_pipe(pipes[0])


class WdsPairs:
    """A webdataset corpus (``KEY.jpg|png|webp`` + ``KEY.txt`` members): streamable, not index-addressable."""

    streaming = True

    def __init__(self, spec: str, shuffle_buffer: int = 1000):
        self.spec, self.shuffle_buffer = str(spec), shuffle_buffer
        self.urls = expand_shards(self.spec)
        check_shards(self.urls, self.spec)
        self.skipped = SkipCounter()

    def describe(self) -> str:
        return f"webdataset {self.spec} ({len(self.urls)} shards)"

    def raw(self, epoch: int, seed: int, slot: int, slots: int, shuffle: bool = True) -> Iterator[dict]:
        """Undecoded samples of reader ``slot`` of ``slots`` (= rank * workers + worker) in ``epoch``."""
        from webdataset.filters import _shuffle
        from webdataset.tariterators import tarfile_samples

        order = np.random.default_rng((seed, epoch)).permutation(len(self.urls)) if shuffle else \
            np.arange(len(self.urls))
        urls = [self.urls[i] for i in order]
        by_shard = len(urls) >= slots
        src = [{"url": u} for u in (urls[slot::slots] if by_shard else urls)]
        counts = self.skipped

        def handler(exn: Exception) -> bool:  # a corrupt tar / failing pipe mid-run: skip, count, go on
            counts.add("unreadable shard or tar member")
            return True

        it = tarfile_samples(src, handler=handler)
        cut = {s["url"] for s in src if truncated(s["url"])}
        if cut:
            it = drop_cut_samples(it, cut, counts)
        if not by_shard:
            it = (s for n, s in enumerate(it) if n % slots == slot)
        if shuffle and self.shuffle_buffer > 1:
            it = _shuffle(it, bufsize=self.shuffle_buffer, initial=min(100, self.shuffle_buffer),
                          rng=random.Random(f"{seed}-{epoch}-{slot}"))
        return it

    def decode(self, sample: dict):
        """Raw sample -> (key, PIL image, caption), or None (skipped and counted)."""
        return decode_sample(sample, self.skipped)


def split_sample(sample: dict, skipped: SkipCounter):
    """Raw sample -> (key, image bytes, caption) without decoding the image, or None (skipped and counted)."""
    img = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
    txt = sample.get("txt")
    if img is None or txt is None:
        skipped.add("incomplete sample")
        return None
    cap = txt.decode("utf-8", errors="replace").strip() if isinstance(txt, bytes) else str(txt).strip()
    if not cap:
        skipped.add("empty caption")
        return None
    return sample["__key__"], img, cap


def decode_sample(sample: dict, skipped: SkipCounter):
    """Raw sample -> (key, PIL image, caption), or None; one rule for training, ``prepare`` and benchmarks."""
    parts = split_sample(sample, skipped)
    if parts is None:
        return None
    try:
        return parts[0], open_image(io.BytesIO(parts[1])), parts[2]
    except Exception:
        skipped.add("corrupt image")
        return None


def skip_delta(before: Counter, after: Counter) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
