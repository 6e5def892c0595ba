"""The artifact format: the one place that says what ``edgeclip export`` writes and ``edgeclip.runtime`` reads.

Graph inputs and outputs (names, dtypes, ranks), file names, the tokenizer's special ids and the manifest's
schema version live here, in the spirit of optimum's ``OnnxConfig``. Export, the runtime, the device formats and
the output rule import these names; no other module spells them. ``manifest`` is the typed manifest with its one
reader and writer, ``formats`` the registry of formats and runtimes. No torch, no numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TensorSpec", "IMAGE_INPUT", "TEXT_INPUT", "IMAGE_OUTPUT", "TEXT_OUTPUT", "IMAGE_ONNX", "TEXT_ONNX",
           "MANIFEST", "TOKENIZER", "PREPROCESS", "VOCAB", "SOT_ID", "EOT_ID", "PAD_ID", "FORMAT",
           "MANIFEST_VERSION", "FORMAT_TAG", "weights_beside", "PARITY_JSON", "PARITY_MD",
           "Manifest", "Variant", "Verdict", "read_manifest", "write_manifest", "FORMATS", "Format", "get_format",
           "register_format", "runtimes_for"]


@dataclass(frozen=True)
class TensorSpec:
    """One graph input: its name, numpy dtype name, rank, and onnxruntime's type string for it."""
    name: str
    dtype: str
    rank: int
    ort_type: str


IMAGE_INPUT = TensorSpec("pixel_values", "float32", 4, "tensor(float)")  # [B, 3, H, W], preprocess.json'd
TEXT_INPUT = TensorSpec("input_ids", "int64", 2, "tensor(int64)")  # [B, context_length]: SOT ... EOT, 0-padded
IMAGE_OUTPUT, TEXT_OUTPUT = "image_embeds", "text_embeds"  # [B, D] float32, L2-normalised

IMAGE_ONNX, TEXT_ONNX = "image_encoder.onnx", "text_encoder.onnx"
MANIFEST, TOKENIZER, PREPROCESS = "manifest.json", "tokenizer.json", "preprocess.json"
VOCAB = "bpe_simple_vocab_16e6.txt.gz"  # open_clip's BPE merges, copied into every artifact
PARITY_JSON, PARITY_MD = "parity.json", "parity.md"  # the export's parity reports, hashed like every other file


SOT_ID, EOT_ID, PAD_ID = 49406, 49407, 0  # open_clip's SimpleTokenizer: <start_of_text>, <end_of_text>, padding

from .manifest import (FORMAT, FORMAT_TAG, MANIFEST_VERSION, Manifest, Variant, Verdict,  # noqa: E402
                       read_manifest, weights_beside, write_manifest)
from .formats import FORMATS, Format, get_format, register_format, runtimes_for  # noqa: E402
