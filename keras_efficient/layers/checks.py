"""Run-time input checks that keep a clear error message in the graph (no Lambda layers)."""

from __future__ import annotations

from typing import Any

import keras

from keras_efficient.layers.conv import resolve_data_format, spatial_size


def _too_small_message(min_size: int, height: Any, width: Any) -> str:
    return (f"Input size must be at least {min_size}x{min_size}; received an image of "
            f"{height}x{width} (height x width).")


@keras.saving.register_keras_serializable(package="keras_efficient")
class InputSizeCheck(keras.layers.Layer):
    """The identity that refuses images smaller than ``min_size`` in height or width.

    For models whose input size is dynamic (``(None, None, 3)``): a static size that is too small
    raises ``ValueError`` when the model is called or traced (eager calls, ``predict``); a size
    known only at run time (a graph traced for any size) fails with
    ``tf.errors.InvalidArgumentError`` carrying the same message on the TensorFlow backend.

    Example::

        x = InputSizeCheck(32, name="input_size_check")(keras.Input((None, None, 3)))
    """

    def __init__(self, min_size: int, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_size = int(min_size)
        self.data_format = resolve_data_format(data_format)
        self.supports_masking = True

    def call(self, inputs: Any) -> Any:
        height, width = spatial_size(inputs, self.data_format)
        known = [size for size in (height, width) if size is not None]
        if known and min(known) < self.min_size:
            raise ValueError(_too_small_message(self.min_size, height, width))
        if len(known) == 2 or keras.backend.backend() != "tensorflow":
            return inputs  # other backends: the static check above only
        import tensorflow as tf

        shape = tf.shape(inputs)
        axes = (2, 3) if self.data_format == "channels_first" else (1, 2)
        dims = tf.stack([shape[axes[0]], shape[axes[1]]])
        message = (f"Input size must be at least {self.min_size}x{self.min_size}; received an "
                   "image whose (height, width) is")
        check = tf.debugging.Assert(tf.reduce_min(dims) >= self.min_size, [message, dims],
                                    summarize=2)
        with tf.control_dependencies([check]):
            return tf.identity(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(min_size=self.min_size, data_format=self.data_format)
        return config
