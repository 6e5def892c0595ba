"""EXIF orientation: a photo stored sideways is decoded upright by the one image rule, in training, the runtime and
the demo alike (issue #26); a broken EXIF block leaves the pixels as stored."""
import numpy as np
import pytest
from PIL import Image

from edgeclip.imageio import open_image

# EXIF orientation tag -> the PIL transpose that shows the stored pixels upright (None: already upright)
UPRIGHT = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
           7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _stored(tmp_path, orientation: int, name: str = "photo.png") -> tuple:
    """A 60x40 PNG whose EXIF says ``orientation``, and the picture a viewer shows for it."""
    pixels = Image.fromarray((np.random.default_rng(orientation).random((40, 60, 3)) * 255).astype(np.uint8))
    exif = pixels.getexif()
    exif[0x0112] = orientation
    path = tmp_path / name
    pixels.save(path, exif=exif)
    t = UPRIGHT[orientation]
    return path, np.asarray(pixels if t is None else pixels.transpose(t))


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_every_exif_orientation_is_decoded_upright(tmp_path, orientation):
    path, seen = _stored(tmp_path, orientation)
    got = np.asarray(open_image(path))
    assert got.shape == seen.shape and np.array_equal(got, seen)


def test_training_loader_runtime_and_demo_see_the_upright_photo(tmp_path):
    from edgeclip.apps.demo.app import open_upload
    from edgeclip.data.pairs import CsvPairs
    from edgeclip.runtime import as_image
    path, seen = _stored(tmp_path, 6)
    (tmp_path / "pairs.csv").write_text(f"filepath\ttitle\n{path}\ta sideways photo\n")
    img, caption = CsvPairs(tmp_path / "pairs.csv").load(0)
    assert caption == "a sideways photo" and np.array_equal(np.asarray(img), seen)
    assert np.array_equal(np.asarray(as_image(str(path), None)), seen)
    assert np.array_equal(np.asarray(open_upload(path)), seen)


def test_broken_exif_keeps_the_stored_pixels(tmp_path):
    pixels = Image.fromarray(np.full((8, 12, 3), 77, np.uint8))
    path = tmp_path / "broken.jpg"
    pixels.save(path, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")  # an IFD that claims 65,535 entries
    got = open_image(path)
    assert got.size == (12, 8)
