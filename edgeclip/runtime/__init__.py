"""On-device runtime: an exported artifact folder + onnxruntime or OpenVINO + numpy + Pillow. Never imports torch.

>>> rt = load("runs/quickstart/artifact")           # doctest: +SKIP
>>> idx = Index.build(rt, ["a.jpg", "b.jpg"])        # doctest: +SKIP
>>> idx.search_text(rt, "a red star", k=5)           # doctest: +SKIP
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BackendError, ConfigError
from .preprocess import Preprocess
from .tokenizer import Tokenizer

__all__ = ["load", "Runtime", "Index", "Preprocess", "Tokenizer"]


class Runtime:
    """Image and text encoders of one artifact variant (fp32, fp32-opt, fp16, int8-dynamic, int8-static)."""

    def __init__(self, artifact_dir: str | Path, variant: str = "fp32", providers: list[str] | None = None,
                 threads: int | None = None, backend: str = "onnxruntime", batch: int = 1):
        from .backends import open_session, resolve_choice
        self.dir = Path(artifact_dir)
        mpath = self.dir / "manifest.json"
        if not mpath.is_file():
            raise ConfigError(f"{str(artifact_dir)!r} is not an edgeclip artifact folder (no manifest.json)")
        self.manifest = _read_json(mpath)
        variants = self.manifest.get("variants", {})
        self.backend, variant = resolve_choice(self.manifest, backend, variant, batch)  # "auto" -> bench record
        if variant not in variants:
            raise ConfigError(f"artifact has no variant {variant!r}; it has {sorted(variants)}")
        self.variant = variant
        tok = _read_json(self.dir / "tokenizer.json")
        try:
            self.tokenizer = Tokenizer(self.dir / tok["vocab_file"], tok["context_length"])
            self.preprocess = Preprocess(_read_json(self.dir / "preprocess.json"))
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise ConfigError(f"artifact {str(artifact_dir)!r} has a broken tokenizer/preprocess file: {e}") from None
        self.image_session = open_session(self.dir / variants[variant]["image"], self.backend, threads, providers)
        self.text_session = open_session(self.dir / variants[variant]["text"], self.backend, threads, providers)
        for sess, name, kind, rank in ((self.image_session, "pixel_values", "tensor(float)", 4),
                                       (self.text_session, "input_ids", "tensor(int64)", 2)):
            got = [(i.name, i.type, len(i.shape)) for i in sess.get_inputs()]
            if got != [(name, kind, rank)]:
                raise ConfigError(f"{variant} graph inputs are {got}, expected [{(name, kind, rank)}] "
                                  "(name, type, rank): not an edgeclip encoder")

    def embed_pixels(self, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        out = [self.image_session.run(None, {"pixel_values": pixels[i:i + batch_size].astype(np.float32)})[0]
               for i in range(0, len(pixels), batch_size)]
        return np.concatenate(out).astype(np.float32)

    def embed_images(self, images, batch_size: int = 64) -> np.ndarray:
        """PIL images or paths --> L2-normalised float32 [N, D]."""
        imgs = [Image.open(i) if isinstance(i, (str, Path)) else i for i in images]
        return self.embed_pixels(self.preprocess.batch(imgs), batch_size)

    def embed_ids(self, ids: np.ndarray, batch_size: int = 256) -> np.ndarray:
        out = [self.text_session.run(None, {"input_ids": ids[i:i + batch_size].astype(np.int64)})[0]
               for i in range(0, len(ids), batch_size)]
        return np.concatenate(out).astype(np.float32)

    def embed_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        return self.embed_ids(self.tokenizer(texts), batch_size)


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path.name} of the artifact: {e}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path.name} of the artifact is not a JSON object")
    return obj


def load(artifact_dir: str | Path, variant: str = "fp32", providers: list[str] | None = None,
         threads: int | None = None, backend: str = "onnxruntime", batch: int = 1) -> Runtime:
    """Open an exported artifact folder for inference (onnxruntime CPU by default).

    ``backend`` is ``"onnxruntime"``, ``"openvino"`` or ``"auto"``; ``variant`` may be ``"auto"``: both then come
    from the fastest passing pair ``edgeclip bench`` recorded for the batch size nearest ``batch``.
    """
    return Runtime(artifact_dir, variant, providers, threads, backend, batch)


@dataclass
class Index:
    """A gallery embedded once; query by text or image. Saved as ``embeddings.npy`` + ``items.json``."""
    embeddings: np.ndarray  # [N, D] float32, L2-normalised
    items: list[str]

    @classmethod
    def build(cls, rt: Runtime, images, names: list[str] | None = None) -> "Index":
        names = names or [str(i) for i in images]
        return cls(rt.embed_images(images), names)

    def search(self, query: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        scores = self.embeddings @ query.reshape(-1)
        top = np.argsort(-scores)[:k]
        return [(self.items[i], float(scores[i])) for i in top]

    def search_text(self, rt: Runtime, text: str, k: int = 5) -> tuple[list[tuple[str, float]], float]:
        t = time.perf_counter()
        res = self.search(rt.embed_texts([text])[0], k)
        return res, (time.perf_counter() - t) * 1e3

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "embeddings.npy", self.embeddings)
        (folder / "items.json").write_text(json.dumps(self.items))

    @classmethod
    def load(cls, folder: str | Path) -> "Index":
        folder = Path(folder)
        return cls(np.load(folder / "embeddings.npy", allow_pickle=False), json.loads((folder / "items.json").read_text()))
