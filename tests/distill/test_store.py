"""Teacher-embedding store: teach once, compress never runs the teacher for stored samples; wrong stores refused."""
import json
import os
import sys

import pytest
from PIL import Image

from edgeclip.distill import compress
from edgeclip.distill.store import TeacherStore, teach
from edgeclip.errors import ConfigError, DataError
from edgeclip.models import create_model, save_student
from edgeclip.models.io import preprocess_cfg

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from conftest import TINY_CFG, one_error_line, run_cli  # noqa: E402

TARGET = {"image": 60_000, "text": 60_000}


def _csv(root, n, name="d.csv"):
    rows = ["filepath,title"]
    for i in range(n):
        p = root / f"{i}.png"
        if not p.exists():
            Image.new("RGB", (32, 32), (i * 5 % 256, 200 - i % 200, i * 11 % 256)).save(p)
        rows.append(f"{i}.png,colour number {i}")
    (root / name).write_text("\n".join(rows))
    return root / name


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    teacher = create_model(TINY_CFG, seed=0)
    m = teach(teacher, _csv(root, 24), root / "store", batch_size=10, workers=0, shard_rows=16)
    return root, teacher, m


def test_teach_writes_a_keyed_memory_mapped_store(made):
    root, teacher, m = made
    assert m["edgeclip_output"] == "teacher-store" and m["count"] == 30  # 3 batches of 10 (the last wraps round)
    assert [s["count"] for s in m["shards"]] == [20, 10]
    st = TeacherStore.open(root / "store", teacher, preprocess_cfg(teacher))
    assert (st.lookup(["0.png\tcolour number 0", "nope"]) >= 0).tolist() == [True, False]


def test_compress_with_the_store_never_runs_the_teacher(made, tmp_path):
    root, teacher, _ = made

    def boom(*a, **k):
        raise AssertionError("the teacher ran")
    teacher.encode_image = boom  # an instance attribute: the weights (and their hash) are unchanged
    try:
        res = compress(teacher, TARGET, data=root / "d.csv", steps=4, batch_size=8, stages=1, workers=0,
                       teacher_store=root / "store", out=tmp_path / "run")
    finally:
        del teacher.encode_image
    assert res.report["teacher_cache"] == {"hits": 32, "misses": 0}


def test_a_store_of_k_views_serves_compress_views_without_the_teacher(made, tmp_path):
    root, teacher, _ = made
    m = teach(teacher, root / "d.csv", tmp_path / "store3", batch_size=12, workers=0, views=3)
    assert m["views"] == 3 and m["count"] == 3 * 24
    st = TeacherStore.open(tmp_path / "store3", teacher, preprocess_cfg(teacher))
    assert (st.lookup(["0.png\tcolour number 0#view2"]) >= 0).all()

    def boom(*a, **k):
        raise AssertionError("the teacher ran")
    teacher.encode_image = boom
    try:
        res = compress(teacher, TARGET, data=root / "d.csv", steps=6, batch_size=8, stages=1, workers=0,
                       teacher_store=tmp_path / "store3", out=tmp_path / "run", views=3)
    finally:
        del teacher.encode_image
    assert res.report["teacher_cache"] == {"hits": 48, "misses": 0}


def test_samples_missing_from_the_store_run_the_teacher_on_the_fly(made, tmp_path):
    root, teacher, _ = made
    res = compress(teacher, TARGET, data=_csv(root, 40, "more.csv"), steps=5, batch_size=8, stages=1, workers=0,
                   teacher_store=root / "store", out=tmp_path / "run")
    c = res.report["teacher_cache"]
    assert c["hits"] + c["misses"] == 40 and c["hits"] == 24


@pytest.mark.slow
def test_store_of_another_teacher_or_damaged_is_refused(made, tmp_path):
    root, teacher, _ = made
    other = create_model(TINY_CFG, seed=1)
    with pytest.raises(ConfigError, match="another teacher"):
        TeacherStore.open(root / "store", other, preprocess_cfg(other))
    pre = {**preprocess_cfg(teacher), "size": 64}
    with pytest.raises(ConfigError, match="other preprocessing"):
        TeacherStore.open(root / "store", teacher, pre)
    save_student(other, tmp_path / "other")
    code, err = run_cli("compress", tmp_path / "other", "--target", json.dumps(TARGET), "--data", root / "d.csv",
                        "--steps", "2", "--batch-size", "8", "--workers", "0", "--teacher-store", root / "store",
                        "--out", tmp_path / "run")
    assert one_error_line(code, err) and "another teacher" in err[0]
    assert not (tmp_path / "run").exists()
    import shutil
    shutil.copytree(root / "store", tmp_path / "broken")
    (tmp_path / "broken" / "r0-00001.img.npy").unlink()
    with pytest.raises(DataError, match="damaged"):
        TeacherStore.open(tmp_path / "broken", teacher, preprocess_cfg(teacher))
    code, err = run_cli("compress", "x", "--target", "1M", "--workers", "-1", "--out", tmp_path / "w")
    assert one_error_line(code, err) and "workers" in err[0]


@pytest.mark.slow
def test_a_shard_with_its_rows_reversed_is_refused_by_its_checksum(made, tmp_path):
    """Same shape, same dtype, wrong targets: it used to train silently (exit 0, '0 misses')."""
    import shutil

    import numpy as np
    root, teacher, _ = made
    shutil.copytree(root / "store", tmp_path / "s")
    assert set(json.loads((tmp_path / "s" / "manifest.json").read_text())["sha256"]) >= {
        "r0-00000.img.npy", "r0-00000.txt.npy", "r0-00000.hash.npy", "index-hash.npy", "index-loc.npy"}
    f = tmp_path / "s" / "r0-00000.img.npy"
    np.save(f, np.load(f)[::-1])
    with pytest.raises(DataError, match="r0-00000.img.npy does not match its sha256"):
        TeacherStore.open(tmp_path / "s", teacher, preprocess_cfg(teacher))
    save_student(teacher, tmp_path / "t")
    code, err = run_cli("compress", tmp_path / "t", "--target", json.dumps(TARGET), "--data", root / "d.csv",
                        "--steps", "2", "--batch-size", "8", "--workers", "0", "--teacher-store", tmp_path / "s",
                        "--out", tmp_path / "run")
    assert one_error_line(code, err) and "does not match its sha256" in err[0] and not (tmp_path / "run").exists()
    m = json.loads((root / "store" / "manifest.json").read_text())
    del m["sha256"]  # a store of an edgeclip before the checksums
    shutil.rmtree(tmp_path / "s")
    shutil.copytree(root / "store", tmp_path / "s")
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="records no sha256"):
        TeacherStore.open(tmp_path / "s", teacher, preprocess_cfg(teacher))


def test_teach_on_webdataset_shards_keys_by_sample_key(tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "data"))
    from test_wds import write_shards
    spec = write_shards(tmp_path / "d", n_shards=2, per=7, bad={3})
    teacher = create_model(TINY_CFG, seed=0)
    m = teach(teacher, spec, tmp_path / "store", batch_size=4, workers=0)
    assert m["count"] == 13  # every readable pair once, partial last batches kept
    st = TeacherStore.open(tmp_path / "store", teacher, preprocess_cfg(teacher))
    assert (st.lookup([f"{k:05d}" for k in range(14)]) >= 0).tolist() == [k != 3 for k in range(14)]
    with pytest.raises(ConfigError, match="existing edgeclip teacher-store; pass --overwrite"):
        teach(teacher, spec, tmp_path / "store", workers=0)


def test_teach_never_writes_over_the_data_it_reads(made):
    """Even with --overwrite and --views, the folder holding the CSV (or the CSV itself) is refused before the
    teacher runs, and nothing in it changes."""
    root, teacher, _ = made
    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    for out in (root, root / "d.csv"):
        with pytest.raises(ConfigError, match="input") as e:
            teach(teacher, root / "d.csv", out, workers=0, views=2, overwrite=True)
        assert "\n" not in str(e.value)
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == before


def test_teach_counts_caption_less_samples_and_a_truncated_tar(tmp_path, robust):
    import io
    import tarfile
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "data"))
    from test_wds import _jpeg, write_shards
    write_shards(tmp_path / "d", n_shards=2, per=6, bad={2})
    with tarfile.open(tmp_path / "d" / "s-001.tar", "a") as tf:  # a sample with an image and no caption
        info = tarfile.TarInfo("99999.jpg")
        data = _jpeg(99)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    whole = (tmp_path / "d" / "s-001.tar").read_bytes()
    (tmp_path / "d" / "s-002.tar").write_bytes(whole[: len(whole) // 2 + 100])  # cut mid-member
    spec = str(tmp_path / "d" / "s-{000..002}.tar")
    m = teach(create_model(TINY_CFG, seed=0), spec, tmp_path / "store", batch_size=4, workers=0)
    skipped = m["skipped"]
    robust("bad data", "teach over shards with a corrupt image, a caption-less sample and a truncated tar",
           "each skipped item counted by reason in the store's manifest", f"{m['count']} stored; skipped {skipped}")
    assert skipped.get("corrupt image") == 1 and skipped.get("incomplete sample", 0) >= 1
    assert skipped.get("last sample of a truncated tar") == 1, skipped
    assert m["count"] >= 11  # the two whole shards' readable pairs (5 + 6) and what precedes the cut
