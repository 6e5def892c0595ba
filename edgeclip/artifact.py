"""The artifact format: the one place that says what ``edgeclip export`` writes and ``edgeclip.runtime`` reads.

Graph inputs and outputs (names, dtypes, ranks), file names, the tokenizer's special ids and the manifest's
schema version live here, in the spirit of optimum's ``OnnxConfig``. Export, the runtime, the device formats and
the output rule import these names; no other module spells them. Constants and name rules: no torch, no
numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["TensorSpec", "IMAGE_INPUT", "TEXT_INPUT", "IMAGE_OUTPUT", "TEXT_OUTPUT", "IMAGE_ONNX", "TEXT_ONNX",
           "MANIFEST", "TOKENIZER", "PREPROCESS", "VOCAB", "SOT_ID", "EOT_ID", "PAD_ID", "FORMAT",
           "MANIFEST_VERSION", "FORMAT_TAG", "check_manifest_version", "weights_beside"]


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


def weights_beside(name: str) -> str:
    """The file an encoder reads from beside it: an ONNX graph's external data (``NAME.data``), or an OpenVINO IR's
    weights (``.xml`` -> ``.bin``, the name OpenVINO opens by its own rule)."""
    return name[:-len(".xml")] + ".bin" if name.endswith(".xml") else f"{name}.data"

SOT_ID, EOT_ID, PAD_ID = 49406, 49407, 0  # open_clip's SimpleTokenizer: <start_of_text>, <end_of_text>, padding

FORMAT = "edgeclip-artifact"
# 1: variants with their files, sha256 of every file, parity verdicts, device-format entries, bench records
MANIFEST_VERSION = 1
FORMAT_TAG = f"{FORMAT}/{MANIFEST_VERSION}"  # the manifest's "format" value as export writes it


def check_manifest_version(manifest: dict, where: str) -> int:
    """The manifest's schema version from its ``"format"`` (``edgeclip-artifact/N``); another format, or a version
    newer than this edgeclip reads, is refused in one line (an older edgeclip must not guess at unknown fields).
    A manifest without the field is read as version 1 (hand-made manifests in tests; every export writes it)."""
    tag = manifest.get("format", FORMAT_TAG)
    name, _, ver = str(tag).partition("/")
    if name != FORMAT or not ver.isdigit():
        raise ConfigError(f"{where}: manifest.json format {tag!r} is not {FORMAT}/N; not an edgeclip artifact")
    if int(ver) > MANIFEST_VERSION:
        raise ConfigError(f"{where}: the artifact is {tag}; this edgeclip reads up to {FORMAT_TAG} "
                          "(upgrade edgeclip to load it)")
    return int(ver)
