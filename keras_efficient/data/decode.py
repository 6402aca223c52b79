"""The one image decoder: every path (training, prediction, evaluation, ``classify``,
``detect``, int8 calibration) reads files through :func:`read_image`, so all see the same pixels.

* EXIF orientation is applied, as COCO tools, browsers and phones display the image (a phone
  photo stored landscape with orientation 6 is decoded portrait).
* 16-bit images (``I;16`` PNGs and the like) are scaled to 8 bits (65535 -> 255) instead of being
  clipped to white; grayscale is replicated to RGB, alpha dropped, palette and CMYK converted.
* A file that cannot be decoded (truncated, not an image) raises :class:`ImageDecodeError`
  naming the file and the fix.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
"""File suffixes looked for when a folder of images is given (any case)."""
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
# EXIF orientations that swap height and width (transposed or rotated by 90 degrees).
SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
EXIF_ORIENTATION = 0x0112


class ImageDecodeError(ValueError):
    """An image file that cannot be decoded; the message names the file and the fix.

    Example::

        try:
            read_image("broken.jpg")
        except ImageDecodeError as error:
            print(error)  # "broken.jpg: cannot decode the image (image file is truncated ...)"
    """


def _to_rgb(image: Any) -> Any:
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(image, dtype="int64")
        top = 65535 if image.mode.startswith("I;16") or wide.max(initial=0) > 255 else 255
        scaled = (np.clip(wide, 0, top) * 255 + top // 2) // top
        image = Image.fromarray(scaled.astype("uint8"), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to uint8 RGB ``[H, W, 3]`` as displayed (see the module docstring).

    Example::

        pixels = read_image("phone_photo.jpg")  # EXIF-rotated, uint8 [H, W, 3]
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            oriented = ImageOps.exif_transpose(opened)
            return np.asarray(_to_rgb(oriented), dtype="uint8")
    except FileNotFoundError as error:
        raise ImageDecodeError(f"{os.fspath(path)}: no such image file.") from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(
            f"{os.fspath(path)}: cannot decode the image ({error}). Re-encode it (e.g. save it "
            "again as PNG/JPEG) or remove it from the inputs (on_error='skip' / --on-error "
            "skip skips such files).") from error


def displayed_size(path: str | os.PathLike[str]) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((height, width) as displayed, (height, width) as stored)``, from the header only.

    Example::

        displayed, stored = displayed_size("phone_photo.jpg")  # differ for EXIF orientation 6
    """
    from PIL import Image

    with Image.open(path) as opened:
        width, height = opened.size
        orientation = opened.getexif().get(EXIF_ORIENTATION, 1)
    stored = (height, width)
    return ((width, height) if orientation in SWAPPING_ORIENTATIONS else stored), stored
