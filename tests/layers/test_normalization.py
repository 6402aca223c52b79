"""The fused batch normalization: TensorFlow's fused kernel, the same numbers as Keras' layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.layers.normalization import BatchNormalization as FusedBatchNormalization

RNG = np.random.default_rng(3)


def _pair(**kwargs):
    """A fused layer and Keras' own, built with the same random weights and statistics."""
    fused = FusedBatchNormalization(momentum=0.9, epsilon=1e-3, **kwargs)
    plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, **kwargs)
    for layer in (fused, plain):
        layer.build((2, 5, 6, 4) if kwargs.get("axis", -1) == -1 else (2, 4, 5, 6))
    weights = [RNG.uniform(0.5, 1.5, 4).astype("float32"), RNG.normal(size=4).astype("float32"),
               RNG.normal(size=4).astype("float32"), RNG.uniform(0.5, 2, 4).astype("float32")]
    fused.set_weights(weights)
    plain.set_weights(weights)
    return fused, plain


def _op_types(layer, x, training):
    graph = tf.function(lambda t: layer(t, training=training)).get_concrete_function(
        tf.TensorSpec(x.shape, x.dtype)).graph
    return {op.type for op in graph.get_operations()}


def test_inference_runs_the_fused_kernel_and_matches_keras():
    fused, plain = _pair()
    x = RNG.normal(2.0, 3.0, (2, 5, 6, 4)).astype("float32")
    assert "FusedBatchNormV3" in _op_types(fused, x, training=False)
    assert "FusedBatchNormV3" not in _op_types(plain, x, training=False)
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False),
                               rtol=1e-5, atol=1e-5)


def test_training_matches_keras_outputs_gradients_and_moving_statistics():
    fused, plain = _pair()
    x = tf.constant(RNG.normal(2.0, 3.0, (2, 5, 6, 4)).astype("float32"))
    assert "FusedBatchNormV3" in _op_types(fused, x, training=True)
    upstream = tf.constant(RNG.normal(size=(2, 5, 6, 4)).astype("float32"))
    results = []
    for layer in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance])
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["channels_first", "mixed_float16"])
def test_other_layouts_and_dtypes_take_keras_path(case):
    if case == "channels_first":
        fused, plain = _pair(axis=1)
        x = RNG.normal(size=(2, 4, 5, 6)).astype("float32")
    else:
        fused, plain = _pair(dtype="mixed_float16")
        x = RNG.normal(size=(2, 5, 6, 4)).astype("float32")
    assert "FusedBatchNormV3" not in _op_types(fused, x, training=False)
    np.testing.assert_array_equal(fused(x, training=False), plain(x, training=False))


def test_frozen_layer_normalizes_with_its_moving_statistics_in_training():
    fused, plain = _pair()
    fused.trainable = plain.trainable = False
    x = RNG.normal(size=(2, 5, 6, 4)).astype("float32")
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(fused.moving_mean, plain.moving_mean)
