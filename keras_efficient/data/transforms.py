"""Image loading and the detector's resize-keeping-aspect + pad-bottom/right preprocessing
(the letterbox rule: :func:`letterbox_geometry`), automl's: bilinear without antialias, the
pad value that normalizes to 0. TensorFlow is imported only when an image is resized."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_efficient.configs.efficientdet import check_resize
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


#: The pad value when no detector is known (classifier calibration images). Detectors pad with
#: their own value, ``spec.pad_value`` (the normalization mean, REFERENCE §2.7): pass it.
PAD_VALUE = 0.0

PadValue = float | Sequence[float]


def pad_channels(pad_value: PadValue, channels: int) -> np.ndarray:
    """``pad_value`` (one number, or one per channel) as a float32 ``[channels]`` array.

    Example::

        pad_channels((123.675, 116.28, 103.53), 3)  # the D-model pad value, per channel
    """
    values = np.asarray(pad_value, dtype="float32").reshape(-1)
    if values.size == 1:
        return np.full((channels,), values[0], dtype="float32")
    if values.size != channels:
        raise ValueError(f"pad_value must be one number or one per channel ({channels}); "
                         f"received {pad_value!r}.")
    return values


def letterbox_geometry(height: int, width: int, size: tuple[int, int]) -> tuple[float, int, int]:
    """The detector's letterbox rule, stated once: ``(scale, new_height, new_width)``.

    automl's (``InputProcessor.set_scale_factors_to_output_size``, REFERENCE §2.7), in float32
    as there: ``scale = min(size[0] / height, size[1] / width)`` (network pixels per original
    pixel: the largest that fits), the resized size ``int(height * scale)`` and
    ``int(width * scale)`` (truncated), at least 1 pixel. The resized image sits at the
    top-left of ``size`` and the bottom/right is padded with the detector's pad value.

    :func:`resize_and_pad` (prediction, verification, calibration) follows it; the TF graph
    paths (training/evaluation ``tf.data``, the SavedModel's in-graph preprocessing) follow it
    through :func:`keras_efficient.data.pipeline.letterbox_geometry_tf`, tested equal to this.
    ``scaled_size_tf`` there is the same rounding for a jittered scale.

    Example::

        letterbox_geometry(480, 640, (320, 320))  # (0.5, 240, 320)
    """
    if height < 1 or width < 1:
        raise ValueError(f"An image must have a non-zero size; received {height}x{width}.")
    h32, w32 = np.float32(height), np.float32(width)
    scale = min(np.float32(size[0]) / h32, np.float32(size[1]) / w32)
    return float(scale), max(1, int(h32 * scale)), max(1, int(w32 * scale))


def resize_and_pad(image: np.ndarray, size: tuple[int, int], *, pad_value: PadValue = PAD_VALUE,
                   antialias: bool = False) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio to fit ``size`` (height, width) and pad bottom/right
    with ``pad_value``: the geometry of :func:`letterbox_geometry`, automl's preprocessing.

    The resize is TensorFlow's bilinear ``tf.image.resize`` (half-pixel centres), so this
    numpy path gives exactly the pixels of the graph paths (``tf.data``, the SavedModel).
    ``antialias=False`` is automl's (and the default); ``True`` low-pass filters when
    shrinking (smoother, but not what the reference weights saw). ``pad_value``: one number
    or one per channel; detectors pass ``detector.pad_value`` (their normalization mean, so
    the padding is 0 after normalization, as in automl); the default 0 suits classifiers.

    Returns the ``[size, 3]`` float32 image and the scale (network pixels per original pixel)
    that :func:`keras_efficient.detection.postprocess.map_boxes_to_original` inverts.

    Example::

        padded, scale = resize_and_pad(load_image("photo.jpg"), (320, 320),
                                       pad_value=detector.pad_value)
    """
    import tensorflow as tf

    height, width = image.shape[:2]
    channels = image.shape[-1]
    scale, new_h, new_w = letterbox_geometry(height, width, size)
    resized = tf.image.resize(tf.convert_to_tensor(image, tf.float32), (new_h, new_w),
                              method="bilinear", antialias=bool(antialias)).numpy()
    out = np.empty((size[0], size[1], channels), dtype="float32")
    out[...] = pad_channels(pad_value, channels)
    out[:new_h, :new_w] = resized
    return out, scale


def stretch(image: np.ndarray, size: tuple[int, int], *, antialias: bool = False) -> np.ndarray:
    """Resize the whole image to ``size`` (height, width), aspect not kept: the ``"stretch"``
    resize mode, what the Android Task Library and MediaPipe feed a detector. The same bilinear
    ``tf.image.resize`` (half-pixel centres, no antialias by default) as :func:`resize_and_pad`
    and the graph paths; returns float32 ``[size, C]``.

    Example::

        fed = stretch(load_image("photo.jpg"), (320, 320))
    """
    import tensorflow as tf

    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"An image must have a non-zero size; received {image.shape[:2]}.")
    return tf.image.resize(tf.convert_to_tensor(image, tf.float32), tuple(size),
                           method="bilinear", antialias=bool(antialias)).numpy()


def fit_to_input(image: np.ndarray, size: tuple[int, int], *, resize: str = "letterbox",
                 pad_value: PadValue = PAD_VALUE, antialias: bool = False
                 ) -> tuple[np.ndarray, float]:
    """An image as a detector of resize mode ``resize`` takes it: :func:`resize_and_pad`
    (``"letterbox"``) or :func:`stretch` (``"stretch"``). Returns the float32 ``[size, 3]``
    image and the letterbox scale for :func:`image_info` (1.0 when stretching, where the
    boxes map back per axis from the original size alone).

    Example::

        fed, scale = fit_to_input(image, detector.image_size, resize=detector.resize,
                                  pad_value=detector.pad_value)
    """
    if check_resize(resize) == "stretch":
        return stretch(image, size, antialias=antialias), 1.0
    return resize_and_pad(image, size, pad_value=pad_value, antialias=antialias)


def image_info(original: Any, scale: float) -> np.ndarray:
    """``[scale, original height, original width]`` for the inference model's second input.

    Example::

        info = image_info(original, scale)  # [scale, H, W]: inference_model's second input
    """
    return np.asarray([scale, original.shape[0], original.shape[1]], dtype="float32")
