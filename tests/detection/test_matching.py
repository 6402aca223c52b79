"""Anchor matching: threshold, force-match, padding, graph use (REFERENCE §2.5)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.detection.anchors import generate_anchors
from keras_efficient.detection.box_coding import decode_boxes, iou_matrix
from keras_efficient.detection.matching import assign_targets, assign_targets_numpy

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def anchors() -> np.ndarray:
    return generate_anchors(AnchorSpec(image_size=(128, 128), min_level=3, max_level=5))


def test_gt_equal_to_an_anchor(anchors):
    index = 9 * (5 * 16 + 7)  # P3, row 5, column 7, anchor 0
    result = assign_targets_numpy(anchors[index:index + 1], np.array([2]), anchors, NUM_CLASSES)
    assert result.positive_mask[index] == 1.0
    np.testing.assert_allclose(result.box_targets[index], np.zeros(4), atol=1e-6)
    np.testing.assert_array_equal(result.class_targets[index], [0, 0, 1, 0])
    assert result.matched_gt[index] == 0
    assert result.class_targets.shape == (len(anchors), NUM_CLASSES)
    assert result.box_targets.shape == (len(anchors), 4)
    assert result.positive_mask.shape == (len(anchors),)
    assert result.num_positives == result.positive_mask.sum()


def test_negatives_have_zero_targets(anchors):
    result = assign_targets_numpy(np.array([[30, 40, 90, 80]], np.float32), np.array([1]),
                                  anchors, NUM_CLASSES)
    negative = result.positive_mask == 0
    assert negative.any() and (~negative).any()
    assert not result.class_targets[negative].any()
    assert not result.box_targets[negative].any()
    assert np.all(result.matched_gt[negative] == -1)


def test_force_match_of_tiny_box(anchors):
    tiny = np.array([[60, 60, 62, 63]], np.float32)
    iou = iou_matrix(anchors, tiny)[:, 0]
    assert iou.max() < 0.5
    result = assign_targets_numpy(tiny, np.array([3]), anchors, NUM_CLASSES)
    assert result.num_positives == 1
    best = int(np.argmax(iou))
    assert result.positive_mask[best] == 1
    np.testing.assert_allclose(decode_boxes(result.box_targets[best], anchors[best]), tiny[0],
                               atol=1e-3)


def test_shared_best_anchor_goes_to_the_later_box(anchors):
    tiny = np.array([[60, 60, 62, 63], [60, 60, 62, 63]], np.float32)
    result = assign_targets_numpy(tiny, np.array([0, 3]), anchors, NUM_CLASSES)
    assert result.num_positives == 1
    best = int(np.argmax(result.positive_mask))
    assert result.matched_gt[best] == 1
    np.testing.assert_array_equal(result.class_targets[best], [0, 0, 0, 1])


def test_padded_rows_are_ignored(anchors):
    real = np.array([[30, 40, 90, 80]], np.float32)
    padded = np.concatenate([real, anchors[100:101], np.zeros((3, 4), np.float32)])
    classes = np.array([1, -1, -1, -1, -1])
    with_padding = assign_targets_numpy(padded, classes, anchors, NUM_CLASSES)
    without = assign_targets_numpy(real, np.array([1]), anchors, NUM_CLASSES)
    for a, b in zip(with_padding, without, strict=True):
        np.testing.assert_array_equal(a, b)
    nothing = assign_targets_numpy(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32),
                                   anchors, NUM_CLASSES)
    assert nothing.num_positives == 0 and not nothing.class_targets.any()


def test_matches_the_rule_on_random_boxes(anchors):
    rng = np.random.default_rng(0)
    centers = rng.uniform(0, 128, (12, 2))
    sizes = rng.uniform(2, 100, (12, 2))
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], -1).astype(np.float32)
    classes = rng.integers(0, NUM_CLASSES, 12)
    classes[-3:] = -1
    result = assign_targets_numpy(boxes, classes, anchors, NUM_CLASSES)

    iou = iou_matrix(anchors, boxes[:-3])
    expected = iou.max(axis=1) >= 0.5
    expected[np.argmax(iou, axis=0)] = True
    np.testing.assert_array_equal(result.positive_mask.astype(bool), expected)
    positive = expected.nonzero()[0]
    matched = result.matched_gt[positive]
    np.testing.assert_allclose(decode_boxes(result.box_targets[positive], anchors[positive]),
                               boxes[matched], atol=1e-3)
    np.testing.assert_array_equal(result.class_targets[positive].argmax(-1), classes[matched])


def test_batched_equals_per_example(anchors):
    boxes = np.array([[[30, 40, 90, 80], [0, 0, 0, 0]], [[10, 10, 20, 30], [60, 60, 62, 63]]],
                     np.float32)
    classes = np.array([[1, -1], [0, 2]])
    batched = assign_targets_numpy(boxes, classes, anchors, NUM_CLASSES)
    for i in range(2):
        single = assign_targets_numpy(boxes[i], classes[i], anchors, NUM_CLASSES)
        for a, b in zip(batched, single, strict=True):
            np.testing.assert_array_equal(a[i], b)


def test_runs_inside_tf_data_map(anchors):
    examples = [
        (np.array([[30, 40, 90, 80], [60, 60, 62, 63]], np.float32), np.array([1, 2], np.int32)),
        (np.array([[10, 10, 20, 30]], np.float32), np.array([0], np.int32)),
    ]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(examples),
        output_signature=(tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)))

    def to_targets(boxes: tf.Tensor, classes: tf.Tensor) -> tuple[tf.Tensor, ...]:
        result = assign_targets(boxes, classes, anchors, NUM_CLASSES)
        return result.class_targets, result.box_targets, result.num_positives

    outputs = list(dataset.map(to_targets).as_numpy_iterator())
    for (boxes, classes), (class_targets, box_targets, num_positives) in zip(
            examples, outputs, strict=True):
        eager = assign_targets_numpy(boxes, classes, anchors, NUM_CLASSES)
        np.testing.assert_array_equal(class_targets, eager.class_targets)
        np.testing.assert_allclose(box_targets, eager.box_targets, atol=1e-6)
        assert num_positives == eager.num_positives > 0
