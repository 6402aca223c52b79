"""Image loading and the detector's resize-keeping-aspect + pad-bottom/right preprocessing
(the letterbox rule: :func:`letterbox_geometry`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from keras_efficient.data.decode import read_image


def load_image(source: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
    """An image file path or array -> float32 RGB ``[H, W, 3]`` in [0, 255].

    Files are decoded by :func:`keras_efficient.data.decode.read_image` (EXIF orientation
    applied, 16-bit scaled, grayscale/RGBA/palette/CMYK to RGB; a bad file raises naming it),
    the decoder training uses too. Arrays must be ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or
    ``[H, W, 4]``.

    Example::

        image = load_image("photo.jpg")  # float32 [H, W, 3] RGB in [0, 255]
    """
    if isinstance(source, str | os.PathLike):
        return read_image(source).astype("float32")
    array = np.asarray(source)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"An image array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; received shape "
            f"{array.shape}."
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array[..., :3].astype("float32")


#: The value the letterbox pads the bottom/right with (every resize-and-pad path uses it).
PAD_VALUE = 0.0


def letterbox_geometry(height: int, width: int, size: tuple[int, int]) -> tuple[float, int, int]:
    """The detector's letterbox rule, stated once: ``(scale, new_height, new_width)``.

    ``scale = min(size[0] / height, size[1] / width)`` in float64 (network pixels per original
    pixel: the largest that fits); the resized size is ``height * scale`` and ``width * scale``
    rounded half to even (Python's ``round``, ``tf.round``), at least 1 pixel. The resized image
    sits at the top-left of ``size`` and the bottom/right is padded with :data:`PAD_VALUE`.

    :func:`resize_and_pad` (prediction, verification, calibration) follows it; the TF graph
    paths (training/evaluation ``tf.data``, the SavedModel's in-graph preprocessing) follow it
    through :func:`keras_efficient.data.pipeline.letterbox_geometry_tf`, tested equal to this.
    ``scaled_size_tf`` there is the same rounding for a jittered scale.

    Example::

        letterbox_geometry(480, 640, (320, 320))  # (0.5, 240, 320)
    """
    if height < 1 or width < 1:
        raise ValueError(f"An image must have a non-zero size; received {height}x{width}.")
    scale = min(size[0] / height, size[1] / width)
    return float(scale), max(1, round(height * scale)), max(1, round(width * scale))


def resize_and_pad(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio to fit ``size`` (height, width), pad bottom/right with
    :data:`PAD_VALUE` (0): the geometry of :func:`letterbox_geometry`; PIL bilinear resize.

    Returns the ``[size, 3]`` float32 image and the scale (network pixels per original pixel)
    that :func:`keras_efficient.detection.postprocess.map_boxes_to_original` inverts.

    Example::

        padded, scale = resize_and_pad(load_image("photo.jpg"), (320, 320))
    """
    from PIL import Image

    height, width = image.shape[:2]
    scale, new_h, new_w = letterbox_geometry(height, width, size)
    channels = [
        np.asarray(Image.fromarray(image[..., c].astype("float32"), mode="F").resize(
            (new_w, new_h), Image.Resampling.BILINEAR))
        for c in range(image.shape[-1])
    ]
    resized = np.stack(channels, axis=-1)
    out = np.full((size[0], size[1], image.shape[-1]), PAD_VALUE, dtype="float32")
    out[:new_h, :new_w] = resized
    return out, scale


def image_info(original: Any, scale: float) -> np.ndarray:
    """``[scale, original height, original width]`` for the inference model's second input.

    Example::

        info = image_info(original, scale)  # [scale, H, W]: inference_model's second input
    """
    return np.asarray([scale, original.shape[0], original.shape[1]], dtype="float32")
