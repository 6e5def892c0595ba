"""Per-row INT8 token embeddings (issue #36): the largest tensor of a small CLIP no longer ships in fp32 in the
static INT8 variant, and the text embeddings barely move."""
from __future__ import annotations

import shutil

import numpy as np
import onnx


def test_per_row_int8_embedding_shrinks_the_text_graph_and_keeps_its_output(tmp_path, tiny_model):
    import onnxruntime as ort

    from edgeclip.export import export_onnx
    from edgeclip.export.embedding import per_row_int8, quantize_token_embedding
    from edgeclip.export.parity import PROMPTS
    from edgeclip.runtime.tokenizer import Tokenizer
    export_onnx(tiny_model, tmp_path / "a")
    src = tmp_path / "a" / "text_encoder.onnx"
    dst = tmp_path / "q.onnx"
    m = onnx.load(str(src))
    onnx.save(m, str(dst))  # one self-contained file: the table moves into it
    before = dst.stat().st_size
    assert quantize_token_embedding(dst) == 49408
    g = onnx.load(str(dst)).graph
    tables = {t.name: t for t in g.initializer if len(t.dims) == 2 and t.dims[0] == 49408 and t.dims[1] > 1}
    assert [t.data_type for t in tables.values()] == [onnx.TensorProto.INT8]  # no fp32 copy left
    assert dst.stat().st_size < before / 3
    ids = Tokenizer(tmp_path / "a" / "bpe_simple_vocab_16e6.txt.gz", 16)(PROMPTS)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input_ids": ids})[0]
    a, b = run(src), run(dst)
    assert (a * b).sum(1).min() >= 0.999  # normalised embeddings: cosine
    rows = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    rows[2] = 0  # an all-zero row must not divide by zero
    q, s = per_row_int8(rows)
    assert q.dtype == np.int8 and np.abs(q * s - rows).max() <= np.abs(rows).max(1, keepdims=True).max() / 254 + 1e-7


def test_static_int8_variant_ships_an_int8_embedding(tmp_path, tiny_model, photos_dir):
    from edgeclip.artifact import read_manifest
    from edgeclip.export import export_artifact
    res = export_artifact(tiny_model, tmp_path / "a", ["fp32", "int8-static"], calib_dir=photos_dir)
    m = read_manifest(res.out)
    assert res.passed, [r.failed for r in res.parity]
    assert m.variants["int8-static"].options["bytes"]["text"] < m.variants["fp32"].options["bytes"]["text"] / 3
