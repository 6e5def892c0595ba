"""Batches decoded in torch ``DataLoader`` workers, so the training process only steps.

Two sources, one interface (``BatchLoader.iterate(start, end, state)`` yields ``(keys, pixels, t_ids, s_ids)``):

- index-addressable data (ShapesWorld, CSV): ``Batches`` maps step -> sample indices (a seeded permutation per
  epoch) -> tensors; workers load whole steps in order, so the run is a pure function of the step and resume is
  bit-exact.
- webdataset streams (``WdsPairs``): each worker streams its shards and batches its own samples; the position
  (epoch + raw samples each worker handed out) is recorded with every checkpoint and replayed on resume.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections import Counter
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from ..errors import ConfigError, DataError
from ..limits import WORKERS
from .augment import check_views, make_view, view_for_stream, view_key, views_for_step
from .wds import skip_delta, split_sample


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers() -> int:
    """min(8, cores - 1): one core stays with the training process."""
    return min(8, max(0, _cores() - 1))


def check_workers(workers: int | None) -> int:
    """None: ``default_workers()``; more than the machine's cores: capped to them with a one-line note (each
    worker is a process holding its own copy of the loader: 100,000 of them exhaust memory before any decode)."""
    import sys
    if workers is None:
        return default_workers()
    WORKERS.check(workers)
    if workers > _cores():
        print(f"note: {workers} workers asked for; this machine has {_cores()} cores, using {_cores()}",
              file=sys.stderr)
        return _cores()
    return workers


def sample_key(pairs, i: int) -> str:
    """Stable key of sample ``i`` (the teacher store is keyed by it): CSV path + caption, ShapesWorld index."""
    rows = getattr(pairs, "rows", None)
    if rows is not None:
        return f"{rows[i][0]}\t{rows[i][1]}"
    if hasattr(pairs, "world") and hasattr(pairs, "offset"):
        return f"shapes:{pairs.offset + i}"
    return str(i)


class Batches:
    """Deterministic batches of index-addressable data: step -> sample indices (+ view) -> tensors (this rank's
    rows). ``views`` > 1: each row is one of the sample's ``views`` augmented views (``augment.make_view``)."""

    def __init__(self, pairs, batch_size: int, seed: int, image_transform, teacher_tok, student_tok,
                 rank: int = 0, world: int = 1, views: int = 1, only_view: int | None = None):
        """``only_view``: every row is that view (``edgeclip teach`` embeds each view in one pass)."""
        if len(pairs) == 0:
            raise DataError("the dataset is empty")
        self.pairs, self.bs, self.seed = pairs, batch_size, seed
        self.tf, self.t_tok, self.s_tok = image_transform, teacher_tok, student_tok
        self.rank, self.world, self.views = rank, world, check_views(views)
        self.only_view = only_view
        self._perm: dict[int, np.ndarray] = {}

    def indices(self, step: int) -> list[int]:
        n = len(self.pairs)
        start = step * self.bs
        out = []
        for pos in range(start, start + self.bs):
            epoch = pos // n
            if epoch not in self._perm:
                self._perm = {epoch: np.random.default_rng((self.seed, epoch)).permutation(n)}
            out.append(int(self._perm[epoch][pos % n]))
        return out[self.rank::self.world]

    def __call__(self, step: int):
        keys, imgs, caps = [], [], []
        views = views_for_step(self.seed, step, self.bs, self.views)[self.rank::self.world] \
            if self.only_view is None else np.full(self.bs, self.only_view)[self.rank::self.world]
        for i, v in zip(self.indices(step), views.tolist()):
            item = self.pairs.load(i)
            if item is not None:
                key = sample_key(self.pairs, i)
                keys.append(view_key(key, v))
                imgs.append(self.tf(make_view(item[0], key, v)))
                caps.append(item[1])
        if not keys:
            skipped = getattr(getattr(self.pairs, "skipped", None), "counts", {})
            raise DataError(f"batch {step} has no readable items (skipped so far: {dict(skipped)})")
        return keys, torch.stack(imgs), self.t_tok(caps), self.s_tok(caps)


class _Steps(Dataset):
    """Map-style view of ``Batches`` for the DataLoader: item ``step`` is the whole batch of that step."""

    def __init__(self, batches: Batches):
        self.b = batches

    def __len__(self) -> int:
        return 1 << 40

    def __getitem__(self, step: int) -> dict:
        before = Counter(getattr(self.b.pairs, "skipped", Counter()).counts) if hasattr(self.b.pairs, "skipped") \
            else Counter()
        try:
            batch = self.b(step)
        except DataError as e:  # crossed back to the main process as one line, not a worker traceback
            return {"error": str(e)}
        after = self.b.pairs.skipped.counts if hasattr(self.b.pairs, "skipped") else Counter()
        return {"batch": batch, "skipped": skip_delta(before, after)}


class WdsBatches(IterableDataset):
    """Each worker streams its share of the shards and yields full local batches (a worker's last partial batch
    of an epoch is dropped, so every rank's rows have the same size for the gathered affinity loss)."""

    def __init__(self, pairs, batch_size: int, seed: int, image_transform, teacher_tok, student_tok,
                 rank: int = 0, world: int = 1, workers: int = 0, drop_last: bool = True, shuffle: bool = True,
                 raw_images: bool = False, views: int = 1, only_view: int | None = None):
        if batch_size % world:
            raise ConfigError(f"batch size {batch_size} is not divisible by the {world} ranks")
        self.pairs, self.bs, self.seed = pairs, batch_size // world, seed
        self.tf, self.t_tok, self.s_tok = image_transform, teacher_tok, student_tok
        self.rank, self.world, self.drop_last, self.shuffle = rank, world, drop_last, shuffle
        self.raw_images = raw_images  # --decode gpu: hand the image bytes over, the main process decodes them
        self.views, self.only_view = check_views(views, gpu_decode=raw_images), only_view
        self.epoch = mp.Value("q", 0)                    # shared with persistent workers (set before iter)
        self.skip = mp.Array("q", max(1, workers))       # raw samples each worker skips (resume)
        self.rot = mp.Value("q", 0)                      # worker whose turn is next (DataLoader starts at 0)

    def __iter__(self):
        info = get_worker_info()
        w, nw = (info.id, info.num_workers) if info else (0, 1)
        w = (w + self.rot.value) % nw  # logical reader: the DataLoader's round robin resumes where it stopped
        epoch, skip = self.epoch.value, self.skip[w]
        counts = self.pairs.skipped.counts
        before = Counter(counts)
        keys, imgs, caps, n = [], [], [], 0
        for raw in self.pairs.raw(epoch, self.seed, self.rank * nw + w, self.world * nw, self.shuffle):
            n += 1
            if n <= skip:  # replay the reads up to the recorded position, without decoding
                continue
            item = split_sample(raw, self.pairs.skipped) if self.raw_images else self.pairs.decode(raw)
            if item is None:
                continue
            v = view_for_stream(self.seed, epoch, item[0], self.views) if self.only_view is None else self.only_view
            keys.append(view_key(item[0], v))
            imgs.append(item[1] if self.raw_images else self.tf(make_view(item[1], item[0], v)))
            caps.append(item[2])
            if len(keys) == self.bs:
                yield {"batch": (keys, self._pixels(imgs), self.t_tok(caps), self.s_tok(caps)), "worker": w,
                       "pos": n, "skipped": skip_delta(before, counts)}
                keys, imgs, caps, before = [], [], [], Counter(counts)
        if keys and not self.drop_last:
            yield {"batch": (keys, self._pixels(imgs), self.t_tok(caps), self.s_tok(caps)), "worker": w,
                   "pos": n, "skipped": skip_delta(before, counts)}

    def _pixels(self, imgs: list):
        return list(imgs) if self.raw_images else torch.stack(imgs)


class BatchLoader:
    """Batches for steps ``start..end-1`` from worker processes, plus the position to checkpoint."""

    def __init__(self, source: Batches | WdsBatches, workers: int = 0, pin_memory: bool = False,
                 prefetch: int = 2, gpu_decode=None):
        """``gpu_decode``: ``(GpuTransform, device)`` when ``source`` hands raw image bytes (``--decode gpu``)."""
        self.source, self.workers = source, check_workers(workers)
        if gpu_decode is not None and not getattr(source, "raw_images", False):
            raise ConfigError("GPU decoding needs a webdataset source built with raw_images=True")
        self.gpu_decode = gpu_decode
        self.stream = isinstance(source, WdsBatches)
        self.pairs = source.pairs
        self._state: dict = {"kind": "stream" if self.stream else "index"}
        kw = dict(num_workers=self.workers, pin_memory=pin_memory, batch_size=None,
                  persistent_workers=self.workers > 0, prefetch_factor=prefetch if self.workers else None)
        self._kw = kw
        self._dl = DataLoader(source, **kw) if self.stream else None

    def state(self) -> dict:
        """JSON-able position after the last batch handed out (index data: the step says it all)."""
        return dict(self._state)

    def _count(self, item: dict) -> None:
        if "error" in item:
            raise DataError(item["error"])
        if self.workers and hasattr(self.pairs, "skipped"):  # workers count in their own copies
            self.pairs.skipped.counts.update(item["skipped"])

    def _finish(self, batch: tuple) -> tuple:
        """--decode gpu: decode the batch's image bytes on the GPU; rows of undecodable images are dropped (under
        torchrun refilled with copies of decoded rows, so every rank's batch keeps its size)."""
        if self.gpu_decode is None:
            return batch
        from .gpu_decode import decode_batch
        keys, blobs, t_ids, s_ids = batch
        pixels, kept = decode_batch(blobs, *self.gpu_decode, self.pairs.skipped)
        if not kept:
            raise DataError(f"a batch of {len(keys)} images from {self.pairs.describe()} has none decodable "
                            f"(skipped: {dict(self.pairs.skipped.counts)})")
        if len(kept) < len(keys):
            rows = list(range(len(kept)))
            if self.source.world > 1:  # the gathered affinity loss needs equal rows on every rank: refill
                rows += [rows[i % len(rows)] for i in range(len(keys) - len(kept))]
                pixels = pixels[torch.tensor(rows, device=pixels.device)]
            idx = torch.tensor([kept[r] for r in rows], dtype=torch.long)
            keys, t_ids, s_ids = [keys[i] for i in idx.tolist()], t_ids[idx], s_ids[idx]
        return keys, pixels, t_ids, s_ids

    def iterate(self, start: int, end: int, state: dict | None = None) -> Iterator[tuple]:
        if not self.stream:
            dl = DataLoader(_Steps(self.source), sampler=range(start, end), **self._kw)
            for item in dl:
                self._count(item)
                yield item["batch"]
            return
        yield from self._iterate_stream(end - start, state or {})

    def one_epoch(self, steps: int | None = None) -> Iterator[tuple]:
        """Every batch of epoch 0 once (index data: ``steps`` steps; a stream: until its shards end)."""
        if not self.stream:
            yield from self.iterate(0, steps)
            return
        self.source.epoch.value, self.source.rot.value = 0, 0
        self.source.skip[:] = [0] * len(self.source.skip)
        for item in self._dl:
            self._count(item)
            yield self._finish(item["batch"])

    def _iterate_stream(self, n: int, state: dict) -> Iterator[tuple]:
        nw, src = max(1, self.workers), self.source
        epoch = int(state.get("epoch", 0))
        same = state.get("workers") == self.workers and state.get("world") == src.world
        consumed = list(state["consumed"]) if state.get("consumed") and same else [0] * nw
        nxt = int(state.get("next", 0)) if same else 0
        if state.get("consumed") and not same:
            print(f"note: workers/world changed since the checkpoint; epoch {epoch} restarts from its start")
        done = 0
        while done < n:
            src.epoch.value = epoch
            src.skip[:] = consumed
            src.rot.value = nxt
            got = 0
            for item in self._dl:
                self._count(item)
                consumed[item["worker"]] = item["pos"]
                got += 1
                done += 1
                self._state = {"kind": "stream", "epoch": epoch, "consumed": list(consumed),
                               "next": (item["worker"] + 1) % nw, "workers": self.workers, "world": src.world}
                yield self._finish(item["batch"])
                if done == n:
                    return
            if got == 0 and not any(consumed):
                raise DataError(f"{self.pairs.describe()} yields no full batch of {src.bs} readable pairs per "
                                f"worker (skipped: {dict(self.pairs.skipped.counts)}); use fewer workers/ranks "
                                "or a smaller batch")
            epoch, consumed, nxt = epoch + 1, [0] * nw, 0
            self._state = {"kind": "stream", "epoch": epoch, "consumed": list(consumed), "next": 0,
                           "workers": self.workers, "world": src.world}
