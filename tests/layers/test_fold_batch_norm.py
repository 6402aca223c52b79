"""Batch normalization folded into the convolution before it: same outputs, fewer layers."""

from __future__ import annotations

import keras
import numpy as np

from keras_efficient.layers.fold_batch_norm import fold_batch_norms, folded_weights
from tests.harness import assert_same_outputs, randomize


def _toy() -> keras.Model:
    """Every case: plain / strided depthwise (multiplier 2) / shared separable convolutions
    followed by their BN, a BN after an Add, a convolution read by its BN and another layer,
    a convolution with an activation before its BN."""
    bn = keras.layers.BatchNormalization
    image = keras.Input((12, 12, 4))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False, name="stem")(image)
    x = keras.layers.Activation("relu6", name="stem_act")(bn(name="stem_bn")(x))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = bn(epsilon=1e-3, name="dw_bn")(x)
    shared = keras.layers.SeparableConv2D(5, 3, padding="same", name="sep")
    a = bn(name="sep_bn_a")(shared(x))
    b = bn(name="sep_bn_b")(shared(keras.layers.Activation("swish", name="swish")(x)))
    y = bn(name="after_add")(keras.layers.Add(name="add")([a, b]))
    twice = keras.layers.Conv2D(5, 1, name="twice")(y)
    z = keras.layers.Add(name="add2")([bn(name="twice_bn")(twice), twice])
    relu_conv = keras.layers.Conv2D(3, 1, activation="relu", name="relu_conv")(z)
    out = bn(name="relu_conv_bn")(relu_conv)
    return keras.Model(image, [out, a], name="toy")


def test_folding_keeps_the_outputs_and_removes_only_the_foldable_batch_norms() -> None:
    model = _toy()
    randomize(model, seed=3)
    folded = fold_batch_norms(model)
    images = np.random.default_rng(0).normal(0, 1, (2, 12, 12, 4)).astype("float32")
    assert_same_outputs(model, folded, images, atol=2e-5)
    names = {layer.name for layer in folded.layers}
    left = {layer.name for layer in folded.layers
            if isinstance(layer, keras.layers.BatchNormalization)}
    assert left == {"after_add", "twice_bn", "relu_conv_bn"}
    assert {"stem", "dw", "sep_sep_bn_a", "sep_sep_bn_b"} <= names and "sep" not in names
    assert folded.get_layer("stem").use_bias and folded.get_layer("stem") is not model.get_layer(
        "stem")
    for name in ("relu_conv", "after_add"):  # the rest is copied, weights and all
        assert folded.get_layer(name) is not model.get_layer(name)
        for got, want in zip(folded.get_layer(name).get_weights(),
                             model.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)


def test_folded_weights_scale_the_output_channels() -> None:
    conv = keras.layers.DepthwiseConv2D(1, depth_multiplier=2, use_bias=False)
    conv.build((None, 1, 1, 2))
    conv.set_weights([np.ones((1, 1, 2, 2), "float32")])
    bn = keras.layers.BatchNormalization(epsilon=0.0)
    bn.build((None, 1, 1, 4))
    bn.set_weights([np.array([1, 2, 3, 4], "float32"), np.array([0, 0, 0, 1], "float32"),
                    np.array([1, 0, 0, 0], "float32"), np.array([1, 1, 4, 4], "float32")])
    kernel, bias = folded_weights(conv, bn)
    np.testing.assert_allclose(kernel.reshape(-1), [1, 2, 1.5, 2])  # gamma / sqrt(variance)
    np.testing.assert_allclose(bias, [-1, 0, 0, 1])  # beta - mean * scale


def test_a_renormalizing_batch_norm_is_not_folded() -> None:
    image = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(2, 1, name="conv")(image)
    model = keras.Model(image, keras.layers.BatchNormalization(renorm=True, name="bn")(x))
    folded = fold_batch_norms(model)
    assert [type(layer).__name__ for layer in folded.layers] == [
        "InputLayer", "Conv2D", "BatchNormalization"]
