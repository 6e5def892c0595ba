"""Teacher-embedding store (MobileCLIP's reinforced data): the teacher runs once, later runs read fp16 embeddings.

Layout of a store folder::

    manifest.json                 {"edgeclip_output": "teacher-store", teacher weights sha256, preprocessing, data,
                                   the sha256 of every file below, checked on open}
    r0-00000.img.npy / .txt.npy   fp16 [n, D] image / text embeddings, one row per sample (per rank, per shard)
    index-hash.npy / index-loc.npy  sorted uint64 hash of the sample key -> (shard << 32 | row)

Everything is memory-mapped: a lookup is a binary search in the sorted hashes plus one row read per hit, so
compress's RAM does not grow with the store. Keys are hashed to 64 bits (blake2b); at 400M samples the chance
of any collision is ~0.4%, and a collision would serve one sample another's embedding.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..outputs import atomic_path, write_json
from ..data.keys import key_hash64
from ..errors import ConfigError, DataError
from .cache import teacher_embeddings

KIND = "teacher-store"
SHARD_ROWS = 100_000


def key_hash(keys: list[str]) -> np.ndarray:
    return np.array([key_hash64(k) for k in keys], dtype=np.uint64)


def weights_sha256(model: torch.nn.Module) -> str:
    """Hash of every tensor (name, dtype, shape, bytes): two teachers match only with identical weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class TeacherStore:
    """Read side: ``get(teacher, keys, pixels, ids)`` like ``TeacherCache``; misses run the teacher."""

    def __init__(self, path: Path, manifest: dict):
        self.path, self.manifest = path, manifest
        self.hashes = np.load(path / "index-hash.npy", mmap_mode="r")
        self.locs = np.load(path / "index-loc.npy", mmap_mode="r")
        self.shards = [(np.load(path / f"{s['name']}.img.npy", mmap_mode="r"),
                        np.load(path / f"{s['name']}.txt.npy", mmap_mode="r")) for s in manifest["shards"]]
        self.hits = self.misses = 0

    @classmethod
    def open(cls, path, teacher: torch.nn.Module, preprocess: dict) -> "TeacherStore":
        """Open ``path`` for ``teacher``; another teacher's or preprocessing's store is refused in one line."""
        path = Path(path)
        try:
            m = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            raise ConfigError(f"{str(path)!r} is not a teacher store (no readable manifest.json); "
                              "write one with 'edgeclip teach'") from None
        if m.get("edgeclip_output") != KIND:
            raise ConfigError(f"{str(path)!r} is not a teacher store (edgeclip_output={m.get('edgeclip_output')!r})")
        sha = weights_sha256(teacher)
        if m["teacher"]["weights_sha256"] != sha:
            raise ConfigError(f"teacher store {str(path)!r} was made by another teacher (weights sha256 "
                              f"{m['teacher']['weights_sha256'][:12]}, this teacher {sha[:12]}); run 'edgeclip teach' "
                              "for this teacher")
        if json.loads(json.dumps(preprocess)) != m["preprocess"]:
            raise ConfigError(f"teacher store {str(path)!r} was made with other preprocessing ({m['preprocess']}) "
                              f"than this teacher's ({preprocess})")
        for s in m["shards"]:
            for part in ("img", "txt"):
                f = path / f"{s['name']}.{part}.npy"
                try:
                    n = np.load(f, mmap_mode="r").shape[0]
                except (OSError, ValueError):
                    raise DataError(f"teacher store {str(path)!r} is damaged: {f.name} is missing or unreadable") \
                        from None
                if n != s["count"]:
                    raise DataError(f"teacher store {str(path)!r} is damaged: {f.name} has {n} rows, "
                                    f"manifest says {s['count']}")
        _verify_files(path, m)
        try:
            store = cls(path, m)
        except (OSError, ValueError):
            raise DataError(f"teacher store {str(path)!r} is damaged: its key index is missing or unreadable") \
                from None
        if store.hashes.shape[0] != m["count"]:
            raise DataError(f"teacher store {str(path)!r} is damaged: index has {store.hashes.shape[0]} keys, "
                            f"manifest says {m['count']}")
        return store

    def lookup(self, keys: list[str]) -> np.ndarray:
        """Packed location of each key (shard << 32 | row), or -1 where the store does not hold it."""
        h = key_hash(keys)
        pos = np.searchsorted(self.hashes, h)
        found = (pos < len(self.hashes)) & (self.hashes[np.minimum(pos, len(self.hashes) - 1)] == h)
        return np.where(found, self.locs[np.minimum(pos, len(self.hashes) - 1)].astype(np.int64), -1)

    @torch.no_grad()
    def get(self, teacher, keys: list[str], pixels: torch.Tensor, ids: torch.Tensor):
        loc = self.lookup(keys)
        img = np.empty((len(keys), self.manifest["dims"][0]), np.float16)
        txt = np.empty((len(keys), self.manifest["dims"][1]), np.float16)
        miss = [j for j, x in enumerate(loc) if x < 0]
        for j, x in enumerate(loc):
            if x >= 0:
                s, r = int(x) >> 32, int(x) & 0xFFFFFFFF
                img[j], txt[j] = self.shards[s][0][r], self.shards[s][1][r]
        if miss:
            ti, tt = teacher_embeddings(teacher, pixels[miss], ids[miss])  # kept nowhere: RAM stays flat
            img[miss], txt[miss] = ti.numpy(), tt.numpy()
        self.misses += len(miss)
        self.hits += len(keys) - len(miss)
        return torch.from_numpy(img).float(), torch.from_numpy(txt).float()


def _sha256(f: Path) -> str:
    with open(f, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _store_files(m: dict) -> list[str]:
    """Every file a store's rows come from: each shard's embeddings and key hashes, and the sorted index."""
    return [f"{s['name']}.{part}.npy" for s in m["shards"] for part in ("img", "txt", "hash")] + \
        ["index-hash.npy", "index-loc.npy"]


def _verify_files(path: Path, m: dict) -> None:
    """Each file against its sha256 in the manifest, the way artifacts are checked: a shard whose rows were
    reordered or rewritten keeps its shape, and would otherwise train the student on the wrong targets."""
    recorded = m.get("sha256")
    if not isinstance(recorded, dict):
        raise DataError(f"teacher store {str(path)!r} records no sha256 for its files (written by an older "
                        "edgeclip); rebuild it with 'edgeclip teach'")
    for name in _store_files(m):
        try:
            ok = recorded.get(name) == _sha256(path / name)
        except OSError:
            raise DataError(f"teacher store {str(path)!r} is damaged: {name} is missing or unreadable") from None
        if not ok:
            raise DataError(f"teacher store {str(path)!r} is damaged: {name} does not match its sha256 in "
                            "manifest.json (altered after 'edgeclip teach'); rebuild it with 'edgeclip teach'")


class StoreWriter:
    """Append embeddings; every ``SHARD_ROWS`` rows become one ``.npy`` pair (written whole, then left alone)."""

    def __init__(self, folder: Path, prefix: str = "r0", shard_rows: int = SHARD_ROWS):
        self.folder, self.prefix, self.rows = folder, prefix, shard_rows
        self.buf: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.shards: list[dict] = []

    def add(self, keys: list[str], img: np.ndarray, txt: np.ndarray) -> None:
        self.buf.append((key_hash(keys), img.astype(np.float16), txt.astype(np.float16)))
        if sum(len(b[0]) for b in self.buf) >= self.rows:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        name = f"{self.prefix}-{len(self.shards):05d}"
        h, i, t = (np.concatenate([b[k] for b in self.buf]) for k in range(3))
        np.save(self.folder / f"{name}.img.npy", i)
        np.save(self.folder / f"{name}.txt.npy", t)
        np.save(self.folder / f"{name}.hash.npy", h)
        self.shards.append({"name": name, "count": int(len(h))})
        self.buf = []


def build_index(folder: Path, shards: list[dict]) -> int:
    """Sorted key hashes of every shard -> index-hash.npy / index-loc.npy; returns the number of keys."""
    hs, locs = [], []
    for s_idx, s in enumerate(shards):
        h = np.load(folder / f"{s['name']}.hash.npy")
        hs.append(h)
        locs.append((np.uint64(s_idx) << np.uint64(32)) | np.arange(len(h), dtype=np.uint64))
    h = np.concatenate(hs) if hs else np.zeros(0, np.uint64)
    loc = np.concatenate(locs) if locs else np.zeros(0, np.uint64)
    order = np.argsort(h, kind="stable")
    np.save(folder / "index-hash.npy", h[order])
    np.save(folder / "index-loc.npy", loc[order])
    return int(len(h))


def write_manifest(folder: Path, teacher, preprocess: dict, data: str, shards: list[dict], count: int,
                   dims: tuple[int, int], views: int = 1, skipped: dict | None = None) -> None:
    from ..models import model_config
    write_json(folder / "manifest.json", {
        "edgeclip_output": KIND, "format": 1,
        "teacher": {"weights_sha256": weights_sha256(teacher), "config": model_config(teacher)},
        "preprocess": json.loads(json.dumps(preprocess)), "data": data, "count": count, "dims": list(dims),
        "skipped": dict(skipped or {}),  # items not embedded, by reason (corrupt image, empty caption, bad tar...)
        "views": views,  # augmented views per sample stored (keys 'KEY#viewV' for V >= 1: edgeclip.data.augment)
        "dtype": "float16", "key": "webdataset __key__ | CSV 'path<TAB>caption' | 'shapes:INDEX' (blake2b-64)",
        "shards": shards, "sha256": {f: _sha256(folder / f) for f in _store_files({"shards": shards})}})


def teach(teacher, data, out, batch_size: int = 256, workers: int | None = None, device: str = "cpu",
          overwrite: bool = False, shard_rows: int = SHARD_ROWS, views: int = 1) -> dict:
    """Run ``teacher`` once over ``data`` and write its embeddings to the store ``out``; returns the manifest.

    ``views``: also embed augmented views 1..views-1 of every sample (one pass each), so ``compress --views``
    up to that number never runs the teacher.

    Under torchrun every rank embeds its share and writes its own shards; rank 0 writes the index and manifest.
    The store appears only when complete (built in a temp folder and renamed).
    """
    from ..data.loader import Batches, BatchLoader, WdsBatches, check_workers
    from ..data.pairs import open_pairs
    from ..models import get_tokenizer, load_teacher
    from ..models.io import image_transform, preprocess_cfg
    from . import dist as ddp_env

    from ..data.augment import check_views
    from ..limits import TEACH_BATCH
    TEACH_BATCH.check(batch_size)
    workers, views = check_workers(workers), check_views(views)
    device = ddp_env.init_from_env(ddp_env.check_device(device))
    from ..outputs import check_output
    out = check_output(out, "teacher-store", overwrite, inputs=[teacher if isinstance(teacher, (str, Path)) else None,
                                                             data if isinstance(data, (str, Path)) else None])
    teacher = teacher if isinstance(teacher, torch.nn.Module) else load_teacher(teacher)
    pre = preprocess_cfg(teacher)
    pairs = open_pairs(data, pre["size"] if isinstance(pre["size"], int) else pre["size"][0])
    rank, world = ddp_env.rank(), ddp_env.world()
    tok, tf = get_tokenizer(teacher), image_transform(pre)
    def loaders():  # one pass per view
        for v in range(views):
            if getattr(pairs, "streaming", False):
                src = WdsBatches(pairs, batch_size * world, 0, tf, tok, tok, rank, world, workers, drop_last=False,
                                 shuffle=False, views=views, only_view=v)
                steps = None
            else:
                src = Batches(pairs, batch_size * world, 0, tf, tok, tok, rank, world, views=views, only_view=v)
                steps = math.ceil(len(pairs) / (batch_size * world))
            yield BatchLoader(src, workers, pin_memory=device.startswith("cuda")), steps

    teacher.to(device).eval()
    if world == 1:
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            w = StoreWriter(tmp, "r0", shard_rows)
            dims = [_embed(teacher, loader, steps, w) for loader, steps in loaders()][-1]
            _finish(tmp, teacher, pre, pairs, dims, views)
        return json.loads((out / "manifest.json").read_text())
    parts = out.parent / f".{out.name}.parts"  # every rank writes its shards here; rank 0 moves them in
    parts.mkdir(parents=True, exist_ok=True)
    w = StoreWriter(parts, f"r{rank}", shard_rows)
    dims = [_embed(teacher, loader, steps, w) for loader, steps in loaders()][-1]
    (parts / f"r{rank}.json").write_text(json.dumps({"shards": w_shards(parts, rank), "dims": dims}))
    ddp_env.barrier()
    if not ddp_env.is_main():
        return {}
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        dims = None
        for r in range(world):
            info = json.loads((parts / f"r{r}.json").read_text())
            dims = dims or info["dims"]
            for sh in info["shards"]:
                for ext in ("img", "txt", "hash"):
                    (parts / f"{sh['name']}.{ext}.npy").rename(tmp / f"{sh['name']}.{ext}.npy")
        _finish(tmp, teacher, pre, pairs, dims, views)
    shutil.rmtree(parts, ignore_errors=True)
    return json.loads((out / "manifest.json").read_text())


def w_shards(folder: Path, rank: int) -> list[dict]:
    """Shards rank ``rank`` wrote into ``folder`` (name, rows), in order."""
    return [{"name": f.name[:-len(".hash.npy")], "count": int(np.load(f, mmap_mode="r").shape[0])}
            for f in sorted(folder.glob(f"r{rank}-*.hash.npy"))]


def _embed(teacher, loader, steps, w: StoreWriter):
    """One pass of the teacher over this rank's data into ``w``; returns (image dim, text dim) or None."""
    from . import dist as ddp_env
    dims = None
    with torch.no_grad(), ddp_env.guard("teach"):
        for keys, px, ids, _ in tqdm(loader.one_epoch(steps), desc="teacher embeddings", total=steps,
                                     disable=not ddp_env.is_main(), mininterval=2):
            ti, tt = (t.numpy() for t in teacher_embeddings(teacher, px, ids))
            w.add(keys, ti, tt)
            dims = (ti.shape[1], tt.shape[1])
    w.flush()
    return dims


def _finish(folder: Path, teacher, pre: dict, pairs, dims, views: int = 1) -> None:
    """Index + manifest over every shard in ``folder`` (the store is complete once the manifest is there)."""
    if dims is None:
        raise DataError(f"{pairs.describe()} gave no readable pairs to embed")
    shards = [s for r in sorted({f.name.split("-")[0] for f in folder.glob("r*-*.hash.npy")})
              for s in w_shards(folder, int(r[1:]))]
    count = build_index(folder, shards)
    skipped = {k: v // views for k, v in getattr(getattr(pairs, "skipped", None), "counts", {}).items()}  # per pass
    write_manifest(folder, teacher, pre, pairs.describe(), shards, count, tuple(dims), views, skipped)
