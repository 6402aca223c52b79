"""Decoding and NMS layers, and mapping boxes back to the original image (REFERENCE §2.7)."""

from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.detection.anchors import generate_anchors
from keras_efficient.detection.box_coding import encode_boxes, iou_matrix
from keras_efficient.detection.postprocess import (
    DetectionDecoder,
    NonMaxSuppression,
    map_boxes_to_original,
)

# One level, 16 × 16 cells of stride 8, 9 anchors each; anchor 0 is a 32 × 32 square.
ANCHOR_ARGS: dict[str, Any] = {"image_size": (128, 128), "min_level": 3, "max_level": 3}
SPEC = AnchorSpec(image_size=(128, 128), min_level=3, max_level=3)
ANCHORS = generate_anchors(SPEC)
NUM_ANCHORS = SPEC.num_anchors
NUM_CLASSES = 3
LOW = -12.0  # sigmoid ≈ 6e-6: below any score threshold used here


def anchor_index(row: int, col: int, anchor: int = 0) -> int:
    return 9 * (16 * row + col) + anchor


A = anchor_index(6, 6)
B = anchor_index(6, 7)  # one cell right of A: IoU 0.6
FAR = anchor_index(12, 12)


def head_outputs(entries: list[tuple[int, int, float]], batch: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Logits with (anchor, class, logit) set; zero regressions (boxes are the anchors)."""
    logits = np.full((batch, NUM_ANCHORS, NUM_CLASSES), LOW, np.float32)
    for anchor, cls, logit in entries:
        logits[:, anchor, cls] = logit
    return logits, np.zeros((batch, NUM_ANCHORS, 4), np.float32)


def run(layer: NonMaxSuppression, logits: np.ndarray, regressions: np.ndarray
        ) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(t) for t in layer(logits, regressions)]


def sigmoid(x: float) -> float:
    return 1 / (1 + np.exp(-x))


def test_overlap_iou_of_the_fixture():
    np.testing.assert_allclose(iou_matrix(ANCHORS[[A]], ANCHORS[[B]]), [[0.6]], rtol=1e-6)


def test_same_class_overlap_keeps_one():
    boxes, scores, classes, count = run(NonMaxSuppression(**ANCHOR_ARGS),
                                        *head_outputs([(A, 1, 2.0), (B, 1, 1.0)]))
    assert count.tolist() == [1]
    np.testing.assert_allclose(boxes[0, 0], ANCHORS[A], atol=1e-4)
    np.testing.assert_allclose(scores[0, 0], sigmoid(2.0), rtol=1e-6)
    assert classes[0, 0] == 1


def test_class_aware_keeps_different_classes_agnostic_does_not():
    outputs = head_outputs([(A, 1, 2.0), (B, 2, 1.0)])
    _, scores, classes, count = run(NonMaxSuppression(**ANCHOR_ARGS), *outputs)
    assert count.tolist() == [2]
    assert classes[0, :2].tolist() == [1, 2]
    np.testing.assert_allclose(scores[0, :2], [sigmoid(2.0), sigmoid(1.0)], rtol=1e-6)

    _, _, classes, count = run(NonMaxSuppression(**ANCHOR_ARGS, class_aware=False), *outputs)
    assert count.tolist() == [1] and classes[0, 0] == 1


def test_class_agnostic_uses_each_anchors_best_class():
    outputs = head_outputs([(A, 0, 1.0), (A, 2, 3.0), (FAR, 1, 0.5)])
    _, scores, classes, count = run(NonMaxSuppression(**ANCHOR_ARGS, class_aware=False), *outputs)
    assert count.tolist() == [2]
    assert classes[0, :2].tolist() == [2, 1]
    np.testing.assert_allclose(scores[0, :2], [sigmoid(3.0), sigmoid(0.5)], rtol=1e-6)


def test_soft_nms_decays_the_overlapping_score():
    layer = NonMaxSuppression(**ANCHOR_ARGS, method="soft", soft_nms_sigma=0.5)
    _, scores, _, count = run(layer, *head_outputs([(A, 1, 2.0), (B, 1, 1.0)]))
    assert count.tolist() == [2]
    # The paper's (and automl's) Gaussian: exp(-IoU² / sigma); TensorFlow is given sigma / 2.
    decayed = sigmoid(1.0) * np.exp(-(0.6**2) / 0.5)
    np.testing.assert_allclose(scores[0, :2], [sigmoid(2.0), decayed], rtol=1e-5)


def test_score_threshold_and_padding():
    layer = NonMaxSuppression(**ANCHOR_ARGS, score_threshold=0.5, max_detections=5)
    boxes, scores, classes, count = run(layer, *head_outputs([(A, 0, 1.0), (FAR, 1, -1.0)]))
    assert count.tolist() == [1]
    assert classes[0, 0] == 0
    assert not boxes[0, 1:].any() and not scores[0, 1:].any() and not classes[0, 1:].any()


def test_pre_nms_top_k_limits_candidates():
    outputs = head_outputs([(A, 0, 2.0), (FAR, 1, 1.0)])
    _, _, _, count = run(NonMaxSuppression(**ANCHOR_ARGS, pre_nms_top_k=1), *outputs)
    assert count.tolist() == [1]
    _, _, _, count = run(NonMaxSuppression(**ANCHOR_ARGS, pre_nms_top_k=None), *outputs)
    assert count.tolist() == [2]


def test_boxes_are_decoded_and_clipped_per_image():
    target = np.array([[20, 30, 60, 90], [-40, -10, 50, 200]], np.float32)
    logits, regressions = head_outputs([(A, 0, 2.0)], batch=2)
    regressions[:, A] = encode_boxes(target, ANCHORS[A])
    for mode, clip in (("global", None), ("per_class", "after_nms")):
        layer = NonMaxSuppression(**ANCHOR_ARGS, mode=mode, clip=clip)
        boxes, _, _, count = run(layer, logits, regressions)
        assert count.tolist() == [1, 1]
        np.testing.assert_allclose(boxes[:, 0], [[20, 30, 60, 90], [0, 0, 50, 128]], atol=1e-3)
    # automl's per-class mode does not clip (its postprocess_per_class never calls clip_boxes).
    boxes, _, _, _ = run(NonMaxSuppression(**ANCHOR_ARGS), logits, regressions)
    np.testing.assert_allclose(boxes[:, 0], target, atol=1e-3)


def test_static_output_shapes_with_unknown_batch():
    layer = NonMaxSuppression(**ANCHOR_ARGS, max_detections=7)
    function = tf.function(lambda x, y: layer(x, y), input_signature=[
        tf.TensorSpec([None, NUM_ANCHORS, NUM_CLASSES]), tf.TensorSpec([None, NUM_ANCHORS, 4])])
    concrete = function.get_concrete_function()
    shapes = [tuple(t.shape) for t in concrete.structured_outputs]
    assert shapes == [(None, 7, 4), (None, 7), (None, 7), (None,)]
    assert [t.dtype for t in concrete.structured_outputs][2:] == [tf.int32, tf.int32]
    outputs = function(*head_outputs([(A, 0, 2.0)], batch=3))
    assert [tuple(t.shape) for t in outputs] == [(3, 7, 4), (3, 7), (3, 7), (3,)]


def test_decoder_layer():
    target = np.array([[20, 30, 60, 90]], np.float32)
    logits, regressions = head_outputs([(A, 2, 2.0)])
    regressions[0, A] = encode_boxes(target, ANCHORS[A])[0]
    boxes, scores = (keras.ops.convert_to_numpy(t) for t in
                     DetectionDecoder(**ANCHOR_ARGS)(logits, regressions))
    assert boxes.shape == (1, NUM_ANCHORS, 4) and scores.shape == (1, NUM_ANCHORS, NUM_CLASSES)
    np.testing.assert_allclose(boxes[0, A], target[0], atol=1e-3)
    np.testing.assert_allclose(boxes[0, 0], [0, 0, 20, 20], atol=1e-4)  # clipped anchor
    np.testing.assert_allclose(scores[0, A, 2], sigmoid(2.0), rtol=1e-6)


def test_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = NonMaxSuppression(**ANCHOR_ARGS)
        _, scores, _, _ = run(layer, *head_outputs([(A, 1, 2.0)]))
    finally:
        keras.config.set_dtype_policy(previous)
    assert layer.compute_dtype == "float32"
    np.testing.assert_allclose(scores[0, 0], sigmoid(2.0), rtol=1e-6)


def test_rejects_mismatched_anchor_count():
    with pytest.raises(ValueError, match="must be"):
        NonMaxSuppression(**ANCHOR_ARGS)(np.zeros((1, 10, 3), np.float32),
                                         np.zeros((1, 10, 4), np.float32))
    with pytest.raises(ValueError, match="method"):
        NonMaxSuppression(**ANCHOR_ARGS, method="linear")


@pytest.mark.parametrize("layer_class", [DetectionDecoder, NonMaxSuppression])
def test_config_round_trip(layer_class):
    kwargs: dict[str, Any] = {} if layer_class is DetectionDecoder else {
        "max_detections": 9, "pre_nms_top_k": 50, "iou_threshold": 0.4, "score_threshold": 0.1,
        "method": "soft", "soft_nms_sigma": 0.3, "mode": "global", "clip": "before_nms"}
    layer = layer_class(**ANCHOR_ARGS, anchor_scale=3.0, aspect_ratios=(1.0, 2.0, 0.5), **kwargs)
    config = layer.get_config()
    clone = layer_class.from_config(config)
    assert clone.get_config() == config
    assert config["image_size"] == [128, 128] and config["anchor_scale"] == 3.0
    for key, value in kwargs.items():
        assert config[key] == value
    np.testing.assert_array_equal(clone.anchors, layer.anchors)
    assert NonMaxSuppression.from_anchor_spec(SPEC).anchor_spec == SPEC


def test_model_saves_and_loads_with_safe_mode(tmp_path):
    logits_in = keras.Input((NUM_ANCHORS, NUM_CLASSES))
    regressions_in = keras.Input((NUM_ANCHORS, 4))
    detections = NonMaxSuppression(**ANCHOR_ARGS, max_detections=10, name="nms")(
        logits_in, regressions_in)
    decoded = DetectionDecoder(**ANCHOR_ARGS, name="decode")(logits_in, regressions_in)
    model = keras.Model([logits_in, regressions_in], [*detections, *decoded])
    path = tmp_path / "postprocess.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)

    inputs = head_outputs([(A, 1, 2.0), (B, 2, 1.0), (FAR, 0, 0.0)], batch=2)
    expected = model.predict(list(inputs), verbose=0)
    actual = loaded.predict(list(inputs), verbose=0)
    assert expected[3].tolist() == [3, 3]
    for e, a in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(e, a)


def test_map_boxes_to_original():
    # A 300 × 600 image resized by 128 / 600 (to 64 × 128), padded bottom/right to 128 × 128.
    original = np.array([[30, 60, 150, 300], [200, 500, 400, 700]], np.float32)
    scale = 128 / 600
    network = original * scale
    mapped = map_boxes_to_original(network, scale, (300, 600))
    np.testing.assert_allclose(mapped, [[30, 60, 150, 300], [200, 500, 300, 600]], rtol=1e-5)

    batched = map_boxes_to_original(tf.constant(np.stack([network, network * 2])),
                                    np.array([scale, 2 * scale]), np.array([[300, 600]] * 2))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(batched)[1], mapped, rtol=1e-5)

    padded = network + np.array([10, 20, 10, 20], np.float32)
    shifted = map_boxes_to_original(padded, scale, (300, 600),
                                    pad_offsets=(10, 20))
    np.testing.assert_allclose(shifted, mapped, rtol=1e-5, atol=1e-4)
