"""Batch normalization that runs TensorFlow's fused kernel at inference.

Keras 3 computes inference batch normalization as separate element-wise ops (``x * a + b``
after an ``rsqrt``), so TensorFlow's graph optimizer (Grappler's remapper) cannot fold it into
the convolution before it, and every BN costs two passes over its tensor (plus one for the
activation). tf-keras emitted ``FusedBatchNormV3``, which the remapper fuses with the preceding
``Conv2D`` and a ReLU/ReLU6 into one ``_FusedConv2D``. :class:`BatchNormalization` emits
that op for the cases where it computes the same function, and is Keras' layer otherwise:
same weights, same names, same ``get_config``.

The class keeps Keras' class name on purpose: Keras 3 files (``.keras``, ``.weights.h5``)
address a functional model's weights by the snake-cased class name of each layer
(``layers/batch_normalization_7/vars``), so any other name would make every file saved with
Keras' layer (all earlier releases) unloadable.

In training the fused kernel replaces Keras' moments, normalization and their gradients (some
forty graph ops per layer) by one op forward and one backward: a smaller training graph that
traces and optimizes faster and passes over each activation fewer times.
"""

from __future__ import annotations

from typing import Any

import keras

#: TensorFlow's fused kernel clamps a smaller epsilon to this; such layers keep Keras' path.
FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="keras_efficient")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that runs ``FusedBatchNormV3``.

    The fused op is used on the TensorFlow backend for float32 NHWC inputs (rank 4, channel
    axis last) without mask, renorm or cross-replica synchronization, with ``center`` and
    ``scale`` and an epsilon the kernel keeps: at inference (``training`` false, or the layer
    frozen) with the moving statistics, in training with the batch statistics, updating the
    moving statistics exactly as Keras does (with the biased batch variance). Every other call
    (float16, channels_first, other backends, ...) is Keras' own ``call``. Outputs, gradients
    and moving statistics equal Keras' to float rounding.

    Example::

        x = BatchNormalization(momentum=0.99, epsilon=1e-3, name="stem_bn")(x)
    """

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # the TensorFlow backend only (checked above)

        if not (training and self.trainable):
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, mean=self.moving_mean,
                variance=self.moving_variance, epsilon=self.epsilon, data_format="NHWC",
                is_training=False)
            return outputs
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, data_format="NHWC",
            is_training=True)
        # The kernel returns the unbiased variance; Keras averages the biased one.
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], variance.dtype)
        variance = variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + variance * (1.0 - self.momentum))
        return outputs

    def _fusable(self, inputs: Any, training: Any, mask: Any) -> bool:
        """Whether the fused kernel computes exactly what Keras' ``call`` would."""
        if training is not None and not isinstance(training, bool):
            return False  # a symbolic training flag: Keras decides at run time
        return (keras.backend.backend() == "tensorflow"
                and mask is None
                and not self.renorm
                and not self.synchronized
                and self.center and self.scale
                and self.epsilon >= FUSED_MIN_EPSILON
                and len(inputs.shape) == 4
                and self.axis in (3, -1)
                and keras.backend.standardize_dtype(inputs.dtype) == "float32"
                and self.compute_dtype == "float32")
