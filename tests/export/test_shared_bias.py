"""int16x8 convolutions that share one Keras layer's bias compute what Keras computes.

The converter (TF 2.21) quantizes a bias shared by several convolutions once, for one input's
scale; in int16x8 the others then read it with their own scale (here: the bias -4.6 becomes
about -0.05 on the small-range input). ``export.tflite.convert`` repairs it
(:mod:`keras_efficient.export.shared_bias`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.export.runtime import load_interpreter, run
from keras_efficient.export.shared_bias import unshare_biases
from keras_efficient.export.tflite import convert

RNG = np.random.default_rng(0)
IMAGES = [RNG.uniform(0, 255, (1, 8, 8, 3)).astype("float32") for _ in range(16)]


@pytest.fixture(scope="module")
def shared():
    """One convolution (bias -4.6, as the class predictor's prior) on two inputs whose ranges
    differ 100-fold, as EfficientDet's predictors run on P3 and P7."""
    inputs = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.Rescaling(1 / 128, offset=-1)(inputs)
    big = keras.layers.DepthwiseConv2D(1, depthwise_initializer="ones")(x)
    small = keras.layers.DepthwiseConv2D(
        1, depthwise_initializer=keras.initializers.Constant(0.01))(x)
    conv = keras.layers.Conv2D(4, 1, name="predict",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=1),
                               bias_initializer=keras.initializers.Constant(-4.6))
    outputs = keras.layers.Concatenate()([conv(big), conv(small)])
    return keras.Model(inputs, outputs, name="shared")


def _errors(model, payload, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(payload)
    interpreter = load_interpreter(path)
    diff = np.stack([np.abs(run(interpreter, image)[0] - model(image).numpy())
                     for image in IMAGES[:4]])
    return diff[..., :4].max(), diff[..., 4:].max()  # large-range, small-range input


def test_int16x8_export_repairs_the_shared_bias(shared, tmp_path):
    converter = tf.lite.TFLiteConverter.from_keras_model(shared)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image] for image in IMAGES)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    raw = bytes(converter.convert())
    assert _errors(shared, raw, tmp_path)[1] > 4.0  # the converter's file: the bias is lost
    repaired, count = unshare_biases(raw)
    assert count == 1
    assert max(_errors(shared, repaired, tmp_path)) < 0.05  # int8 weights: ~1e-2

    ours = convert(shared, "int16x8", representative=IMAGES)
    assert max(_errors(shared, ours, tmp_path)) < 0.05
    assert unshare_biases(ours)[1] == 0  # nothing left to repair
    int8 = convert(shared, "int8", representative=IMAGES)
    assert unshare_biases(int8) == (int8, 0)  # int8 biases were right already
