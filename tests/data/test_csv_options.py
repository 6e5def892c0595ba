"""open_clip's CSV conventions: tab by default whatever the extension, --csv-separator / --csv-img-key /
--csv-caption-key, a sniffed separator when none is given, a UTF-8 byte-order mark."""
import pytest
from PIL import Image

from edgeclip.data.pairs import CsvPairs, open_pairs, sniff_separator
from edgeclip.errors import DataError


@pytest.fixture
def img_dir(tmp_path):
    for n in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / n)
    return tmp_path


@pytest.mark.parametrize("sep", ["\t", ",", ";", "|"])
def test_separator_is_sniffed_whatever_the_extension(img_dir, sep):
    rows = ["filepath" + sep + "title", "a.png" + sep + "a red square", "b.png" + sep + "another red square"]
    if sep != ",":  # commas inside captions must not confuse the sniffer
        rows.append("a.png" + sep + "red, square, small")
    (img_dir / "pairs.csv").write_text("\n".join(rows) + "\n")
    ds = CsvPairs(img_dir / "pairs.csv")
    assert ds.sep == sep and ds.rows[1] == ("b.png", "another red square")
    assert ds.load(0)[1] == "a red square"


def test_open_clip_keys_separator_and_bom(img_dir):
    text = "\ufeffimage;caption;extra\na.png;a red square;x\nb.png;a red thing;y\n"
    (img_dir / "coco.txt").write_text(text, encoding="utf-8")  # Excel's "CSV UTF-8" starts with a BOM
    ds = open_pairs(img_dir / "coco.txt", csv_img_key="image", csv_caption_key="caption", csv_separator=";")
    assert len(ds) == 2 and ds.load(1)[1] == "a red thing"
    assert CsvPairs(img_dir / "coco.txt", "image", "caption").sep == ";"  # sniffed from the header
    (img_dir / "t.csv").write_text("filepath\ttitle\na.png\ta, b, c\n")
    assert CsvPairs(img_dir / "t.csv", sep="\\t").rows == [("a.png", "a, b, c")]  # '\t' as typed in a shell


def test_wrong_keys_or_separator_is_one_clear_error(img_dir):
    (img_dir / "p.csv").write_text("filepath,title\na.png,x\n")
    with pytest.raises(DataError, match="--csv-img-key"):
        CsvPairs(img_dir / "p.csv", img_key="image")
    with pytest.raises(DataError, match="one character"):
        CsvPairs(img_dir / "p.csv", sep=";;")


def test_unknown_separator_falls_back_to_tab():
    assert sniff_separator("nothing to see here") == "\t"
