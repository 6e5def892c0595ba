"""Pruned CLIP vocabularies (issue #36): any rank-ordered subset of the merges is still a BPE that every tokenizer
reads the same way, and the merges a corpus fires keep that corpus's segmentation exactly."""
from __future__ import annotations

import numpy as np
import pytest

from edgeclip.errors import ConfigError
from edgeclip.models.vocab import (BYTE_TOKENS, fired_merges, inherit_rows, prune_merges, read_merges, vocab_of,
                                   write_merges)


def _texts() -> list[str]:
    """>= 1,000 texts: ShapesWorld captions, ImageNet-style prompts, and the hostile ones (accents, emoji, empty,
    over-long, CJK, punctuation, numbers, contractions, HTML entities)."""
    from edgeclip.data.shapes import ShapesWorld
    from edgeclip.export.parity import PROMPTS
    caps = ShapesWorld("train").batch(0, 860)[1]
    words = ["goldfish", "great white shark", "Afghan hound", "café au lait", "São Paulo", "naïve", "jalapeño",
             "Zürich", "tree frog", "pick-up truck", "espresso", "Ω resistor", "école", "crème brûlée"]
    templates = ["a photo of a {}.", "a blurry photo of the {}.", "a sculpture of a {}", "itap of my {}",
                 "a bad drawing of {}s!!", "art of the {} 🐶", "THE {} IN CAPITALS", "{} 123 456"]
    hostile = ["", " ", "\t\n", "🐶🐱🚗" * 30, "x" * 500, "日本の寺院の写真", "it's 2024; don't won't we'll",
               "&amp; &lt;b&gt; html", "a" + "\u0301" * 20, "ﬁ ligature", "Ｆｕｌｌｗｉｄｔｈ", "dog " * 100]
    texts = caps + [t.format(w) for w in words for t in templates] + PROMPTS + hostile
    assert len(texts) >= 1000
    return texts


@pytest.fixture(scope="module")
def merges():
    from open_clip.tokenizer import default_bpe
    return read_merges(default_bpe())


@pytest.mark.parametrize("keep", [8000, 0])
def test_open_clip_hf_and_the_runtime_give_identical_ids_for_a_pruned_vocabulary(tmp_path, merges, keep, robust):
    from open_clip.tokenizer import SimpleTokenizer

    from edgeclip.models.hf import write_hf_tokenizer
    from edgeclip.runtime.tokenizer import Tokenizer
    pruned = prune_merges(merges, keep=keep)
    bpe = write_merges(tmp_path / "bpe.txt.gz", pruned)
    write_hf_tokenizer(tmp_path, 77, merges=pruned)
    texts = _texts()
    oc = SimpleTokenizer(bpe_path=str(bpe), context_length=77)(texts).numpy()
    ours = Tokenizer(bpe, 77)(texts)
    vocab = BYTE_TOKENS + keep + 2
    assert oc.max() == vocab - 1 and (ours == oc).all()  # EOT is the highest id: argmax pooling still finds it
    pytest.importorskip("transformers")
    from transformers import CLIPTokenizer  # transformers 5: one CLIPTokenizer (the Rust tokenizers backend)
    from open_clip.tokenizer import basic_clean, whitespace_clean
    hf = CLIPTokenizer.from_pretrained(str(tmp_path))
    assert hf.eos_token_id == vocab - 1 and hf.bos_token_id == vocab - 2

    def hf_ids(batch):
        ids = np.array(hf(batch, padding="max_length", max_length=77, truncation=True)["input_ids"])
        return np.where(np.cumsum(ids == vocab - 1, axis=1) - (ids == vocab - 1) > 0, 0, ids)  # HF pads with EOT
    # HF's CLIPTokenizer does not run open_clip's text cleaning (ftfy's fixes, HTML unescaping): given the
    # cleaned text it must agree everywhere; given the raw text, only where cleaning changes nothing
    clean = [whitespace_clean(basic_clean(t)) for t in texts]
    diff = [t for t, a, b in zip(texts, hf_ids(clean), oc) if not (a == b).all()]
    assert not diff, (len(diff), diff[:5])
    raw = [t for t, c, a, b in zip(texts, clean, hf_ids(texts), oc)
           if not (a == b).all() and c == " ".join(t.split()).lower()]
    assert not raw, raw[:5]
    robust("vocabulary", f"pruned to {vocab:,} tokens: {len(texts):,} texts through open_clip, HF CLIPTokenizer "
           "(on open_clip's cleaned text) and the runtime", "identical ids",
           f"{len(texts) - len(diff)} of {len(texts)} identical")


def test_the_merges_a_corpus_fires_keep_its_segmentation_exactly(tmp_path, merges):
    """BPE applies the lowest-ranked pair present: dropping merges that never fired on a word cannot change it."""
    from open_clip.tokenizer import SimpleTokenizer
    texts = _texts()
    pruned = prune_merges(merges, corpus=texts)
    assert len(pruned) < 6000 and len(pruned) == len(fired_merges(merges, texts))
    full = SimpleTokenizer(context_length=77)
    small = SimpleTokenizer(bpe_path=str(write_merges(tmp_path / "b.gz", pruned)), context_length=77)
    for t in texts:
        a = [full.decoder[i] for i in full.encode(t)]
        b = [small.decoder[i] for i in small.encode(t)]
        assert a == b, t  # the same token strings, under other ids


def test_rows_are_inherited_by_token_string(merges):
    pruned = prune_merges(merges, keep=100)
    teacher, student = vocab_of(merges), vocab_of(pruned)
    rows = np.arange(len(teacher), dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    got = inherit_rows(rows, teacher, student)
    assert got.shape == (BYTE_TOKENS + 100 + 2, 4)
    assert [teacher[int(r)] for r in got[:, 0]] == student  # each row came from the teacher's token of that string
    assert got[-1, 0] == len(teacher) - 1 and got[-2, 0] == len(teacher) - 2  # SOT / EOT keep their rows


@pytest.mark.parametrize("keep,corpus,words", [(-1, None, "tokens; this tokenizer has 514"),
                                               (10**6, None, "tokens; this tokenizer has 514"),
                                               (None, ["", "  "], "holds no text"),
                                               (None, None, "needs a size")])
def test_bad_vocabulary_requests_are_one_line(merges, keep, corpus, words):
    with pytest.raises(ConfigError, match=words) as e:
        prune_merges(merges, keep=keep, corpus=corpus)
    assert "\n" not in str(e.value)
