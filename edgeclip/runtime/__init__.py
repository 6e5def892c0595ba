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

from ..artifact import IMAGE_INPUT, TEXT_INPUT
from ..artifact.manifest import Manifest, read_manifest
from ..errors import ConfigError, IntegrityError
from ..imageio import MAX_PIXELS, open_image, to_rgb
from .integrity import check_artifact, read_json
from .preprocess import Preprocess
from .tokenizer import Tokenizer

__all__ = ["load", "Runtime", "Index", "Preprocess", "Tokenizer", "open_image", "as_image"]


class Runtime:
    """Image and text encoders of one artifact variant (fp32, fp32-opt, fp16, int8-*, or another format's:
    executorch-*, litert-*, ort-mobile-*, coreml-*, tensorrt-*), each opened by the runtime the format registry
    names for it."""

    def __init__(self, artifact: str | Path, variant: str = "fp32", providers: list[str] | None = None,
                 threads: int | None = None, verify: bool = True, allow_failed_parity: bool = False,
                 backend: str | None = None, batch: int = 1, manifest: Manifest | None = None):
        from ..artifact.formats import require_runtime, resolve
        from .backends import AUTO, resolve_choice
        self.dir = Path(artifact)
        self.manifest = manifest if manifest is not None else read_manifest(self.dir)
        if AUTO in (backend, variant):  # -> the bench record
            backend, variant = resolve_choice(self.manifest, backend or "onnxruntime", variant, batch)
        rec = self.manifest.variant(variant)
        self.backend, self.variant = resolve(rec, backend), variant
        require_runtime(self.backend, f"variant {variant!r}")  # one line naming the extra, before any file is read
        files = check_artifact(self.dir, self.manifest, variant, verify, allow_failed_parity)
        self.parity, self.fingerprint = files.parity, files.fingerprint
        self._files, self._open = files, (threads, providers, rec.options)
        try:
            self.preprocess = Preprocess(read_json(files.preprocess))
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise ConfigError(f"artifact {str(artifact)!r} has a broken preprocess file: {e}") from None
        self.image_session = self._session(files.image, IMAGE_INPUT)
        self._text_session = self._tokenizer = self._head = None  # opened on first use: classify() needs neither
        self._verify = verify

    def _session(self, path: Path, spec):
        from .backends import open_session
        threads, providers, options = self._open
        sess = open_session(path, self.backend, threads, providers, spec.name, options)
        got = [(i.name, i.type, len(i.shape)) for i in sess.get_inputs()]
        want = (spec.name, spec.ort_type, spec.rank)
        if got != [want]:
            raise ConfigError(f"{self.variant} graph inputs are {got}, expected [{want}] "
                              "(name, type, rank): not an edgeclip encoder")
        return sess

    @property
    def text_session(self):
        """The text encoder, opened the first time text is embedded."""
        if self._text_session is None:
            self._text_session = self._session(self._files.text, TEXT_INPUT)
        return self._text_session

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            try:
                self._tokenizer = Tokenizer(self._files.vocab, self._files.tokenizer_cfg["context_length"])
            except (KeyError, TypeError, ValueError, OSError) as e:
                raise ConfigError(f"artifact {str(self.dir)!r} has a broken tokenizer file: {e}") from None
        return self._tokenizer

    @property
    def labels(self) -> list[str]:
        """The label head's labels ([] without a head)."""
        return self._label_head()[0] if self.manifest.head else []

    @property
    def label_embeddings(self) -> np.ndarray:
        """The label head's class embeddings, float32 [N, D] L2-normalised ([0, D] without a head)."""
        return self._label_head()[1] if self.manifest.head else np.zeros((0, self.dim), np.float32)

    def _label_head(self) -> tuple[list[str], np.ndarray]:
        if self._head is None:
            from .integrity import load_head
            self._head = load_head(self.dir, self.manifest, self._verify)
        return self._head

    def classify(self, images, k: int = 5) -> list[list[tuple[str, float]]]:
        """Top ``k`` labels of the artifact's label head (``edgeclip export --labels``) per image, with their
        cosine similarity, from the image encoder alone: the text tower and the tokenizer are never opened.

        Raises:
            ConfigError: the artifact has no label head, or ``k`` is not an integer >= 1.
        """
        if not self.manifest.head:
            raise ConfigError(f"artifact {str(self.dir)!r} has no label head; export it with --labels FILE, or use "
                              "embed_texts() on your labels")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        if isinstance(images, (str, Path)) or not isinstance(images, (list, tuple, np.ndarray)):
            images = [images]
        labels, head = self._label_head()
        sims = self.embed_images(images) @ head.T  # [N, classes]
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return [[(labels[j], float(row[j])) for j in t] for row, t in zip(sims, top)]

    @property
    def dim(self) -> int:
        """Embedding width D (recorded in the manifest by the export; the graph's output shape otherwise)."""
        return int(self.manifest.embed_dim or self.image_session.get_outputs()[0].shape[-1])

    def _embed(self, session, spec, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Run one encoder over ``x`` in batches of ``batch_size`` -> float32 [N, D] ([0, D] for none)."""
        if len(x) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = [session.run(None, {spec.name: x[i:i + batch_size].astype(spec.dtype)})[0]
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out).astype(np.float32)

    def embed_pixels(self, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Preprocessed pixels [N, 3, H, W] --> L2-normalised float32 [N, D]."""
        return self._embed(self.image_session, IMAGE_INPUT, pixels, batch_size)

    def embed_images(self, images, batch_size: int = 64, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
        """PIL images, paths or uint8 arrays ([H, W], [H, W, 3|4], or a batch [N, H, W, 3|4]) --> L2-normalised
        float32 [N, D] ([0, D] for none). Files and arrays go through ``edgeclip.imageio``'s one rule (the training
        loader's; more than ``max_pixels`` is refused)."""
        if isinstance(images, np.ndarray) and images.ndim != 4:
            raise ConfigError(f"embed_images takes a batch array [N, H, W, C] or a list of images; got an array of "
                              f"shape {list(images.shape)}: wrap one image in a list")
        imgs = [as_image(i, max_pixels) for i in images]
        if not imgs:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_pixels(self.preprocess.batch(imgs), batch_size)

    def embed_ids(self, ids: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Token ids [N, context_length] --> L2-normalised float32 [N, D]."""
        return self._embed(self.text_session, TEXT_INPUT, ids, batch_size)

    def embed_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Texts --> L2-normalised float32 [N, D] ([0, D] for an empty list)."""
        return self.embed_ids(self.tokenizer(texts), batch_size)


def load(artifact: str | Path, variant: str = "fp32", providers: list[str] | None = None,
         threads: int | None = None, verify: bool = True, allow_failed_parity: bool = False,
         backend: str | None = None, batch: int = 1, manifest: Manifest | None = None) -> Runtime:
    """Open an exported artifact folder for inference (onnxruntime CPU by default, or OpenVINO; a device
    format's variant by its own runtime).

    Args:
        artifact: folder written by ``edgeclip export``.
        variant: one of the manifest's variants (fp32, fp32-opt, fp16, int8-dynamic, int8-static, and the device
            formats' ``executorch-*`` (the ``[executorch]`` extra, which brings torch), ``litert-*`` (the
            torch-free ``[litert-runtime]`` extra), ``ort-mobile-*`` (onnxruntime), ``coreml-*`` (macOS only),
            ``tensorrt-*`` (TensorRT and an NVIDIA GPU; untested here)). Which runtime opens which variant is the
            format registry's answer (``edgeclip.artifact.formats``).
        providers: onnxruntime execution providers (default CPU).
        threads: intra-op threads (default: onnxruntime's choice).
        verify: check the sha256 of every file the variant reads (graphs, their ``.onnx.data``, tokenizer,
            preprocess) against ``manifest.json``; ~3 ms per MB measured (0.2 s for a 67 MB artifact, 2 s for
            ViT-B-32's 581 MB on a busy 2-core machine), so on by default.
        allow_failed_parity: load a variant whose parity gates failed at export. Variants with no parity record
            (exported without gates, e.g. by ``export_onnx`` alone) load, with ``Runtime.parity == "unchecked"``.
        backend: None (the variant's own runtime: onnxruntime for ONNX graphs), ``"onnxruntime"``,
            ``"openvino"`` (the ``[openvino]`` extra) or ``"auto"``; with ``"auto"`` (and ``variant="auto"``) both
            come from the fastest passing ONNX pair ``edgeclip bench`` recorded for the batch size nearest
            ``batch``. A device format runs only on its own runtime (asking another is a ``ConfigError``).
        batch: the batch size the caller will mostly run (only read by ``"auto"``).
        manifest: the artifact's ``Manifest`` when the caller already holds it (the export, during parity);
            None reads ``manifest.json``.

    Raises:
        ConfigError: not an artifact, unknown variant, broken tokenizer/preprocess file, ``"auto"`` with no bench
            record (run ``edgeclip bench ARTIFACT`` first).
        IntegrityError: a file differs from its recorded sha256, or a path points outside the folder.
        ParityError: the variant failed parity and ``allow_failed_parity`` is False.
        BackendError: the backend cannot open a graph (or OpenVINO is not installed).
    """
    return Runtime(artifact, variant, providers, threads, verify, allow_failed_parity, backend, batch, manifest)


def as_image(i, max_pixels: int | None = MAX_PIXELS):
    """A path, PIL image or uint8 array as the RGB image the model sees (``embed_images``' one rule)."""
    if isinstance(i, (str, Path)):
        return open_image(i, max_pixels)
    if isinstance(i, np.ndarray):
        from PIL import Image
        ok = i.dtype == np.uint8 and (i.ndim == 2 or (i.ndim == 3 and i.shape[2] in (1, 3, 4)))
        if not ok:
            raise ConfigError(f"an image array must be uint8 [H, W], [H, W, 3] or [H, W, 4]; got {i.dtype} "
                              f"{list(i.shape)}")
        return to_rgb(Image.fromarray(i[..., 0] if i.ndim == 3 and i.shape[2] == 1 else i))
    return i


def _index_json(path: Path, where: str) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IntegrityError(f"index {where} is damaged: index.json: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(meta, dict) or meta.get("edgeclip_output") != "index":
        raise ConfigError(f"{where} is not an edgeclip index (index.json has no \"edgeclip_output\": \"index\")")
    return meta


@dataclass
class Index:
    """A gallery embedded once; query by text or image. Saved as ``embeddings.npy`` + ``items.json`` +
    ``index.json`` (which artifact built it: searching with another artifact's runtime is refused)."""
    embeddings: np.ndarray  # [N, D] float32, L2-normalised
    items: list[str]
    artifact: str | None = None  # Runtime.fingerprint of the builder; None for an index made by hand
    variant: str | None = None

    @classmethod
    def build(cls, rt: Runtime, images, names: list[str] | None = None) -> "Index":
        images = list(images)
        if not images:
            raise ConfigError("Index.build got no images; pass at least one image or path")
        names = names or [str(i) for i in images]
        return cls(rt.embed_images(images), names, rt.fingerprint, rt.variant)

    def check_runtime(self, rt: Runtime) -> None:
        """Refuse a runtime of another export: its embeddings live in a different space than the index's."""
        if self.artifact is not None and rt.fingerprint != self.artifact:
            raise ConfigError(f"this index was built by artifact {self.artifact} ({self.variant}), not by "
                              f"{str(rt.dir)!r} ({rt.fingerprint}); rebuild it with Index.build(rt, images)")

    def search(self, query: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """Top ``k`` items by cosine (all of them when ``k`` exceeds the gallery)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        query = np.asarray(query, np.float32).reshape(-1)
        if query.shape[0] != self.embeddings.shape[1]:
            raise ConfigError(f"query has {query.shape[0]} dims, the index {self.embeddings.shape[1]}")
        scores = self.embeddings @ query
        top = np.argsort(-scores, kind="stable")[:k]
        return [(self.items[i], float(scores[i])) for i in top]

    def search_text(self, rt: Runtime, text: str, k: int = 5) -> tuple[list[tuple[str, float]], float]:
        self.check_runtime(rt)
        t = time.perf_counter()
        res = self.search(rt.embed_texts([text])[0], k)
        return res, (time.perf_counter() - t) * 1e3

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write ``embeddings.npy``, ``items.json`` and ``index.json`` (kind marker + the artifact that built it)
        as one atomic folder. ``out`` may be new, empty, or (with ``overwrite``) an earlier index; anything else
        is refused.
        """
        from ..outputs import atomic_path, check_output
        out = check_output(out, "index", overwrite)
        with atomic_path(out) as tmp:
            tmp.mkdir()
            np.save(tmp / "embeddings.npy", self.embeddings)
            (tmp / "items.json").write_text(json.dumps(self.items))
            (tmp / "index.json").write_text(json.dumps({"edgeclip_output": "index", "artifact": self.artifact,
                                                        "variant": self.variant, "count": len(self.items),
                                                        "dim": int(self.embeddings.shape[-1])}) + "\n")
        return out

    @classmethod
    def load(cls, folder: str | Path, unchecked: bool = False) -> "Index":
        """Read a folder written by ``save``; anything else or anything tampered with is one line.

        ``index.json`` names the artifact that built the index; without it nothing can refuse a search with
        another artifact's runtime, so such a folder is refused unless ``unchecked=True`` (an index made by
        hand, or by edgeclip <= 0.2).

        Raises:
            ConfigError: not an index folder, or no index.json and not ``unchecked``.
            IntegrityError: unreadable or inconsistent files (bad JSON, a short items list, NaN embeddings).
        """
        folder = Path(folder)
        where = repr(str(folder))
        if not (folder / "embeddings.npy").is_file() or not (folder / "items.json").is_file():
            raise ConfigError(f"{where} is not an edgeclip index (needs embeddings.npy and items.json)")
        meta = {}
        if (folder / "index.json").is_file():
            meta = _index_json(folder / "index.json", where)
        elif not unchecked:
            raise ConfigError(f"{where} has no index.json, so the artifact that built it is unknown; rebuild it with "
                              "Index.build(rt, images).save(...), or pass unchecked=True to load it anyway")
        try:
            emb = np.load(folder / "embeddings.npy", allow_pickle=False)
            items = json.loads((folder / "items.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IntegrityError(f"index {where} is damaged: {str(e).splitlines()[0][:200]}") from None
        if emb.ndim != 2 or emb.dtype.kind != "f":
            raise IntegrityError(f"index {where} is damaged: embeddings.npy must be a float [N, D] array, got "
                                 f"{emb.dtype} {list(emb.shape)}")
        if not np.isfinite(emb).all():
            raise IntegrityError(f"index {where} is damaged: embeddings.npy holds NaN/Inf")
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items) or len(items) != len(emb):
            n = len(items) if isinstance(items, list) else type(items).__name__
            raise IntegrityError(f"index {where} is damaged: items.json must list one name per embedding "
                                 f"({len(emb)}), got {n}")
        if meta and (meta.get("count", len(items)) != len(items) or meta.get("dim", emb.shape[1]) != emb.shape[1]):
            raise IntegrityError(f"index {where} is damaged: index.json says {meta.get('count')} x {meta.get('dim')}, "
                                 f"the files hold {len(items)} x {emb.shape[1]}")
        return cls(emb.astype(np.float32, copy=False), items, meta.get("artifact"), meta.get("variant"))
