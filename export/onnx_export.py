"""ONNX export of the two CLIP encoders (image -> normalised embedding, token ids -> normalised embedding).

Pitfalls handled here (design §5, §7): batch is the only dynamic dim (traced with batch 2); the MHA fast path is
off while tracing; the causal mask is a real graph constant; EOT pooling uses integer equality (no float
argmax over ids, which ties in fp16); the final L2 normalisation runs in fp32.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from edgeclip.artifact import (EOT_ID, IMAGE_INPUT, IMAGE_ONNX, IMAGE_OUTPUT, PAD_ID, PREPROCESS, TEXT_INPUT,
                               TEXT_ONNX, TEXT_OUTPUT, TOKENIZER, VOCAB)
from edgeclip.artifact.manifest import Manifest, Variant, hash_folder, write_manifest
from edgeclip.errors import ExportError
from edgeclip.outputs import atomic_path, check_output

DEFAULT_OPSET = 18


class ImageEncoder(torch.nn.Module):
    """``pixel_values`` [B, 3, H, W] float32 --> ``image_embeds`` [B, D] (L2-normalised, fp32)."""

    def __init__(self, clip):
        super().__init__()
        self.visual = clip.visual

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(pixel_values).float(), dim=-1)


class TextEncoder(torch.nn.Module):
    """``input_ids`` [B, L] int64 --> ``text_embeds`` [B, D]; pools the first end-of-text token."""

    def __init__(self, clip, eot_id: int | None = None):
        super().__init__()
        eot_id = clip.token_embedding.num_embeddings - 1 if eot_id is None else eot_id  # CLIP's BPE: EOT is last
        self.token_embedding, self.positional_embedding = clip.token_embedding, clip.positional_embedding
        self.transformer, self.ln_final, self.text_projection = clip.transformer, clip.ln_final, clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask.clone(), persistent=False)
        self.eot_id = eot_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(input_ids) + self.positional_embedding  # [B, L, W]
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        eot = (input_ids == self.eot_id).to(torch.int32).argmax(dim=-1)  # first EOT position [B]
        x = x[torch.arange(x.shape[0]), eot]  # [B, W]
        return F.normalize((x @ self.text_projection).float(), dim=-1)


@dataclass
class ExportResult:
    out: Path
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    manifest: dict = field(default_factory=dict)


def example_inputs(size: int, context_length: int,
                   vocab_size: int = EOT_ID + 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch-2 tracing inputs every exporter uses: seeded pixels, and ids holding a real prompt and an empty one
    (so both the first-EOT pooling and the causal mask are exercised). SOT / EOT are the vocabulary's last two ids
    (CLIP's 49406 / 49407, or a pruned vocabulary's)."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, size, size, generator=g)
    sot, eot = vocab_size - 2, vocab_size - 1
    words = torch.tensor([min(i, sot - 1) for i in (320, 1125, 539)])  # "a photo of" in CLIP's BPE
    ids = torch.zeros(2, context_length, dtype=torch.long)
    ids[:, 0], ids[0, 1:4], ids[0, 4], ids[1, 1] = sot, words, eot, eot
    return pixels, ids


@contextlib.contextmanager
def no_mha_fastpath():
    prev = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(prev)


def trace_to_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path, in_name: str, out_name: str,
                  opset: int) -> None:
    """``torch.onnx.export`` (dynamo, batch dynamic) of one encoder to ``path`` (+ ``.data``); one line on failure."""
    import logging
    import warnings
    batch = torch.export.Dim("batch", min=1, max=4096)
    with no_mha_fastpath(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            torch.onnx.export(module.eval(), (example,), str(path), input_names=[in_name], output_names=[out_name],
                              opset_version=opset, dynamo=True, dynamic_shapes={in_name: {0: batch}},
                              external_data=True, verbose=False)
        except Exception as e:
            raise ExportError(f"ONNX export of {path.name} failed: {str(e).splitlines()[0][:300]}") from None


def write_tokenizer_files(out: Path, context_length: int, model=None) -> None:
    """The artifact's tokenizer: the model's BPE merges (CLIP's own, or its pruned ones) and ``tokenizer.json``."""
    from open_clip.tokenizer import default_bpe
    shutil.copy(getattr(model, "edgeclip_bpe", None) or default_bpe(), out / VOCAB)
    vocab = model.token_embedding.num_embeddings if model is not None else EOT_ID + 1
    (out / TOKENIZER).write_text(json.dumps({
        "type": "clip_bpe", "vocab_file": VOCAB, "context_length": context_length, "vocab_size": vocab,
        "sot_token_id": vocab - 2, "eot_token_id": vocab - 1, "pad_token_id": PAD_ID, "lowercase": True},
        indent=2) + "\n")


def model_manifest(model, opset: int) -> Manifest:
    """The manifest of ``model``'s artifact before any variant: its shape, config and the tools' versions."""
    import onnx
    import onnxruntime

    from edgeclip import __version__
    from edgeclip.models.factory import model_config
    from edgeclip.models.towers import text_cfg, vision_cfg
    cfg = model_config(model)
    return Manifest(embed_dim=cfg["embed_dim"], image_size=vision_cfg(cfg).size,
                    context_length=text_cfg(cfg).context_length, model_cfg=cfg,
                    versions={"edgeclip": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                              "onnxruntime": onnxruntime.__version__, "opset": opset})


def write_base(model, out: Path, opset: int = DEFAULT_OPSET, check: bool = True) -> Variant:
    """The artifact's base in ``out``: both fp32 graphs, the tokenizer files and ``preprocess.json``."""
    import onnx

    from edgeclip.models.factory import model_config
    from edgeclip.models.io import preprocess_cfg
    from edgeclip.models.towers import text_cfg, vision_cfg
    from edgeclip.models.weights import check_finite
    if opset not in (17, 18):
        raise ExportError(f"opset {opset} is not supported; use 17 or 18")
    check_finite(model.state_dict(), "the model", "refusing to export it")
    cfg = model_config(model)
    model = model.float().eval()
    size, ctx = vision_cfg(cfg).size, text_cfg(cfg).context_length
    pixels, ids = example_inputs(size, ctx, model.token_embedding.num_embeddings)
    trace_to_onnx(ImageEncoder(model), pixels, out / IMAGE_ONNX, IMAGE_INPUT.name, IMAGE_OUTPUT, opset)
    trace_to_onnx(TextEncoder(model), ids, out / TEXT_ONNX, TEXT_INPUT.name, TEXT_OUTPUT, opset)
    if check:
        for name in (IMAGE_ONNX, TEXT_ONNX):
            try:
                onnx.checker.check_model(str(out / name), full_check=True)
            except Exception as e:
                raise ExportError(f"onnx.checker rejected {name}: {str(e).splitlines()[0][:200]}") from None
    write_tokenizer_files(out, ctx, model)
    (out / PREPROCESS).write_text(json.dumps(dict(preprocess_cfg(model)), indent=2) + "\n")
    return Variant("onnx", "fp32", image=IMAGE_ONNX, text=TEXT_ONNX)


def export_onnx(model, out: str | Path, opset: int = DEFAULT_OPSET, check: bool = True,
                overwrite: bool = False) -> ExportResult:
    """Export both encoders of a canonical CLIP to ``out`` (written to a temp folder, renamed at the end), with
    no variants and no parity gates (``export_artifact`` is the whole export).

    Args:
        model: canonical open_clip CLIP (teacher or student), fp32.
        out: artifact folder: ``image_encoder.onnx``, ``text_encoder.onnx`` (+ ``.onnx.data``), tokenizer
            files, ``preprocess.json``, ``manifest.json``.
        opset: 17 or 18.
        check: run ``onnx.checker`` on both graphs.
        overwrite: replace an existing artifact at ``out`` (anything else there is refused).

    Returns:
        ``ExportResult`` (files and their sha256 in the manifest).

    Raises:
        ExportError: tracing, conversion or the checker failed.
    """
    if opset not in (17, 18):
        raise ExportError(f"opset {opset} is not supported; use 17 or 18")
    out = check_output(out, "artifact", overwrite)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        m = model_manifest(model, opset)
        m.variants["fp32"] = write_base(model, tmp, opset, check)
        m.files = hash_folder(tmp)
        write_manifest(tmp, m)
    return ExportResult(out, dict(m.files), m.to_dict())
