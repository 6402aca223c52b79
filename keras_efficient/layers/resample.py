"""Nearest-neighbour upsampling to an exact target size (REFERENCE §2.3)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of each target position: floor(i × source / target), no half-pixel centres."""
    return (np.arange(target) * source // target).astype("int32")


@keras.saving.register_keras_serializable(package="keras_efficient")
class NearestUpsample(keras.layers.Layer):
    """Resize a feature map to ``(height, width)`` by nearest neighbour with floor indexing.

    Unlike ``UpSampling2D`` this reaches any target size (a 3x3 P7 onto a 5x5 P6, say), and
    unlike ``Resizing("nearest")`` it uses no half-pixel centres, matching the reference
    EfficientDet. An exact 2x ratio is lowered to a reshape/broadcast (no gather), which
    TFLite and the EdgeTPU run well.
    """

    def __init__(self, height: int, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height = int(height)
        self.width = int(width)

    def call(self, inputs: Any) -> Any:
        in_h, in_w = int(inputs.shape[1]), int(inputs.shape[2])
        channels = int(inputs.shape[3])
        if self.height == 2 * in_h and self.width == 2 * in_w:
            x = ops.reshape(inputs, (-1, in_h, 1, in_w, 1, channels))
            x = ops.broadcast_to(x, (ops.shape(inputs)[0], in_h, 2, in_w, 2, channels))
            return ops.reshape(x, (-1, self.height, self.width, channels))
        x = ops.take(inputs, nearest_indices(in_h, self.height), axis=1)
        return ops.take(x, nearest_indices(in_w, self.width), axis=2)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width}
