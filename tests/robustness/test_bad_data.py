"""Bad data: every kind of broken image or caption is skipped and counted (or converted); an all-bad dataset is
one error line; the CSV / webdataset readers and the runtime tokenizer survive fuzzing."""
import io
import os
import struct
import tarfile
import zlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import one_error_line, run_cli
from edgeclip.data.pairs import CsvPairs
from edgeclip.data.wds import WdsPairs
from edgeclip.errors import DataError

FUZZ = settings(max_examples=int(os.environ.get("EDGECLIP_FUZZ_EXAMPLES", "150")), deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _jpeg(mode="RGB", size=(16, 16)) -> bytes:
    b = io.BytesIO()
    Image.new(mode, size).save(b, "JPEG")
    return b.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming a huge image (a decompression bomb in 40 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\0\0\0\0IEND\xaeB`\x82"


CASES = {  # file name -> (bytes or None for a missing file, caption bytes, expected outcome)
    "good.jpg": (_jpeg(), b"a red square", "loaded"),
    "trunc.jpg": (_jpeg()[:80], b"truncated jpeg", "corrupt image"),
    "zero.jpg": (b"", b"zero-byte file", "corrupt image"),
    "text.png": (b"hello, not a png", b"wrong extension", "corrupt image"),
    "cmyk.jpg": (_jpeg("CMYK"), b"cmyk jpeg", "loaded"),
    "grey.jpg": (_jpeg("L"), b"greyscale jpeg", "loaded"),
    "deep.png": (None, b"sixteen-bit png", "loaded"),
    "bomb.png": (_png_header_only(30_000, 30_000), b"decompression bomb", "corrupt image"),
    "gone.jpg": (None, b"missing file", "missing file"),
    "latin1.jpg": (_jpeg(), "caf\xe9 cr\xe8me".encode("latin-1"), "loaded"),
    "nocap.jpg": (_jpeg(), b"", "empty caption"),
}


@pytest.fixture
def bad_csv(tmp_path):
    for name, (data, _, _) in CASES.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    arr = (np.arange(16 * 16).reshape(16, 16) * 200).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")  # uint16 -> a 16-bit PNG
    rows = [b"filepath,title"] + [name.encode() + b"," + cap for name, (_, cap, _) in CASES.items()]
    (tmp_path / "d.csv").write_bytes(b"\n".join(rows) + b"\n")
    return tmp_path / "d.csv"


def test_every_bad_item_is_skipped_and_counted(bad_csv, robust):
    pairs = CsvPairs(bad_csv)
    got = {}
    for i, (name, (_, _, expected)) in enumerate(CASES.items()):
        before = dict(pairs.skipped.counts)
        item = pairs.load(i)
        after = dict(pairs.skipped.counts)
        got[name] = "loaded" if item is not None else next(k for k in after if after[k] != before.get(k, 0))
        if item is not None:
            assert item[0].mode == "RGB" and item[0].size[0] > 0
        robust("bad data", f"{name}: {CASES[name][1].decode('latin-1')}", expected,
               got[name] + (f" (mode RGB, caption {item[1]!r})" if item is not None else ""))
    assert got == {n: c[2] for n, c in CASES.items()}
    assert pairs.skipped.total == sum(c[2] != "loaded" for c in CASES.values())


@pytest.mark.slow
def test_all_bad_dataset_is_one_error_line(tmp_path, tiny_model, robust):
    from edgeclip.models import save_student
    save_student(tiny_model, tmp_path / "teacher")
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.jpg").write_bytes(b"garbage")
    (tmp_path / "d.csv").write_text("filepath,title\na.jpg,one\nb.jpg,two\nc.jpg,three\n")
    code, err = run_cli("compress", tmp_path / "teacher", "--target", '{"image": 60000, "text": 60000}', "--data",
                        tmp_path / "d.csv", "--steps", "2", "--batch-size", "4", "--out", tmp_path / "run")
    robust("bad data", "a dataset where every item is bad", "one error line, exit 2, no student written",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "no readable items" in err[0]
    assert not (tmp_path / "run" / "student").exists()


def _fuzz(robust, case: str, expected: str, strategy, check) -> Counter:
    """Run ``check(example) -> outcome`` over hypothesis examples; the row reports the outcomes it counted.

    Hypothesis replays and shrinks a failing example and then raises, so the row is written (in ``finally``) with
    the counts seen so far and the test's verdict, FAIL.
    """
    seen: Counter = Counter()

    @FUZZ
    @given(strategy)
    def run(example):
        seen[check(example)] += 1

    try:
        run()
    finally:
        robust("bad data", case, expected, f"{sum(seen.values())} examples: "
               + ", ".join(f"{n} {k}" for k, n in seen.most_common()))
    assert sum(seen.values()) >= min(FUZZ.max_examples, 10)
    return seen


def _read_all(make_pairs) -> str:
    """Open a reader and load up to 5 items; the outcome's kind (an exception other than DataError propagates)."""
    try:
        pairs = make_pairs()
    except DataError:
        return "refused with DataError"
    got = [pairs.load(i) for i in range(min(len(pairs), 5))]
    for item in got:
        assert item is None or (isinstance(item[1], str) and item[0].mode == "RGB")
    if not got:
        return "opened with no items"
    return "opened, items loaded" if any(i is not None for i in got) else "opened, every item skipped"


_csv_row = st.tuples(st.sampled_from(["good.jpg", "good.jpg", "bad.jpg", "gone.jpg", "../good.jpg", "", "x,y.jpg"]),
                    st.sampled_from([",", ",", "\t", ";"]), st.text(max_size=30))
_csv = st.one_of(  # raw bytes, and CSVs shaped like real ones (so rows are really read, loaded or skipped)
    st.binary(max_size=600),
    st.tuples(st.sampled_from([b"filepath,title", b"filepath,title", b"filepath\ttitle", b"image,caption",
                               b"\xef\xbb\xbffilepath,title"]),
              st.lists(_csv_row, max_size=6), st.binary(max_size=20)).map(
        lambda t: b"\n".join([t[0], *(f"{f}{sep}{c}".encode() for f, sep, c in t[1])]) + t[2]))


def test_fuzz_csv_reader(tmp_path, robust):
    p = tmp_path / "fuzz.csv"
    (tmp_path / "good.jpg").write_bytes(_jpeg())
    (tmp_path / "bad.jpg").write_bytes(_jpeg()[:60])

    def check(blob: bytes) -> str:
        p.write_bytes(blob)
        return _read_all(lambda: CsvPairs(p))

    seen = _fuzz(robust, "fuzzed CSV bytes and CSV-shaped rows (hypothesis)",
                 "no crash: DataError, or rows loaded / skipped", _csv, check)
    assert seen["opened, items loaded"] > 0 and seen["refused with DataError"] > 0  # both paths were exercised


_member = st.tuples(st.sampled_from(["a", "b", "x/y", "../up", "c.d"]),
                    st.sampled_from(["jpg", "png", "txt", "JPG", "json", ""]),
                    st.one_of(st.binary(max_size=200), st.just(_jpeg()), st.text(max_size=40).map(str.encode)))
_sample = st.tuples(st.sampled_from(["s1", "s2", "s3"]), st.sampled_from([_jpeg(), _jpeg()[:60], b""]),
                    st.text(max_size=30)).map(lambda t: [(t[0], "jpg", t[1]), (t[0], "txt", t[2].encode())])


def test_fuzz_webdataset_reader(tmp_path, robust):
    p = tmp_path / "shard.tar"

    def check(args) -> str:
        members, samples, truncate = args
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for key, ext, data in [m for pair in samples for m in pair] + members:
                info = tarfile.TarInfo(f"{key}.{ext}" if ext else key)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        p.write_bytes(raw[: len(raw) // 2] if truncate else raw)
        try:
            pairs = WdsPairs(str(p))
        except DataError:
            return "refused with DataError"
        got = [pairs.decode(r) for r, _ in zip(pairs.raw(0, 0, 0, 1), range(5))]
        for item in got:
            assert item is None or (isinstance(item[2], str) and item[1].mode == "RGB")
        if not got:
            return "opened with no items"
        return "opened, items loaded" if any(i is not None for i in got) else "opened, every item skipped"

    seen = _fuzz(robust, "fuzzed webdataset tars (image/caption samples, random members, truncated; hypothesis)",
                 "no crash: DataError, or samples loaded / skipped",
                 st.tuples(st.lists(_member, max_size=6), st.lists(_sample, max_size=3), st.booleans()), check)
    assert seen["opened, items loaded"] > 0 and seen["refused with DataError"] > 0  # both paths were exercised


@pytest.fixture(scope="module")
def tokenizers():
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    from edgeclip.runtime.tokenizer import Tokenizer
    return Tokenizer(default_bpe(), 16), SimpleTokenizer(context_length=16)


def test_fuzz_runtime_tokenizer_matches_open_clip(tokenizers, robust):
    ours, ref = tokenizers

    def check(text: str) -> str:
        ids = ours([text])
        assert ids.shape == (1, 16) and ids.dtype == np.int64
        assert ids.tolist() == ref([text]).tolist()
        return "ids equal to open_clip's" + (" (truncated)" if ids[0, -1] != 0 else "")

    _fuzz(robust, "fuzzed tokenizer text (hypothesis)", "ids equal open_clip's SimpleTokenizer, shape (1, 16)",
          st.text(max_size=120), check)
