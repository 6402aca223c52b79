"""Nearest-neighbour upsampling to an exact target size (REFERENCE §2.3)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of each target position: floor(i × source / target), no half-pixel centres.

    Example::

        nearest_indices(3, 5)  # [0, 0, 1, 1, 2]
    """
    return (np.arange(target) * source // target).astype("int32")


@keras.saving.register_keras_serializable(package="keras_efficient")
class NearestUpsample(keras.layers.Layer):
    """Resize a feature map to ``(height, width)`` by nearest neighbour with floor indexing.

    Unlike ``UpSampling2D`` this reaches any target size (a 3x3 P7 onto a 5x5 P6, say), and
    unlike ``Resizing("nearest")`` it uses no half-pixel centres, matching the reference
    EfficientDet. On the TensorFlow backend it is TensorFlow's ``ResizeNearestNeighbor`` with
    ``half_pixel_centers=False`` (the same floor indexing), which converts to TFLite's
    ``RESIZE_NEAREST_NEIGHBOR``: a 4-D op the EdgeTPU maps, where a gather or a 6-D
    reshape/broadcast would leave the rest of the graph on the CPU. Other backends gather.

    Example::

        up = NearestUpsample(5, 5)(p7)  # a 3x3 P7 onto the 5x5 P6 of a 320 px input
    """

    def __init__(self, height: int, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height = int(height)
        self.width = int(width)

    def call(self, inputs: Any) -> Any:
        in_h, in_w = int(inputs.shape[1]), int(inputs.shape[2])
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            return tf.raw_ops.ResizeNearestNeighbor(
                images=inputs, size=(self.height, self.width), align_corners=False,
                half_pixel_centers=False)
        x = ops.take(inputs, nearest_indices(in_h, self.height), axis=1)
        return ops.take(x, nearest_indices(in_w, self.width), axis=2)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width}
