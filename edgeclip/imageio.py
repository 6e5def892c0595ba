"""One rule for turning any image file into 8-bit RGB, shared by the training loader and the runtime (no torch).

Why one rule: the student is trained on what ``edgeclip.data`` decodes and queried with what ``edgeclip.runtime``
decodes; when the two disagree (a 16-bit PNG clipped to white by ``convert("RGB")``), the runtime embeds a
different picture than the user sees. The pixel cap is checked on the header, before any pixel is decoded, so a
tiny file that inflates to gigabytes is refused without allocating them. Photos are turned upright by their EXIF
orientation (as a viewer, a browser and transformers' ``load_image`` show them): a phone photo stored sideways is
embedded the way the user sees it, in training and at run time alike.
"""
from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageOps

from .errors import DataError

MAX_PIXELS = 64_000_000  # 8,000 x 8,000; a decoded RGB image of this size is ~190 MB

__all__ = ["MAX_PIXELS", "open_image", "to_rgb", "upright"]


def open_image(src, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Decode an image file (path or binary file object) fully and return it as 8-bit RGB.

    Args:
        src: a path or a binary file object.
        max_pixels: refuse images with more pixels than this (read from the header, before decoding); ``None``
            disables the cap.

    Returns:
        A loaded ``PIL.Image`` in mode ``RGB`` (see ``to_rgb`` for the conversion rule).

    Raises:
        DataError: more than ``max_pixels`` pixels. Unreadable or truncated files raise PIL's own errors
        (``OSError`` / ``PIL.UnidentifiedImageError``), which loaders count as corrupt items.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own cap below decides
        try:
            img = Image.open(src)  # reads the header only
        except Image.DecompressionBombError as e:  # PIL's own global guard (2 x Image.MAX_IMAGE_PIXELS) came first
            raise DataError(f"image has more than the limit of {max_pixels or Image.MAX_IMAGE_PIXELS:,} pixels "
                            f"({str(e).split(',')[0]}); downscale it first") from None
        w, h = img.size
        if max_pixels is not None and w * h > max_pixels:
            raise DataError(f"image is {w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,}; "
                            "downscale it first")
        img.load()  # decode fully here, so a truncated file fails now and not halfway through a batch
    return to_rgb(upright(img))


def upright(img: Image.Image) -> Image.Image:
    """``img`` rotated/flipped by its EXIF orientation tag (1..8), the tag removed; unchanged without one.

    A malformed EXIF block leaves the picture as stored (viewers ignore it too): the pixels themselves are fine.
    """
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # PIL raises assorted errors (SyntaxError, struct.error, ...) for broken EXIF blocks
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, keeping the picture a person would see.

    16-bit greyscale (``I;16*``, and ``I`` with values above 255) is scaled by 1/257 (65535 -> 255), never
    clipped or stretched to its own maximum; float (``F``) images in [0, 1] are scaled by 255, others clipped to
    [0, 255]; transparent images (``RGBA``, ``LA``, ``PA``, ``P`` with transparency) are composited onto white;
    everything else (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``) goes through PIL's ``convert``.
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            arr = arr * 255.0 if np.nanmax(arr, initial=0.0) <= 1.0 else arr
        elif img.mode.startswith("I;16") or np.nanmax(arr, initial=0.0) > 255:
            arr = arr / 257.0
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")
