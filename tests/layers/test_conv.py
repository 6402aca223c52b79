"""Stride-2 convolutions pad as TF "SAME": inside the convolution on the TensorFlow backend,
with an explicit ``ZeroPadding2D`` of ``same_padding`` elsewhere, and both compute the same."""

import keras
import numpy as np
import pytest

from keras_efficient.layers.conv import pad_for_stride, same_padding


@pytest.mark.parametrize(("size", "kernel"), [(16, 3), (15, 3), (16, 5), (15, 5)])
def test_the_convolutions_own_same_padding_equals_the_explicit_pad(size, kernel):
    inputs = keras.Input((size, size, 4))
    x, padding = pad_for_stride(inputs, kernel, 2, "channels_last", "conv_pad")
    conv = keras.layers.Conv2D(6, kernel, strides=2, padding=padding, name="conv")
    model = keras.Model(inputs, conv(x))
    assert padding == "same" and x is inputs  # this suite runs on TensorFlow
    assert not any(isinstance(layer, keras.layers.ZeroPadding2D) for layer in model.layers)
    explicit = keras.Sequential([
        keras.Input((size, size, 4)),
        keras.layers.ZeroPadding2D(same_padding((size, size), kernel)),
        keras.layers.Conv2D(6, kernel, strides=2, padding="valid")])
    explicit.layers[-1].set_weights(conv.get_weights())
    image = np.random.default_rng(size + kernel).normal(size=(1, size, size, 4)).astype("float32")
    np.testing.assert_allclose(model(image), explicit(image), rtol=1e-5, atol=1e-5)


def test_stride_one_needs_no_pad():
    inputs = keras.Input((8, 8, 3))
    assert pad_for_stride(inputs, 3, 1, "channels_last", "unused") == (inputs, "same")
