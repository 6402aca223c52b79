"""Keras' SGD and AdamW, updating each variable with TensorFlow's fused kernel.

Keras 3 writes an optimizer's update as element-wise ops: for Adam about twenty per variable
(step count, two powers, the bias correction, two moment updates, the update itself), rebuilt
for each of an EfficientDet's hundreds of variables. Tracing them was two thirds of the time a
tiny detector's first training step took, and every step runs them one by one. tf-keras called
``ResourceApplyKerasMomentum`` / ``ResourceApplyAdam``: one op per variable, the same formula.
These classes do the same where the result is Keras' own, and are Keras' optimizers otherwise:
same arguments, same variables, same ``get_config``.
"""

from __future__ import annotations

from typing import Any

import keras


def _fusable(gradient: Any, variable: Any) -> bool:
    """Whether TensorFlow's fused kernel can update ``variable`` (a dense float32 gradient on
    a TensorFlow resource variable)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return (isinstance(variable, tf.Variable) and not isinstance(gradient, tf.IndexedSlices)
            and variable.dtype == tf.float32)


def _handle(variable: Any) -> Any:
    """The resource handle of a Keras or TensorFlow variable."""
    return variable.value.handle if isinstance(variable, keras.Variable) else variable.handle


@keras.saving.register_keras_serializable(package="keras_efficient")
class SGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` whose momentum update is ``ResourceApplyKerasMomentum``
    (``accumulator = momentum * accumulator - lr * gradient``; ``variable += accumulator``,
    or its Nesterov form: Keras' formula).

    Example::

        optimizer = SGD(learning_rate=schedule, momentum=0.9, clipnorm=10.0)
    """

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.momentum == 0 or not _fusable(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        momentum = self.momentums[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=_handle(momentum),
            lr=tf.cast(learning_rate, variable.dtype), grad=tf.cast(gradient, variable.dtype),
            momentum=tf.cast(self.momentum, variable.dtype), use_locking=False,
            use_nesterov=bool(self.nesterov))
        return None


@keras.saving.register_keras_serializable(package="keras_efficient")
class AdamW(keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` whose Adam update is ``ResourceApplyAdam`` (Keras' formula:
    ``variable -= lr * sqrt(1 - β₂ᵗ) / (1 - β₁ᵗ) * m / (sqrt(v) + ε)``); the decoupled weight
    decay stays Keras' own.

    Example::

        optimizer = AdamW(learning_rate=schedule, weight_decay=4e-5)
    """

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.amsgrad or not _fusable(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step),
            lr=tf.cast(learning_rate, dtype), beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype), use_locking=False, use_nesterov=False)
        return None
