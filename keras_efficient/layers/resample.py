"""Nearest-neighbour upsampling to an exact target size (REFERENCE §2.3), and the choice of its
TensorFlow lowering for export (:func:`upsample_lowering`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
from keras import ops

UPSAMPLE_LOWERINGS = ("resize", "repeat")
"""``resize``: TensorFlow's ``ResizeNearestNeighbor`` (TFLite ``RESIZE_NEAREST_NEIGHBOR``, which
the EdgeTPU maps); ``repeat``: concatenation + reshape (+ slice), which XNNPACK delegates."""
_lowering = ["resize"]


@contextlib.contextmanager
def upsample_lowering(name: str) -> Iterator[None]:
    """Lower every :class:`NearestUpsample` traced inside the block as ``name``
    (:data:`UPSAMPLE_LOWERINGS`); the result is the same tensor either way.

    ``repeat`` keeps the CPU delegate (XNNPACK) in one partition, where each
    ``RESIZE_NEAREST_NEIGHBOR`` would split it; sizes that are no integer repeat fall back to
    ``resize``. Export traces the model inside the block (see
    :func:`keras_efficient.export.tflite.write_saved_model`).

    Example::

        with upsample_lowering("repeat"):
            archive.add_endpoint("serve", serve, input_signature=[spec])
    """
    if name not in UPSAMPLE_LOWERINGS:
        raise ValueError(f"lowering must be one of {UPSAMPLE_LOWERINGS}; received {name!r}.")
    _lowering.append(name)
    try:
        yield
    finally:
        _lowering.pop()


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of each target position: floor(i × source / target), no half-pixel centres.

    Example::

        nearest_indices(3, 5)  # [0, 0, 1, 1, 2]
    """
    return (np.arange(target) * source // target).astype("int32")


def repeat_factor(source: int, target: int) -> int | None:
    """The integer ``f`` for which nearest resizing ``source → target`` is "repeat every
    index ``f`` times, keep the first ``target``", or None when there is none.

    Example::

        repeat_factor(20, 40), repeat_factor(3, 5), repeat_factor(3, 7)  # 2, 2, None
    """
    factor = -(-target // source)
    if np.array_equal(nearest_indices(source, target), np.arange(target) // factor):
        return factor
    return None


def _repeat(x: Any, axis: int, factor: int, target: int) -> Any:
    """Repeat every index of ``axis`` (1: rows, 2: columns) ``factor`` times by a concatenation
    on the following axis and a reshape, then keep the first ``target`` (4-D tensors)."""
    if factor > 1:
        shape = [int(d) for d in x.shape[1:]]
        shape[axis - 1] *= factor
        x = ops.reshape(ops.concatenate([x] * factor, axis=axis + 1), (-1, *shape))
    if int(x.shape[axis]) == target:
        return x
    return x[:, :target] if axis == 1 else x[:, :, :target]


@keras.saving.register_keras_serializable(package="keras_efficient")
class NearestUpsample(keras.layers.Layer):
    """Resize a feature map to ``(height, width)`` by nearest neighbour with floor indexing.

    Unlike ``UpSampling2D`` this reaches any target size (a 3x3 P7 onto a 5x5 P6, say), and
    unlike ``Resizing("nearest")`` it uses no half-pixel centres, matching the reference
    EfficientDet. On the TensorFlow backend it is TensorFlow's ``ResizeNearestNeighbor`` with
    ``half_pixel_centers=False`` (the same floor indexing), which converts to TFLite's
    ``RESIZE_NEAREST_NEIGHBOR``: a 4-D op the EdgeTPU maps, where a gather or a 6-D
    reshape/broadcast would leave the rest of the graph on the CPU. Traced under
    ``upsample_lowering("repeat")`` it is a 4-D concatenation + reshape per axis instead (plus
    a slice when the target is not a multiple), which XNNPACK delegates. Other backends gather.

    Example::

        up = NearestUpsample(5, 5)(p7)  # a 3x3 P7 onto the 5x5 P6 of a 320 px input
    """

    def __init__(self, height: int, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height = int(height)
        self.width = int(width)

    def call(self, inputs: Any) -> Any:
        in_h, in_w = int(inputs.shape[1]), int(inputs.shape[2])
        if keras.backend.backend() != "tensorflow":
            x = ops.take(inputs, nearest_indices(in_h, self.height), axis=1)
            return ops.take(x, nearest_indices(in_w, self.width), axis=2)
        rows, columns = repeat_factor(in_h, self.height), repeat_factor(in_w, self.width)
        if _lowering[-1] == "repeat" and rows and columns:
            return _repeat(_repeat(inputs, 2, columns, self.width), 1, rows, self.height)
        import tensorflow as tf

        return tf.raw_ops.ResizeNearestNeighbor(
            images=inputs, size=(self.height, self.width), align_corners=False,
            half_pixel_centers=False)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width}
