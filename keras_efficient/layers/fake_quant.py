"""Fake-quantized layers for quantization-aware training (QAT), in the form the TFLite converter
reads as quantization ranges.

Each layer computes in float what the full-integer TFLite model will compute, using TensorFlow's
``tf.quantization.fake_quant_with_min_max_vars`` (activations: per tensor, asymmetric, 8 bits)
and ``..._per_channel`` (weights: per output channel, symmetric, narrow range [−127, 127], as
the converter quantizes them). A SavedModel holding these ops converts to int8 without a
representative dataset: the converter takes each range from the fake-quant op that produces
the tensor.

* :class:`FakeQuant`: an activation range, the moving average (``momentum``) of the batch
  min/max seen in training (TFLite calibration records min/max the same way), or a fixed range;
* :class:`QuantConv`: a Conv2D, DepthwiseConv2D or SeparableConv2D with the batch normalization
  that follows it folded into its weights and bias the way the converter folds it
  (``w·γ/√(σ²+ε)``, ``(b − μ)·γ/√(σ²+ε) + β``; the BN statistics are frozen), then the activation
  (ReLU/ReLU6 fused, as the converter fuses them; sigmoid left to the LOGISTIC op's fixed output
  range; others quantized before and after);
* :class:`QuantFusion`: the BiFPN's weighted fusion as the integer graph computes it, one MUL by
  a constant and one ADD at a time, each output quantized;
* :class:`QuantPixelAffine`: the in-graph pixel normalization as one per-channel affine map
  with ranges fixed by the uint8 input (bytes 0..255 are pixels 0..255).

TensorFlow backend only (the fake-quant ops are TensorFlow's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

NUM_BITS = 8
FUSED_ACTIVATIONS = ("relu", "relu6")
"""Activations the converter fuses into the convolution: quantized once, after them."""
FIXED_RANGE_ACTIVATIONS = ("sigmoid",)
"""Activations whose int8 kernel has a fixed output range (LOGISTIC: scale 1/256)."""
KINDS = ("conv", "depthwise", "separable")
PIXEL_RANGE = (0.0, 255.0)


def _tf() -> Any:
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("Quantization-aware layers need the TensorFlow backend (they use "
                           "TensorFlow's fake-quant ops, which the TFLite converter reads); "
                           f"the Keras backend is {keras.backend.backend()!r}.")
    import tensorflow as tf

    return tf


def fake_quant_per_channel(weights: Any) -> Any:
    """Symmetric per-channel int8 fake quantization over the last axis (narrow range).

    Example::

        kernel = fake_quant_per_channel(kernel)  # [kh, kw, in, out]: one scale per out channel
    """
    tf = _tf()
    axes = list(range(len(weights.shape) - 1))
    bound = tf.maximum(tf.reduce_max(tf.abs(weights), axis=axes), 1e-8)
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        weights, -bound, bound, num_bits=NUM_BITS, narrow_range=True)


@keras.saving.register_keras_serializable(package="keras_efficient")
class FakeQuant(keras.layers.Layer):
    """Per-tensor asymmetric 8-bit fake quantization of an activation.

    The range is the moving average (``momentum``) of each training batch's min and max (the
    first batch sets it), widened to include 0; ``fixed_range`` pins it instead. At inference
    the stored range is used as it is.

    Example::

        x = FakeQuant(name="block1a_add_quant")(x)
        image = FakeQuant(fixed_range=(0.0, 255.0), name="image_quant")(image)
    """

    def __init__(self, momentum: float = 0.99, fixed_range: Sequence[float] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); received {momentum}.")
        if fixed_range is not None and (len(fixed_range) != 2
                                        or not fixed_range[0] < fixed_range[1]):
            raise ValueError(f"fixed_range must be (min, max) with min < max; received "
                             f"{fixed_range}.")
        self.momentum = float(momentum)
        self.fixed_range = None if fixed_range is None else tuple(float(v) for v in fixed_range)

    def build(self, input_shape: Any) -> None:
        if self.fixed_range is None:
            self.range_min = self.add_weight(name="range_min", shape=(), initializer="zeros",
                                             trainable=False)
            self.range_max = self.add_weight(name="range_max", shape=(), initializer="zeros",
                                             trainable=False)
            self.initialized = self.add_weight(name="initialized", shape=(),
                                               initializer="zeros", trainable=False)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        tf = _tf()
        if self.fixed_range is not None:
            low, high = (tf.constant(v, inputs.dtype) for v in self.fixed_range)
        else:
            if training:
                self._track(inputs)
            low = tf.minimum(tf.cast(self.range_min, inputs.dtype), 0.0)
            high = tf.maximum(tf.cast(self.range_max, inputs.dtype), low + 1e-6)
        return tf.quantization.fake_quant_with_min_max_vars(
            inputs, tf.stop_gradient(low), tf.stop_gradient(high), num_bits=NUM_BITS)

    def _track(self, inputs: Any) -> None:
        tf = _tf()
        batch_min = tf.cast(tf.reduce_min(inputs), "float32")
        batch_max = tf.cast(tf.reduce_max(inputs), "float32")
        first = tf.equal(self.initialized, 0.0)
        keep = tf.where(first, 0.0, self.momentum)
        self.range_min.assign(keep * self.range_min + (1.0 - keep) * batch_min)
        self.range_max.assign(keep * self.range_max + (1.0 - keep) * batch_max)
        self.initialized.assign(1.0)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum,
                "fixed_range": None if self.fixed_range is None else list(self.fixed_range)}


@keras.saving.register_keras_serializable(package="keras_efficient")
class QuantConv(keras.layers.Layer):
    """A convolution with its batch normalization folded in, fake-quantized as TFLite runs it.

    ``kind``: ``conv`` (Conv2D), ``depthwise`` (DepthwiseConv2D, multiplier 1) or ``separable``
    (depthwise then pointwise; the depthwise output is quantized on its own, the BN folds into
    the pointwise). ``batch_norm``: a BN follows (γ, β trainable; μ, σ² frozen). ``activation``:
    ReLU/ReLU6 are applied before the one output quantization (fused, as the converter does),
    sigmoid after it (LOGISTIC's fixed range), anything else between two quantizations.
    ``float_layers``: the names of the float layers it replaces (conv, BN), for weight transfer.
    Channels last.

    Example::

        layer = QuantConv("conv", 32, 3, strides=2, padding="valid", batch_norm=True,
                          float_layers=("stem_conv", "stem_bn"), name="stem_conv")
        layer.set_float_weights(model.get_layer("stem_conv"), model.get_layer("stem_bn"))
    """

    def __init__(self, kind: str, filters: int | None, kernel_size: int, *, strides: int = 1,
                 padding: str = "same", use_bias: bool = False, batch_norm: bool = False,
                 epsilon: float = 1e-3, activation: str | None = None,
                 momentum: float = 0.99, float_layers: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; received {kind!r}.")
        if kind != "depthwise" and not filters:
            raise ValueError(f"A {kind} QuantConv needs filters.")
        self.kind, self.filters, self.kernel_size = kind, filters, int(kernel_size)
        self.strides, self.padding = int(strides), padding.lower()
        self.use_bias, self.batch_norm, self.epsilon = use_bias, batch_norm, float(epsilon)
        self.activation = None if activation in (None, "linear") else str(activation)
        self.momentum = float(momentum)
        self.float_layers = tuple(float_layers)
        self.depthwise_quant = (FakeQuant(momentum, name="depthwise_quant")
                                if kind == "separable" else None)
        self.output_quant = FakeQuant(momentum, name="output_quant")
        self.activation_quant = (FakeQuant(momentum, name="activation_quant")
                                 if self.activation not in (None, *FUSED_ACTIVATIONS,
                                                            *FIXED_RANGE_ACTIVATIONS) else None)

    def build(self, input_shape: Any) -> None:
        channels = int(input_shape[-1])
        k = self.kernel_size
        out = channels if self.kind == "depthwise" else int(self.filters or 0)
        if self.kind == "conv":
            self.kernel = self.add_weight(name="kernel", shape=(k, k, channels, out))
        else:
            self.depthwise_kernel = self.add_weight(name="depthwise_kernel",
                                                    shape=(k, k, channels, 1))
        if self.kind == "separable":
            self.pointwise_kernel = self.add_weight(name="pointwise_kernel",
                                                    shape=(1, 1, channels, out))
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(out,), initializer="zeros")
        if self.batch_norm:
            self.gamma = self.add_weight(name="gamma", shape=(out,), initializer="ones")
            self.beta = self.add_weight(name="beta", shape=(out,), initializer="zeros")
            self.moving_mean = self.add_weight(name="moving_mean", shape=(out,),
                                               initializer="zeros", trainable=False)
            self.moving_variance = self.add_weight(name="moving_variance", shape=(out,),
                                                   initializer="ones", trainable=False)
        spatial = (1, *([None] * (len(input_shape) - 2)), out)
        if self.depthwise_quant is not None:
            self.depthwise_quant.build((*input_shape[:-1], channels))
        self.output_quant.build(spatial)
        if self.activation_quant is not None:
            self.activation_quant.build(spatial)

    def _folded(self) -> tuple[Any, Any]:
        """(scale per output channel or None, bias or None): the BN folded as the converter
        folds it."""
        tf = _tf()
        bias = self.bias if self.use_bias else None
        if not self.batch_norm:
            return None, bias
        scale = self.gamma * tf.math.rsqrt(self.moving_variance + self.epsilon)
        shift = self.beta - self.moving_mean * scale
        return scale, shift if bias is None else bias * scale + shift

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        tf = _tf()
        scale, bias = self._folded()
        strides = (1, self.strides, self.strides, 1)
        padding = self.padding.upper()
        if self.kind == "conv":
            kernel = self.kernel if scale is None else self.kernel * scale
            x = tf.nn.conv2d(inputs, fake_quant_per_channel(kernel), strides, padding)
        else:
            depthwise = self.depthwise_kernel
            if self.kind == "depthwise" and scale is not None:
                depthwise = depthwise * tf.reshape(scale, (1, 1, -1, 1))
            shape = tf.shape(depthwise)
            depthwise = tf.reshape(fake_quant_per_channel(depthwise[..., 0]), shape)
            x = tf.nn.depthwise_conv2d(inputs, depthwise, strides, padding)
            if self.depthwise_quant is not None:  # separable
                x = self.depthwise_quant(x, training=training)
                pointwise = (self.pointwise_kernel if scale is None
                             else self.pointwise_kernel * scale)
                x = tf.nn.conv2d(x, fake_quant_per_channel(pointwise), 1, "VALID")
        if bias is not None:
            x = x + bias
        if self.activation is None:
            return self.output_quant(x, training=training)
        activation = keras.activations.get(self.activation)
        if self.activation in FUSED_ACTIVATIONS:
            return self.output_quant(activation(x), training=training)
        x = activation(self.output_quant(x, training=training))
        if self.activation_quant is None:
            return x
        return self.activation_quant(x, training=training)

    def set_float_weights(self, conv: keras.layers.Layer,
                          bn: keras.layers.Layer | None = None) -> None:
        """Copy the weights of the float ``conv`` (and the ``bn`` after it).

        Example::

            layer.set_float_weights(model.get_layer("stem_conv"), model.get_layer("stem_bn"))
        """
        weights = {w.path.rsplit("/", 1)[-1]: np.asarray(w.numpy()) for w in conv.weights}
        if self.kind == "conv":
            self.kernel.assign(weights["kernel"])
        else:
            self.depthwise_kernel.assign(weights["depthwise_kernel" if "depthwise_kernel" in
                                                 weights else "kernel"])
        if self.kind == "separable":
            self.pointwise_kernel.assign(weights["pointwise_kernel"])
        if self.use_bias:
            self.bias.assign(weights["bias"])
        if self.batch_norm:
            if bn is None:
                raise ValueError(f"{self.name} folds a batch normalization; pass its layer.")
            for variable in (self.gamma, self.beta, self.moving_mean, self.moving_variance):
                source = getattr(bn, variable.path.rsplit("/", 1)[-1], None)
                if source is None:  # BN without scale/center: gamma 1, beta 0
                    continue
                variable.assign(np.asarray(source.numpy()))

    def compute_output_shape(self, input_shape: Any) -> Any:
        out = int(input_shape[-1]) if self.kind == "depthwise" else self.filters

        def size(dim: int | None) -> int | None:
            if dim is None:
                return None
            if self.padding == "same":
                return -(-dim // self.strides)
            return (dim - self.kernel_size) // self.strides + 1

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), out)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind, "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "use_bias": self.use_bias,
                "batch_norm": self.batch_norm, "epsilon": self.epsilon,
                "activation": self.activation, "momentum": self.momentum,
                "float_layers": list(self.float_layers)}


@keras.saving.register_keras_serializable(package="keras_efficient")
class QuantFusion(keras.layers.Layer):
    """:class:`~keras_efficient.layers.fusion.WeightedFusion` as the integer graph computes it:
    each input times its normalised weight (one MUL by a constant, quantized), then the
    running sum (one ADD at a time, quantized). Same weight (``fusion_weights``) and modes.

    Example::

        fused = QuantFusion("fast", name="fpn_cell0_node0_fusion")([p6, p7_upsampled])
    """

    def __init__(self, mode: str = "fast", epsilon: float = 1e-4, momentum: float = 0.99,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("fast", "softmax", "sum"):
            raise ValueError(f"mode must be 'fast', 'softmax' or 'sum'; received {mode!r}.")
        self.mode, self.epsilon, self.momentum = mode, float(epsilon), float(momentum)
        self.term_quants: list[FakeQuant] = []
        self.sum_quants: list[FakeQuant] = []

    def build(self, input_shape: Any) -> None:
        if not isinstance(input_shape, list | tuple) or len(input_shape) < 2:
            raise ValueError("QuantFusion needs a list of at least two inputs.")
        count = len(input_shape)
        if self.mode != "sum":
            self.fusion_weights = self.add_weight(name="fusion_weights", shape=(count,),
                                                  initializer="ones", trainable=True)
            self.term_quants = [FakeQuant(self.momentum, name=f"term{i}_quant")
                                for i in range(count)]
        self.sum_quants = [FakeQuant(self.momentum, name=f"sum{i}_quant")
                           for i in range(1, count)]
        for quant in (*self.term_quants, *self.sum_quants):
            quant.build(input_shape[0])

    def call(self, inputs: list[Any], training: bool | None = None) -> Any:
        tf = _tf()
        terms = list(inputs)
        if self.mode != "sum":
            weights = tf.cast(self.fusion_weights, inputs[0].dtype)
            if self.mode == "softmax":
                weights = tf.nn.softmax(weights)
            else:
                weights = tf.nn.relu(weights)
                weights = weights / (tf.reduce_sum(weights) + self.epsilon)
            terms = [quant(tensor * weights[i], training=training)
                     for i, (tensor, quant) in enumerate(zip(inputs, self.term_quants,
                                                             strict=True))]
        total = terms[0]
        for tensor, quant in zip(terms[1:], self.sum_quants, strict=True):
            total = quant(total + tensor, training=training)
        return total

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "epsilon": self.epsilon,
                "momentum": self.momentum}


def affine_ranges(scale: Sequence[float], offset: Sequence[float]
                  ) -> tuple[tuple[float, float], tuple[float, float]]:
    """The ranges of ``x·scale`` and ``x·scale + offset`` for pixels x in [0, 255], over all
    channels (each including 0, as a quantized range must).

    Example::

        affine_ranges([1 / 128] * 3, [-127 / 128] * 3)  # ((0.0, 1.99...), (-0.99..., 1.0))
    """
    s, o = np.asarray(scale, "float64"), np.asarray(offset, "float64")
    low, high = PIXEL_RANGE
    products = np.stack([low * s, high * s])
    sums = products + o
    return ((min(0.0, float(products.min())), max(0.0, float(products.max()))),
            (min(0.0, float(sums.min())), max(0.0, float(sums.max()))))


@keras.saving.register_keras_serializable(package="keras_efficient")
class QuantPixelAffine(keras.layers.Layer):
    """Pixels in [0, 255] → ``x·scale + offset`` per channel, quantized with the ranges those
    pixels give (:func:`affine_ranges`), after an input quantized as bytes (scale 1,
    zero point 0 for a uint8 input).

    Example::

        x = QuantPixelAffine([1 / 128] * 3, [-127 / 128] * 3, name="rescaling")(image)
    """

    def __init__(self, scale: Sequence[float], offset: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(scale) != len(offset) or not len(scale):
            raise ValueError(f"scale and offset need one value per channel; received {scale}, "
                             f"{offset}.")
        self.scale = [float(v) for v in scale]
        self.offset = [float(v) for v in offset]
        product, total = affine_ranges(self.scale, self.offset)
        self.input_quant = FakeQuant(fixed_range=PIXEL_RANGE, name="input_quant")
        self.product_quant = FakeQuant(fixed_range=product, name="product_quant")
        self.sum_quant = FakeQuant(fixed_range=total, name="sum_quant")

    def call(self, inputs: Any) -> Any:
        tf = _tf()
        x = self.input_quant(inputs)
        x = self.product_quant(x * tf.constant(self.scale, inputs.dtype))
        return self.sum_quant(x + tf.constant(self.offset, inputs.dtype))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}
