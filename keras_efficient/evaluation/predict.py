"""``predict``: images of any size (files or arrays) -> detections in original pixels."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Iterator
from typing import Any

import keras
import numpy as np

from keras_efficient.data.transforms import (
    PAD_VALUE,
    PadValue,
    fit_to_input,
    image_info,
    load_image,
)
from keras_efficient.detection.inference import ToOriginalPixels
from keras_efficient.models.efficientdet import EfficientDetector


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def wrapped_detector(model: keras.Model) -> EfficientDetector | None:
    """The :class:`EfficientDetector` a model is or wraps (e.g. an ``inference_model``).

    Example::

        wrapped_detector(inference_model(detector)) is detector  # True
    """
    if isinstance(model, EfficientDetector):
        return model
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, EfficientDetector):
            return layer
    return None


def detector_pad_value(model: keras.Model) -> PadValue:
    """The pad value of the :class:`EfficientDetector` a model is or wraps (e.g. an
    ``inference_model``), :data:`~keras_efficient.data.transforms.PAD_VALUE` (0) without one.

    Example::

        detector_pad_value(inference_model(EfficientDet("lite0")))  # (127.0, 127.0, 127.0)
    """
    detector = wrapped_detector(model)
    return PAD_VALUE if detector is None else detector.pad_value


def inference_resize(inference: keras.Model) -> str:
    """How images must be fed to an ``inference_model``: the resize mode its mapping back to
    original pixels undoes (its ``ToOriginalPixels`` layer; ``"letterbox"`` without one).

    Example::

        inference_resize(inference_model(EfficientDet("lite0", resize="stretch")))  # "stretch"
    """
    for layer in getattr(inference, "layers", ()):
        if isinstance(layer, ToOriginalPixels):
            return layer.resize
    return "letterbox"


def predict(inference: keras.Model, images: Iterable[str | os.PathLike[str] | np.ndarray],
            batch_size: int = 1, score_threshold: float = 0.0, *,
            pad_value: PadValue | None = None, antialias: bool = False
            ) -> list[dict[str, Any]]:
    """Run an inference model (see ``detection.inference.inference_model``) on any images.

    Each image is loaded (RGB) and fed as the wrapped detector's ``resize`` mode says
    (:func:`~keras_efficient.data.transforms.fit_to_input`): resized keeping its aspect ratio
    and padded to the model input (``"letterbox"``: automl's bilinear resize without antialias
    unless ``antialias``; ``pad_value`` by default the wrapped detector's,
    :func:`detector_pad_value`) or stretched to it (``"stretch"``); the returned boxes are in
    the original image's pixels. One
    dict per image with ``boxes`` ``[K, 4]`` (ymin, xmin, ymax, xmax), ``scores`` ``[K]`` and
    ``classes`` ``[K]``, sorted by score, keeping detections above ``score_threshold``.
    Images are decoded one batch at a time (memory does not grow with their number). No images
    give an empty list (Keras' own ``predict`` fails on an empty batch).

    Example::

        model = inference_model(EfficientDetLite0(weights="coco"), class_aware=False)
        for found in predict(model, ["a.jpg", "b.png"], score_threshold=0.3):
            found["boxes"], found["scores"], found["classes"]  # boxes in each image's pixels
    """
    if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
            or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer; received {batch_size!r}.")
    size = (int(inference.input_shape[0][1]), int(inference.input_shape[0][2]))
    pad = detector_pad_value(inference) if pad_value is None else pad_value
    resize = inference_resize(inference)
    results: list[dict[str, Any]] = []
    # Decoded one batch at a time, so memory does not grow with the number of images.
    for chunk in _batches(images, int(batch_size)):
        batch, infos = [], []
        for source in chunk:
            original = load_image(source)
            padded, scale = fit_to_input(original, size, resize=resize, pad_value=pad,
                                         antialias=antialias)
            batch.append(padded)
            infos.append(image_info(original, scale))
        out = inference.predict_on_batch([np.stack(batch), np.stack(infos)])
        for i in range(len(chunk)):
            count = int(out["num_detections"][i])
            keep = np.asarray(out["scores"][i][:count]) > score_threshold
            results.append({
                "boxes": np.asarray(out["boxes"][i][:count])[keep],
                "scores": np.asarray(out["scores"][i][:count])[keep],
                "classes": np.asarray(out["classes"][i][:count])[keep],
            })
    return results
