"""The letterbox rule in TF ops equals data.transforms' (issue 14: one rule)."""

import itertools

import numpy as np
import tensorflow as tf

from keras_efficient.data.pipeline import (
    letterbox_geometry_tf,
    pad_bottom_right_tf,
    resize_crop_pad,
    scaled_size_tf,
)
from keras_efficient.data.transforms import PAD_VALUE, letterbox_geometry, resize_and_pad

SIZES = [1, 2, 3, 5, 7, 31, 64, 99, 128, 255, 480, 641]
TARGETS = [(64, 64), (320, 320), (64, 96), (97, 33)]


def test_tf_geometry_equals_numpy_geometry():
    shapes = tf.constant(list(itertools.product(SIZES, SIZES)), tf.int32)
    for target in TARGETS:
        graph = tf.function(lambda shape, t=target: letterbox_geometry_tf(shape, t))
        for shape in shapes.numpy():
            scale, new_size = graph(tf.constant(shape))
            want = letterbox_geometry(int(shape[0]), int(shape[1]), target)
            assert (float(scale.numpy()), *new_size.numpy().tolist()) == want, (shape, target)


def test_scaled_size_truncates_in_float32_like_automl():
    # automl: tf.cast(float32 size * float32 scale, tf.int32), i.e. int() truncation.
    for scale in (0.5, 1.5, 0.25, 2 / 3):
        s32 = np.float32(scale)
        for height, width in itertools.product(SIZES, SIZES):
            got = scaled_size_tf(tf.constant([height, width]), scale).numpy().tolist()
            assert got == [max(1, int(np.float32(height) * s32)),
                           max(1, int(np.float32(width) * s32))]


def test_pad_bottom_right_uses_the_pad_value():
    image = tf.ones([2, 3, 3, 1])
    padded = pad_bottom_right_tf(image, (4, 5)).numpy()
    assert padded.shape == (2, 4, 5, 1)
    assert np.all(padded[:, :3, :3] == 1) and np.all(padded[:, 3:] == PAD_VALUE)
    assert np.all(padded[:, :, 3:] == PAD_VALUE)


def test_evaluation_resize_equals_resize_and_pad():
    image = np.random.default_rng(3).uniform(0, 255, (50, 90, 3)).astype("float32")
    scale, new_h, new_w = letterbox_geometry(50, 90, (64, 64))
    got, _ = resize_crop_pad(tf.constant(image), tf.zeros([0, 4]), (64, 64),
                             tf.constant(scale, tf.float64), tf.zeros([2], tf.int32))
    want, want_scale = resize_and_pad(image, (64, 64))
    assert want_scale == scale and (new_h, new_w) == (35, 64)  # 50 × 0.7111 = 35.56 → 35
    np.testing.assert_array_equal(got.numpy(), want)  # the same op: the same pixels
