"""The one 64-bit hash of a sample key: the teacher store's index (``distill/store.py``) and the augmented views'
seeds (``augment.py``) both use it, so a store written by ``edgeclip teach`` finds the samples ``compress`` reads."""
from __future__ import annotations

import hashlib

__all__ = ["key_hash64", "stable_hash"]


def key_hash64(key: str) -> int:
    """blake2b of the key, the same in every process and run (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def stable_hash(text: str) -> int:
    """63 bits of ``key_hash64`` (a seed for ``torch.manual_seed``)."""
    return key_hash64(text) >> 1
