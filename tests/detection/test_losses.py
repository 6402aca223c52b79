"""The training losses on tiny hand-checked cases (REFERENCE §2.6)."""

import keras
import numpy as np
import pytest

from keras_efficient.detection.losses import (
    FocalLoss,
    detection_loss,
    giou_box_loss,
    huber_box_loss,
)


def focal_by_hand(labels, logits, alpha=0.25, gamma=1.5):
    p = 1 / (1 + np.exp(-logits))
    p_t = np.where(labels == 1, p, 1 - p)
    alpha_t = np.where(labels == 1, alpha, 1 - alpha)
    return float((-alpha_t * (1 - p_t) ** gamma * np.log(p_t)).sum())


def test_focal_loss_matches_the_formula():
    labels = np.array([[[1, 0], [0, 0]]], "float32")
    logits = np.array([[[2.0, -1.0], [0.5, -3.0]]], "float32")
    # by hand: 0.25·(1−σ(2))^1.5·−log σ(2) + 0.75·σ(−1)^1.5... summed over the 4 entries
    assert float(FocalLoss()(labels, logits)) == pytest.approx(focal_by_hand(labels, logits),
                                                               rel=1e-5)
    assert focal_by_hand(labels, logits) == pytest.approx(0.39322, abs=1e-4)


def test_focal_loss_ignores_rows_marked_minus_one():
    labels = np.array([[[1, 0], [-1, -1]]], "float32")
    logits = np.array([[[2.0, -1.0], [5.0, 5.0]]], "float32")
    expected = focal_by_hand(labels[:, :1], logits[:, :1])
    assert float(FocalLoss()(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_huber_box_loss_hand_values():
    targets = np.zeros((1, 2, 4), "float32")
    regression = np.array([[[0.05, 0, 0, 0], [0.3, 0, 0, 0]]], "float32")
    quadratic = 0.5 * 0.05**2
    linear = 0.5 * 0.1**2 + 0.1 * (0.3 - 0.1)
    both = keras.ops.convert_to_numpy(huber_box_loss(targets, regression, np.ones((1, 2))))
    assert both[0] == pytest.approx(quadratic + linear, rel=1e-5)
    masked = keras.ops.convert_to_numpy(huber_box_loss(targets, regression, [[1.0, 0.0]]))
    assert masked[0] == pytest.approx(quadratic, rel=1e-5)


def test_detection_loss_normalises_by_positives_plus_one():
    targets = {"class_targets": np.array([[[1, 0], [0, 0]]], "float32"),
               "box_targets": np.zeros((1, 2, 4), "float32"),
               "positive_mask": np.array([[1.0, 0.0]], "float32")}
    outputs = {"class_logits": np.array([[[2.0, -1.0], [0.5, -3.0]]], "float32"),
               "box_regression": np.array([[[0.05, 0, 0, 0], [9, 9, 9, 9]]], "float32")}
    terms = {k: float(v) for k, v in detection_loss(targets, outputs).items()}
    focal = focal_by_hand(targets["class_targets"], outputs["class_logits"])
    assert terms["class_loss"] == pytest.approx(focal / 2, rel=1e-5)
    assert terms["box_loss"] == pytest.approx(0.5 * 0.05**2 / 2, rel=1e-5)
    assert terms["loss"] == pytest.approx(terms["class_loss"] + 50 * terms["box_loss"], rel=1e-5)


def test_giou_loss():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], "float32")
    same = giou_box_loss(np.zeros((1, 2, 4)), np.zeros((1, 2, 4)), np.ones((1, 2)), anchors)
    assert float(keras.ops.convert_to_numpy(same)[0]) == pytest.approx(0.0, abs=1e-6)
    # predicted box moved by two anchor widths: disjoint, GIoU = 0 − (30·10 − 200)/300 = −1/3
    moved = np.array([[[0, 2.0, 0, 0], [0, 0, 0, 0]]], "float32")
    loss = giou_box_loss(np.zeros((1, 2, 4)), moved, np.array([[1.0, 0.0]]), anchors)
    assert float(keras.ops.convert_to_numpy(loss)[0]) == pytest.approx(1 + 1 / 3, rel=1e-5)
    with pytest.raises(ValueError, match="anchors"):
        detection_loss({"class_targets": np.zeros((1, 2, 1)), "box_targets": np.zeros((1, 2, 4)),
                        "positive_mask": np.zeros((1, 2))},
                       {"class_logits": np.zeros((1, 2, 1)), "box_regression": np.zeros((1, 2, 4))},
                       iou_weight=1.0)


def test_label_smoothing_moves_targets_towards_one_half():
    labels = np.array([[[1, 0]]], "float32")
    logits = np.array([[[2.0, -1.0]]], "float32")
    smoothed = float(FocalLoss(label_smoothing=0.2)(labels, logits))
    # Keras smooths binary targets to y·(1 − s) + s/2: here [0.9, 0.1].
    p = 1 / (1 + np.exp(-logits))
    soft = np.array([[[0.9, 0.1]]])
    bce = -(soft * np.log(p) + (1 - soft) * np.log(1 - p))
    p_t = soft * p + (1 - soft) * (1 - p)
    alpha_t = soft * 0.25 + (1 - soft) * 0.75
    expected = float((alpha_t * (1 - p_t) ** 1.5 * bce).sum())
    assert smoothed == pytest.approx(expected, rel=1e-4)
    assert smoothed != pytest.approx(float(FocalLoss()(labels, logits)), rel=1e-3)
