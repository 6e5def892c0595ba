"""Label heads (issue #36): ``export --labels`` stores the student's own class embeddings; ``Runtime.classify`` uses
the image encoder and the head only (no text tower, no tokenizer); bad label files are one line, nothing written."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import one_error_line, run_cli

LABELS = ["red star", "blue circle", "green square", "yellow triangle"]


@pytest.fixture(scope="module")
def headed(tmp_path_factory):
    from conftest import TINY_CFG
    from edgeclip.export import export_artifact
    from edgeclip.models import create_model
    d = tmp_path_factory.mktemp("head")
    (d / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (d / "templates.txt").write_text("a photo of a {}.\na drawing of a {}.\n")
    model = create_model(TINY_CFG, seed=0)
    res = export_artifact(model, d / "art", labels=d / "labels.txt", templates=d / "templates.txt")
    return res, model


def test_the_head_is_the_students_own_averaged_prompts_and_is_hashed(headed):
    import edgeclip.runtime as rt
    from edgeclip.artifact import read_manifest
    res, _ = headed
    m = read_manifest(res.out)
    assert m.head["count"] == 4 and m.head["templates"] == ["a photo of a {}.", "a drawing of a {}."]
    assert {m.head["embeddings"], m.head["labels"]} <= set(m.files)
    head = np.load(res.out / m.head["embeddings"])
    r = rt.load(res.out)
    want = np.stack([r.embed_texts([t.format(lab) for t in m.head["templates"]]).mean(0) for lab in LABELS])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert head.shape == (4, 32) and np.abs(head - want).max() <= 1e-5  # open_clip's zero-shot classifier


def test_classify_opens_neither_the_text_tower_nor_the_tokenizer(headed, monkeypatch):
    import edgeclip.runtime as rt
    from edgeclip.runtime import backends
    res, _ = headed
    opened, real = [], backends.open_session
    monkeypatch.setattr(backends, "open_session", lambda path, *a, **k: opened.append(a[3]) or real(path, *a, **k))
    monkeypatch.setattr(rt, "Tokenizer", lambda *a, **k: pytest.fail("classify built a tokenizer"))
    r = rt.load(res.out)
    out = r.classify([Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (30, 40), (0, 0, 255))], k=3)
    assert opened == ["pixel_values"]  # the image encoder only
    assert len(out) == 2 and all(len(o) == 3 and {lab for lab, _ in o} <= set(LABELS) for o in out)
    assert all(o[0][1] >= o[1][1] >= o[2][1] for o in out) and r.labels == LABELS


def test_a_head_file_altered_after_export_is_refused(headed, tmp_path):
    import edgeclip.runtime as rt
    from edgeclip.errors import IntegrityError
    art = shutil.copytree(headed[0].out, tmp_path / "art")
    (art / "labels.json").write_text(json.dumps({"labels": LABELS[::-1], "templates": []}))
    with pytest.raises(IntegrityError, match="labels.json does not match"):
        rt.load(art).classify(Image.new("RGB", (32, 32)))


def test_classify_without_a_head_says_how_to_add_one(tmp_path, tiny_model):
    import edgeclip.runtime as rt
    from edgeclip.errors import ConfigError
    from edgeclip.export import export_onnx
    export_onnx(tiny_model, tmp_path / "a")
    with pytest.raises(ConfigError, match="no label head; export it with --labels"):
        rt.load(tmp_path / "a").classify(Image.new("RGB", (32, 32)))


@pytest.mark.slow  # a CLI subprocess per case
@pytest.mark.parametrize("case,text,words", [
    ("empty", "", "is empty"), ("blank line", "cat\n\ndog\n", "blank line (line 2)"),
    ("duplicate", "cat\ndog\ncat\n", "repeats 'cat' (lines 1 and 3)"),
    ("too many", "\n".join(f"c{i}" for i in range(100_001)), "the limit is 100,000")])
def test_bad_label_files_are_one_line_and_write_nothing(tmp_path, case, text, words, robust):
    (tmp_path / "labels.txt").write_text(text)
    code, err = run_cli("export", "reference", "--onnx", "--labels", tmp_path / "labels.txt", "--out", tmp_path / "a")
    assert one_error_line(code, err) and words in err[0], err
    assert not (tmp_path / "a").exists()
    robust("export", f"--labels file: {case}", "one line, exit 2, nothing written", err[0])


def test_the_demo_classifies_with_the_artifacts_head(headed, tmp_path):
    """With a head, the demo's image tab offers the head's labels: the student's scores are the head's (no text
    tower), the teacher's its own prompts averaged the same way."""
    pytest.importorskip("gradio")
    from edgeclip.apps.demo.app import Models, shapes_gallery
    from edgeclip.models import save_student
    res, model = headed
    save_student(model, tmp_path / "teacher")  # the student as its own teacher: both sides must then agree
    m = Models(res.out, str(tmp_path / "teacher"), shapes_gallery(4))
    assert m.labels == LABELS
    s, t, _, _ = m.classify(Image.new("RGB", (32, 32), (255, 0, 0)), k=4)
    assert set(s) == set(LABELS) and list(s) == list(t)  # same ranking from the head and from PyTorch
    assert max(abs(s[k] - t[k]) for k in s) <= 1e-3


@pytest.mark.slow  # a CLI subprocess
def test_export_never_writes_over_its_labels_file(tmp_path, robust):
    """--labels is an input: an --out at it, or at the folder holding it, is refused and the file stays."""
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    for out in (tmp_path / "labels.txt", tmp_path):
        code, err = run_cli("export", "reference", "--onnx", "--labels", tmp_path / "labels.txt", "--out", out)
        assert one_error_line(code, err), err
        assert (tmp_path / "labels.txt").read_text() == "cat\ndog\n" and sorted(p.name for p in tmp_path.iterdir()) \
            == ["labels.txt"]
    robust("outputs", "export --out at its own --labels file or its folder", "refused in one line, file kept", err[0])
