import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from edgeclip.data.pairs import CsvPairs, open_pairs
from edgeclip.errors import DataError


def _jpeg(color=(255, 0, 0)) -> bytes:
    b = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(b, "JPEG")
    return b.getvalue()


@pytest.fixture
def csv_dir(tmp_path):
    (tmp_path / "good.jpg").write_bytes(_jpeg())
    (tmp_path / "trunc.jpg").write_bytes(_jpeg()[:60])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notimg.png").write_text("hello")
    arr = (np.arange(256 * 16).reshape(16, 256) * 16).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")  # uint16 -> 16-bit PNG
    Image.new("CMYK", (8, 8)).save(tmp_path / "cmyk.jpg")
    rows = ["filepath,title", "good.jpg,a red square", "trunc.jpg,broken", "empty.jpg,zero bytes",
            "notimg.png,wrong ext", "missing.jpg,gone", "deep.png,sixteen bit", "cmyk.jpg,cmyk", "good.jpg,"]
    (tmp_path / "d.csv").write_text("\n".join(rows))
    return tmp_path


def test_csv_skips_and_counts_bad_items(csv_dir):
    ds = CsvPairs(csv_dir / "d.csv")
    items = [ds.load(i) for i in range(len(ds))]
    ok = [x for x in items if x is not None]
    assert len(ok) == 3 and all(x[0].mode == "RGB" for x in ok)
    assert ds.skipped.counts == {"corrupt image": 3, "missing file": 1, "empty caption": 1}


def test_malformed_or_empty_csv_is_one_clear_error(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="no rows"):
        CsvPairs(tmp_path / "e.csv")
    (tmp_path / "w.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="needs columns"):
        CsvPairs(tmp_path / "w.csv")
    with pytest.raises(DataError, match="cannot read data"):
        open_pairs(tmp_path / "x.parquet")


def test_webdataset_shards(tmp_path):
    with tarfile.open(tmp_path / "s0.tar", "w") as tf:
        for key, data in (("a.jpg", _jpeg()), ("a.txt", b"a red square"), ("b.jpg", b"garbage"),
                          ("b.txt", b"broken"), ("c.txt", b"no image")):
            info = tarfile.TarInfo(key)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    ds = open_pairs(tmp_path)
    items = [ds.decode(s) for s in ds.raw(0, 0, 0, 1, shuffle=False)]
    assert [x[2] for x in items if x] == ["a red square"]
    assert ds.skipped.counts == {"corrupt image": 1, "incomplete sample": 1}
