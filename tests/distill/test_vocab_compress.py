"""compress --vocab / --vocab-corpus (issue #36): the student ships a pruned CLIP vocabulary whose rows it inherited
from the teacher by token string, and that vocabulary travels into every output: the student folder (plain
open_clip with bpe_path=), the exported artifact and the torch-free runtime."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import one_error_line, run_cli
from edgeclip.errors import ConfigError

pytestmark = pytest.mark.slow  # a compress run and CLI subprocesses; tests/models/test_vocab.py is the fast part

TEXTS = ["a red star", "a small blue circle on the left", "", "naïve café 🐶", "a photo of a dog"]


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    from conftest import TINY_CFG
    from edgeclip.distill import compress
    from edgeclip.models import create_model
    d = tmp_path_factory.mktemp("vocab")
    (d / "corpus.txt").write_text("a red star\na small blue circle on the left\n")
    teacher = create_model(TINY_CFG, seed=0)
    res = compress(teacher, {"image": 60_000, "text": 60_000}, data="shapes:64", steps=2, batch_size=16, stages=1,
                   vocab=2000, vocab_corpus=str(d / "corpus.txt"), out=d / "run")
    return teacher, res


def test_the_student_has_the_pruned_vocabulary_with_inherited_rows(pruned_run):
    from open_clip.tokenizer import SimpleTokenizer

    from edgeclip.models import get_tokenizer, load_student
    from edgeclip.models.vocab import read_merges, vocab_of
    teacher, res = pruned_run
    student = load_student(res.out / "student")
    n = student.token_embedding.num_embeddings
    assert 2000 <= n < 2100 and res.report["vocab"]["tokens"] == n  # the first 1,486 merges + the corpus's own
    assert (res.out / "student" / "bpe_vocab.txt.gz").is_file()
    ids = get_tokenizer(student)(TEXTS)
    assert int(ids.max()) == n - 1  # EOT is the last id: argmax pooling still finds it
    full = SimpleTokenizer()
    mine = vocab_of(read_merges(student.edgeclip_bpe))
    for t in TEXTS[:2]:  # the corpus's texts keep their exact tokens
        assert [mine[i] for i in get_tokenizer(student).encode(t)] == [full.decoder[i] for i in full.encode(t)]


def test_plain_open_clip_loads_the_student_with_its_bpe_path(pruned_run):
    import open_clip

    from edgeclip.models import get_tokenizer, load_student
    _, res = pruned_run
    folder = res.out / "student"
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tok = open_clip.get_tokenizer(f"local-dir:{folder}", bpe_path=str(folder / "bpe_vocab.txt.gz"))
    ours = load_student(folder)
    assert torch.equal(tok(TEXTS), get_tokenizer(ours)(TEXTS))
    with torch.no_grad():
        a = model.encode_text(tok(TEXTS), normalize=True)
        b = ours.encode_text(get_tokenizer(ours)(TEXTS), normalize=True)
    assert (a - b).abs().max() <= 1e-6


def test_the_artifact_ships_the_pruned_vocabulary_and_the_runtime_matches(pruned_run, tmp_path):
    import edgeclip.runtime as rt
    from edgeclip.export import export_artifact
    from edgeclip.models import get_tokenizer, load_student
    _, res = pruned_run
    student = load_student(res.out / "student")
    out = export_artifact(student, tmp_path / "art", ["fp32", "int8-dynamic"])
    assert out.passed, [r.failed for r in out.parity]
    r = rt.load(out.out)
    n = student.token_embedding.num_embeddings
    assert np.array_equal(r.tokenizer(TEXTS), get_tokenizer(student)(TEXTS).numpy())
    with torch.no_grad():
        ref = student.encode_text(get_tokenizer(student)(TEXTS), normalize=True).numpy()
    assert np.abs(r.embed_texts(TEXTS) - ref).max() <= 1e-5
    import json
    tok = json.loads((out.out / "tokenizer.json").read_text())
    assert (tok["sot_token_id"], tok["eot_token_id"], tok["vocab_size"]) == (n - 2, n - 1, n)


@pytest.mark.parametrize("args,words", [(["--vocab", "100"], "vocab must be"), (["--vocab", "50000"], "vocab must be"),
                                        (["--vocab-corpus", "nope.txt"], "does not exist"),
                                        (["--vocab-corpus", "EMPTY"], "holds no text")])
def test_bad_vocabulary_requests_are_one_line_and_write_nothing(tmp_path, args, words, robust):
    (tmp_path / "empty.txt").write_text("\n \n")
    args = [str(tmp_path / "empty.txt") if a == "EMPTY" else str(tmp_path / a) if a == "nope.txt" else a for a in args]
    code, err = run_cli("compress", "reference", "--target", "25%", "--data", "shapes:64", "--steps", "2",
                        *args, "--out", tmp_path / "run")
    assert one_error_line(code, err) and words in err[0], err
    assert not (tmp_path / "run").exists()
    robust("compress", f"vocabulary: {' '.join(args).replace(str(tmp_path), '<tmp>')}", "one line, nothing written",
           err[0])


def test_a_teacher_whose_tokenizer_is_not_clips_bpe_is_refused_for_pruning():
    from conftest import TINY_CFG
    from edgeclip.models import create_model
    from edgeclip.models.vocab import prune_vocabulary
    m = create_model(TINY_CFG, seed=0)
    m.token_embedding = torch.nn.Embedding(1000, 64)  # a 1,000-token tokenizer: not CLIP's BPE
    with pytest.raises(ConfigError, match="not supported for vocabulary pruning"):
        prune_vocabulary(m, keep=10)


def test_the_hf_copy_carries_the_pruned_tokenizer_and_its_eos_id(pruned_run, tmp_path):
    pytest.importorskip("transformers")
    from open_clip.tokenizer import basic_clean, whitespace_clean
    from transformers import CLIPModel, CLIPTokenizer

    from edgeclip.models import get_tokenizer, load_student, save_student
    _, res = pruned_run
    student = load_student(res.out / "student")
    save_student(student, tmp_path / "s", hf=True)
    hf, tok = CLIPModel.from_pretrained(str(tmp_path / "s" / "hf")), CLIPTokenizer.from_pretrained(str(tmp_path / "s" /
                                                                                                    "hf"))
    n = student.token_embedding.num_embeddings
    assert hf.config.text_config.eos_token_id == tok.eos_token_id == n - 1
    texts = [whitespace_clean(basic_clean(t)) for t in TEXTS]  # HF does not run open_clip's text cleaning
    enc = tok(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    with torch.no_grad():
        a = hf.get_text_features(**enc)
        a = (a.pooler_output if hasattr(a, "pooler_output") else a)
        a = a / a.norm(dim=-1, keepdim=True)
        b = student.encode_text(get_tokenizer(student)(TEXTS), normalize=True)
    assert (a - b).abs().max() <= 1e-4
