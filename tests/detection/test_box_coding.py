"""Box coding, IoU and clipping, on numpy arrays and TensorFlow tensors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.detection.box_coding import clip_boxes, decode_boxes, encode_boxes, iou_matrix


def random_boxes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    center = rng.uniform(-50, 600, (*shape, 2))
    size = rng.uniform(1, 400, (*shape, 2))
    return np.concatenate([center - size / 2, center + size / 2], axis=-1).astype(np.float32)


def test_round_trip_numpy():
    rng = np.random.default_rng(0)
    boxes, anchors = random_boxes(rng, (500,)), random_boxes(rng, (500,))
    codes = encode_boxes(boxes, anchors)
    assert isinstance(codes, np.ndarray) and codes.dtype == np.float32
    np.testing.assert_allclose(decode_boxes(codes, anchors), boxes, atol=1e-3)


def test_round_trip_tensors_in_graph_with_batch_broadcast():
    rng = np.random.default_rng(1)
    boxes, anchors = random_boxes(rng, (3, 200)), random_boxes(rng, (200,))

    @tf.function
    def round_trip(b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        codes = encode_boxes(b, anchors)
        return codes, decode_boxes(codes, anchors)

    codes, decoded = round_trip(tf.constant(boxes))
    assert isinstance(codes, tf.Tensor) and codes.shape == (3, 200, 4)
    np.testing.assert_allclose(decoded.numpy(), boxes, atol=1e-3)
    np.testing.assert_allclose(codes.numpy(), encode_boxes(boxes, anchors), rtol=1e-5, atol=1e-5)


def test_hand_computed_codes():
    anchor = np.array([[0, 0, 10, 20]], np.float32)  # yc 5, xc 10, h 10, w 20
    box = np.array([[5, -10, 25, 30]], np.float32)  # yc 15, xc 10, h 20, w 40
    np.testing.assert_allclose(encode_boxes(box, anchor), [[1.0, 0.0, np.log(2), np.log(2)]],
                               rtol=1e-6)
    np.testing.assert_allclose(encode_boxes(anchor, anchor), np.zeros((1, 4)), atol=1e-7)
    degenerate = encode_boxes(np.zeros((1, 4), np.float32), anchor)
    assert np.all(np.isfinite(degenerate))


@pytest.mark.parametrize(("a", "b", "expected"), [
    ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),
    ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7),
    ([0, 0, 4, 4], [1, 1, 3, 3], 0.25),
    ([0, 0, 2, 2], [2, 0, 4, 2], 0.0),  # touching edges
    ([0, 0, 2, 2], [5, 5, 6, 6], 0.0),
    ([0, 0, 10, 10], [0, 5, 10, 15], 1 / 3),
    ([1, 1, 1, 1], [1, 1, 1, 1], 0.0),  # zero area: 0, not NaN
])
def test_iou_hand_cases(a, b, expected):
    a = np.array([a], np.float32)
    b = np.array([b], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[expected]], rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(iou_matrix(tf.constant(a), b)),
                               [[expected]], rtol=1e-6)


def test_iou_matrix_shape_and_symmetry():
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, (7,)), random_boxes(rng, (5,))
    iou = iou_matrix(a, b)
    assert iou.shape == (7, 5)
    np.testing.assert_allclose(iou, iou_matrix(b, a).T, rtol=1e-6)
    assert np.all((iou >= 0) & (iou <= 1))
    np.testing.assert_allclose(np.diag(iou_matrix(a, a)), np.ones(7), rtol=1e-6)
    batched = iou_matrix(np.stack([a, a]), b)
    assert batched.shape == (2, 7, 5)


def test_clip_boxes():
    boxes = np.array([[-5, -5, 50, 120], [10, 20, 30, 40]], np.float32)
    expected = [[0, 0, 50, 100], [10, 20, 30, 40]]
    np.testing.assert_array_equal(clip_boxes(boxes, 60, 100), expected)
    np.testing.assert_array_equal(clip_boxes(tf.constant(boxes), 60.0, 100.0).numpy(), expected)
    heights, widths = np.array([[60], [20]]), np.array([[100], [30]])
    per_image = clip_boxes(np.stack([boxes, boxes]), heights, widths)
    np.testing.assert_array_equal(per_image[1], [[0, 0, 20, 30], [10, 20, 20, 30]])
