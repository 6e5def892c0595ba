"""edgeclip demo: the exported student (ONNX, via edgeclip.runtime) next to the PyTorch teacher.

Text -> top-k gallery images from each model; image -> zero-shot labels from each; per-query latency and the
top-k overlap between the two. Uses only edgeclip's public API. Run: ``edgeclip demo`` (binds 127.0.0.1).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import edgeclip
import edgeclip.runtime as runtime
from edgeclip.errors import ConfigError
from edgeclip.evaluate import embed_pil_images, embed_texts

MAX_UPLOAD = "8mb"
DISPLAY = 160  # gallery thumbnails are upscaled ShapesWorld scenes


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


class Models:
    """Both models with the gallery and label prompts embedded once."""

    def __init__(self, artifact: str | Path, teacher: str, gallery: Gallery):
        try:  # the fastest passing backend/variant `edgeclip bench` recorded for batch 1, else plain fp32
            self.rt = runtime.load(artifact, "auto", backend="auto", batch=1)
        except ConfigError:
            self.rt = runtime.load(artifact)
        self.teacher = edgeclip.load_teacher(teacher)
        self.tok = edgeclip.get_tokenizer(self.teacher)
        self.gallery = gallery
        self.s_index = runtime.Index.build(self.rt, gallery.images, list(range(len(gallery.images))))
        self.t_gallery = embed_pil_images(self.teacher, gallery.images).numpy()
        self.s_labels = self.rt.embed_texts(gallery.labels)
        self.t_labels = embed_texts(self.teacher, self.tok, gallery.labels).numpy()

    def search(self, text: str, k: int):
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
        return _softmax_top(s, self.gallery.labels, k), _softmax_top(t, self.gallery.labels, k), s_ms, t_ms


def _softmax_top(sims: np.ndarray, labels: list[str], k: int) -> dict[str, float]:
    p = np.exp(50 * (sims - sims.max()))
    p /= p.sum()
    top = np.argsort(-p)[:k]
    return {labels[i]: float(p[i]) for i in top}


def _thumb(img: Image.Image) -> Image.Image:
    return img.resize((DISPLAY, DISPLAY), Image.NEAREST) if max(img.size) < DISPLAY else img


def build_demo(models: Models):
    import gradio as gr

    def on_search(text: str, k: float):
        text, k = (text or "").strip(), int(k)
        if not text:
            raise gr.Error("Type a query first, e.g. 'a red star'.")
        s, t, s_ms, t_ms, ov = models.search(text[:300], k)
        g = models.gallery
        stats = (f"**student (ONNX)** {s_ms:.1f} ms · **teacher (PyTorch)** {t_ms:.1f} ms · "
                 f"top-{k} overlap **{ov:.0%}**")
        return ([(_thumb(g.images[i]), g.names[i]) for i in s], [(_thumb(g.images[i]), g.names[i]) for i in t], stats)

    def on_classify(img):
        if img is None:
            raise gr.Error("Upload an image first.")
        try:  # the upload arrives as a file path: decode it here so a non-image gets a clear message
            with Image.open(img) as f:
                img = f.convert("RGB")
            s, t, s_ms, t_ms = models.classify(img)
        except Exception as e:  # a file that is not a decodable image
            raise gr.Error(f"Could not read that image ({type(e).__name__}); upload a JPEG or PNG.") from None
        top_s, top_t = next(iter(s)), next(iter(t))
        return s, t, (f"**student** {s_ms:.1f} ms · **teacher** {t_ms:.1f} ms · top-1 "
                      f"{'agrees' if top_s == top_t else 'differs'}"), _thumb(img)

    with gr.Blocks(title="edgeclip demo") as demo:
        gr.Markdown("# edgeclip — compressed student (ONNX) vs teacher (PyTorch)\n"
                    f"student runs on **{models.rt.backend} / {models.rt.variant}**", elem_id="student-backend")
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
                    shown = gr.Image(label="uploaded", interactive=False, height=200)
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


def main(args) -> int:
    """``edgeclip demo``: defaults to the reference teacher and the quickstart student (built if missing)."""
    artifact = Path(args.artifact)
    if not (artifact / "manifest.json").is_file():
        if str(artifact) != "runs/quickstart/artifact":
            raise ConfigError(f"no exported artifact at {str(artifact)!r}; run 'edgeclip export'")
        print("no quickstart student yet: running 'edgeclip quickstart' first (about 10 min on 2 cores)")
        from edgeclip.cli import main as cli_main
        if cli_main(["quickstart"]) != 0:
            return 2
    gallery = folder_gallery(args.gallery) if args.gallery else shapes_gallery()
    launch(Models(artifact, args.teacher, gallery), args.host, args.port, block=True)
    return 0
