"""edgeclip demo: the exported student (ONNX, via edgeclip.runtime) next to the PyTorch teacher.

Text -> top-k gallery images from each model; image -> zero-shot labels from each; per-query latency and the
top-k overlap between the two. Uses only edgeclip's public API (a test checks it). Installed as
``edgeclip.apps.demo``; run it with ``edgeclip demo`` (binds 127.0.0.1).

Under load: gallery thumbnails are written once at startup into a folder Gradio serves as static files, so every
answer points at the same finished files (re-encoding them per request raced with downloads of the same file), and
uploads are measured from the image header and refused or draft-decoded before any pixel is decoded.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import re
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import edgeclip
import edgeclip.runtime as runtime
from edgeclip.data.pairs import open_image
from edgeclip.errors import ConfigError
from edgeclip.imageio import upright
from edgeclip.evaluate import embed_pil_images, embed_texts

MAX_UPLOAD = "8mb"  # request size limit (Gradio refuses larger uploads with HTTP 413)
MAX_PIXELS = 25_000_000  # decoded-size limit of an uploaded image (a 6000 x 4000 photo); checked from the header
DISPLAY = 160  # gallery thumbnails: small ShapesWorld scenes are upscaled to this, photos shrunk to it
MAX_PREVIEWS = 256  # upload previews kept on disk (oldest removed first)


@dataclass
class Gallery:
    images: list[Image.Image]
    names: list[str]
    labels: list[str]  # zero-shot label set offered for image queries


def shapes_gallery(n: int = 96) -> Gallery:
    """Held-out ShapesWorld scenes (retrieval split) and the 64 colour-shape classes as labels."""
    from edgeclip.data.shapes import ShapesWorld, class_prompts
    imgs, caps, _ = ShapesWorld("retrieval").batch(0, n)
    return Gallery([Image.fromarray(i) for i in imgs], caps, class_prompts())


def folder_gallery(folder: str | Path, n: int = 200) -> Gallery:
    """Photos from a folder (ImageNet-style manifest.csv gives the label set)."""
    from edgeclip.export.parity import load_photos
    imgs, labels = load_photos(folder, n)
    classes = sorted({l for l in labels if l}) or ["a photo"]
    return Gallery(imgs, [f"{l or 'image'} #{i}" for i, l in enumerate(labels)], [f"a photo of a {c}" for c in classes])


class ImageFiles:
    """Content-addressed PNGs in one folder that Gradio serves as static files.

    A file is written once (temp name + rename), so a request never sees a half-written image and two requests
    for the same picture share one finished file. Files not ``pinned`` (upload previews) are capped at
    ``MAX_PREVIEWS``; the folder is removed when the process exits.
    """

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="edgeclip-demo-")
        self.folder = Path(self._tmp.name)
        self.pinned: set[Path] = set()

    def put(self, img: Image.Image, pin: bool = False) -> str:
        buf = io.BytesIO()
        img.save(buf, "PNG")
        data = buf.getvalue()
        path = self.folder / f"{hashlib.sha256(data).hexdigest()[:24]}.png"
        if path.exists():
            os.utime(path)  # handed out again: the newest for _trim
        else:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        if pin:
            self.pinned.add(path)
        else:
            self._trim()
        return str(path)

    def _trim(self) -> None:
        loose = [p for p in self.folder.glob("*.png") if p not in self.pinned]
        if len(loose) > MAX_PREVIEWS:
            for p in sorted(loose, key=lambda p: p.stat().st_mtime)[: len(loose) - MAX_PREVIEWS]:
                p.unlink(missing_ok=True)


def thumbnail(img: Image.Image) -> Image.Image:
    """Display copy: small scenes upscaled to ``DISPLAY`` px without blur, photos shrunk to at most twice that."""
    if max(img.size) < DISPLAY:
        return img.resize((DISPLAY, DISPLAY), Image.NEAREST)
    small = img.convert("RGB")
    small.thumbnail((DISPLAY * 2, DISPLAY * 2))
    return small


def open_upload(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an uploaded image as RGB, refusing one that would decode to more than ``max_pixels``.

    The size comes from the header (``Image.open`` is lazy). A large JPEG is decoded at 1/2 .. 1/8 scale with
    ``draft``, so it never exists at full size in memory; other formats above the limit are refused.
    Raises ``ConfigError`` (one line for the UI) for anything else that is not a readable image.
    """
    limit = f"the demo decodes at most {max_pixels / 1e6:.0f} M pixels: upload a smaller copy."
    try:
        with warnings.catch_warnings():  # PIL's own bomb warning: the check below is the stricter one
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            f = Image.open(path)
        with f:
            w, h = f.size
            if w * h > max_pixels and f.format == "JPEG":
                s = math.sqrt(max_pixels / (w * h)) / 2  # draft keeps >= the request: ask for half the allowed side
                f.draft("RGB", (max(1, int(w * s)), max(1, int(h * s))))
            if f.size[0] * f.size[1] > max_pixels:
                raise ConfigError(f"That image is {w} x {h} pixels ({w * h / 1e6:.0f} M); {limit}")
            if f.size != (w, h):  # draft-decoded JPEG (8-bit: only the orientation rule applies)
                return upright(f).convert("RGB")
        return open_image(path)  # the training loader's decode: CMYK / greyscale / 16-bit -> RGB
    except ConfigError:
        raise
    except Image.DecompressionBombError as e:  # over twice PIL's limit: refused by PIL itself, from the header
        n = re.search(r"\((\d+) pixels\)", str(e))
        raise ConfigError(f"That image is {int(n.group(1)) / 1e6:.0f} M pixels; {limit}" if n else
                          f"That image is too large; {limit}") from None
    except Exception as e:  # not an image, truncated, unsupported: PIL raises many types
        raise ConfigError(f"Could not read that image ({type(e).__name__}); upload a JPEG or PNG.") from None


class Models:
    """Both models with the gallery and label prompts embedded, and the gallery thumbnails written, once.

    ``threads``: compute threads of each model per query. One query is one short sequence: with more threads,
    onnxruntime's spinning workers and torch's pool fight over the cores (on 2 busy cores a search took ~1 s with
    the defaults and ~20 ms with one thread each).
    """

    def __init__(self, artifact: str | Path, teacher: str, gallery: Gallery, threads: int = 1,
                 pretrained: str | None = None):
        import torch
        self.artifact = Path(artifact)
        try:  # the fastest passing backend/variant `edgeclip bench` recorded for batch 1, else plain fp32
            self.rt = runtime.load(artifact, "auto", threads=threads, backend="auto", batch=1)
        except ConfigError:
            self.rt = runtime.load(artifact, threads=threads)
        self.teacher = edgeclip.load_teacher(teacher, pretrained=pretrained)
        self.tok = edgeclip.get_tokenizer(self.teacher)
        self.gallery = gallery
        self.files = ImageFiles()
        self.thumbs = [self.files.put(thumbnail(i), pin=True) for i in gallery.images]
        self.s_index = runtime.Index.build(self.rt, gallery.images, list(range(len(gallery.images))))
        self.t_gallery = embed_pil_images(self.teacher, gallery.images).numpy()
        if self.rt.labels:  # the artifact's label head: the student classifies with no text tower at all
            self.labels = self.rt.labels
            self.s_labels = self.rt.label_embeddings
            self.t_labels = _teacher_head(self.teacher, self.tok, self.labels, self.rt.manifest.head["templates"])
        else:
            self.labels = gallery.labels
            self.s_labels = self.rt.embed_texts(gallery.labels)
            self.t_labels = embed_texts(self.teacher, self.tok, gallery.labels).numpy()
        torch.set_num_threads(threads)  # after the one-off gallery embedding, which uses every core

    def student_info(self) -> str:
        """One line naming what the student runs on: artifact, backend (onnxruntime / OpenVINO) and variant."""
        return (f"student: `{self.artifact.name}` · runs on **{self.rt.backend}** · variant **{self.rt.variant}** "
                f"(parity: {self.rt.parity})")

    def search(self, text: str, k: int):
        k = max(1, min(k, len(self.gallery.images)))
        t0 = time.perf_counter()
        s_hits = self.s_index.search(self.rt.embed_texts([text])[0], k)
        s_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        q = embed_texts(self.teacher, self.tok, [text]).numpy()[0]
        t_top = np.argsort(-(self.t_gallery @ q))[:k]
        t_ms = (time.perf_counter() - t0) * 1e3
        s_top = [i for i, _ in s_hits]
        overlap = len(set(s_top) & set(t_top.tolist())) / k
        return s_top, t_top.tolist(), s_ms, t_ms, overlap

    def classify(self, img: Image.Image, k: int = 5):
        t0 = time.perf_counter()
        s = self.s_labels @ self.rt.embed_images([img])[0]
        s_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        t = self.t_labels @ embed_pil_images(self.teacher, [img]).numpy()[0]
        t_ms = (time.perf_counter() - t0) * 1e3
        return _softmax_top(s, self.labels, k), _softmax_top(t, self.labels, k), s_ms, t_ms


def _teacher_head(teacher, tok, labels: list[str], templates: list[str]) -> np.ndarray:
    """The teacher's class embeddings for the artifact's head: each label's prompts averaged, as the head was made."""
    emb = np.stack([embed_texts(teacher, tok, [t.format(lab) for lab in labels]).numpy() for t in templates]).mean(0)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def _softmax_top(sims: np.ndarray, labels: list[str], k: int) -> dict[str, float]:
    p = np.exp(50 * (sims - sims.max()))
    p /= p.sum()
    top = np.argsort(-p)[:k]
    return {labels[i]: float(p[i]) for i in top}


def build_demo(models: Models):
    import gradio as gr
    gr.set_static_paths([models.files.folder])  # served as they are: no per-request copy or re-encode

    def on_search(text: str, k: float):
        text, k = (text or "").strip(), int(k)
        if not text:
            raise gr.Error("Type a query first, e.g. 'a red star'.")
        s, t, s_ms, t_ms, ov = models.search(text[:300], k)
        g = models.gallery
        stats = (f"**student (ONNX)** {s_ms:.1f} ms · **teacher (PyTorch)** {t_ms:.1f} ms · "
                 f"top-{len(s)} overlap **{ov:.0%}**")
        return [(models.thumbs[i], g.names[i]) for i in s], [(models.thumbs[i], g.names[i]) for i in t], stats

    def on_classify(path):
        if path is None:
            raise gr.Error("Upload an image first.")
        try:  # the upload arrives as a file path: size-checked from its header, then decoded here
            img = open_upload(path)
        except ConfigError as e:
            raise gr.Error(str(e)) from None
        s, t, s_ms, t_ms = models.classify(img)
        top_s, top_t = next(iter(s)), next(iter(t))
        return s, t, (f"**student** {s_ms:.1f} ms · **teacher** {t_ms:.1f} ms · top-1 "
                      f"{'agrees' if top_s == top_t else 'differs'}"), models.files.put(thumbnail(img))

    with gr.Blocks(title="edgeclip demo") as demo:
        gr.Markdown("# edgeclip — compressed student (ONNX) vs teacher (PyTorch)")
        gr.Markdown(models.student_info(), elem_id="student-info")
        with gr.Tab("Text → images"):
            with gr.Row():
                query = gr.Textbox(label="Query", placeholder="a red star on the left", elem_id="query", scale=4)
                k = gr.Slider(1, 12, value=6, step=1, label="top-k", scale=1)
                btn = gr.Button("Search", variant="primary", elem_id="search")
            stats = gr.Markdown(elem_id="stats")
            with gr.Row():
                s_gal = gr.Gallery(label="student (ONNX runtime)", columns=3, elem_id="student-gallery", height=440)
                t_gal = gr.Gallery(label="teacher (PyTorch)", columns=3, elem_id="teacher-gallery", height=440)
            btn.click(on_search, [query, k], [s_gal, t_gal, stats], api_name="search")
            query.submit(on_search, [query, k], [s_gal, t_gal, stats], api_name=False)
        with gr.Tab("Image → labels"):
            with gr.Row():
                with gr.Column():  # a File input, so undecodable uploads reach on_classify's clear message
                    img = gr.File(label="Image file", file_types=["image"], type="filepath")
                    shown = gr.Image(label="uploaded", interactive=False, height=200, type="filepath")
                s_lab = gr.Label(label="student (ONNX runtime)", num_top_classes=5)
                t_lab = gr.Label(label="teacher (PyTorch)", num_top_classes=5)
            c_stats = gr.Markdown()
            gr.Button("Classify", variant="primary").click(on_classify, [img], [s_lab, t_lab, c_stats, shown],
                                                           api_name="classify")
    return demo


def launch(models: Models, host: str = "127.0.0.1", port: int | None = 7860, block: bool = True):
    demo = build_demo(models)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, max_file_size=MAX_UPLOAD,
                footer_links=["gradio"], quiet=not block)
    return demo


def serve(artifact: str | Path, teacher: str = "reference", gallery: str | Path | None = None,
          host: str = "127.0.0.1", port: int | None = 7860, block: bool = True, pretrained: str | None = None):
    """Load both models, embed the gallery (a photo folder, or ShapesWorld scenes) and launch the demo.

    Args:
        artifact: folder written by ``edgeclip export`` (the student).
        teacher: teacher spec for ``edgeclip.load_teacher``.
        gallery: image folder for the gallery; None uses 96 held-out ShapesWorld scenes.
        host, port: bind address (loopback by default) and port (None: a free one).
        block: serve until interrupted; False returns the running ``gr.Blocks`` (call ``.close()``).
        pretrained: checkpoint file of the teacher named (open_clip's ``--pretrained FILE``).

    Raises:
        ConfigError: the artifact, teacher or gallery cannot be read.
    """
    g = folder_gallery(gallery) if gallery else shapes_gallery()
    return launch(Models(artifact, teacher, g, pretrained=pretrained), host, port, block)
