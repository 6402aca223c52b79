"""Top-k accuracy on hand cases, and over a dataset of (images, labels) batches."""

from __future__ import annotations

import numpy as np
import pytest

from keras_efficient.evaluation.classification import evaluate_classifier, top_k_accuracy

PROBS = np.array([
    [0.1, 0.6, 0.2, 0.1],   # label 1: top-1
    [0.5, 0.1, 0.3, 0.1],   # label 2: second
    [0.4, 0.3, 0.2, 0.1],   # label 3: last
    [0.25, 0.25, 0.4, 0.1],  # label 0: tied second with class 1
])
LABELS = np.array([1, 2, 3, 0])


@pytest.mark.parametrize(("k", "expected"), [(1, 0.25), (2, 0.75), (3, 0.75), (4, 1.0), (9, 1.0)])
def test_top_k_accuracy_hand_cases(k, expected):
    assert top_k_accuracy(LABELS, PROBS, k) == pytest.approx(expected)


def test_top_k_accuracy_one_hot_labels_and_logits():
    one_hot = np.eye(4)[LABELS]
    assert top_k_accuracy(one_hot, PROBS, 2) == pytest.approx(0.75)
    assert top_k_accuracy(LABELS, np.log(PROBS), 2) == pytest.approx(0.75)  # order is enough


def test_top_k_accuracy_rejects_bad_input():
    with pytest.raises(ValueError, match="k must be"):
        top_k_accuracy(LABELS, PROBS, 0)
    with pytest.raises(ValueError, match="labels must be in"):
        top_k_accuracy([4], PROBS[:1], 1)
    with pytest.raises(ValueError, match="labels for"):
        top_k_accuracy(LABELS[:2], PROBS, 1)
    with pytest.raises(ValueError, match="at least one"):
        top_k_accuracy([], np.zeros((0, 4)), 1)


def test_evaluate_classifier_with_a_predict_fn_over_batches():
    # The "image" is the row index; the predict function looks its scores up.
    probs = np.tile(PROBS, (2, 2))[:, :8]  # 8 rows, 8 classes: top-5 reaches more labels
    labels = np.array([1, 2, 3, 0, 5, 6, 7, 4])
    batches = [(np.arange(0, 3), labels[0:3]), (np.arange(3, 8), labels[3:8], "weights")]
    result = evaluate_classifier(lambda idx: probs[np.asarray(idx)], batches)
    assert result["num_examples"] == 8
    assert result["top1"] == pytest.approx(top_k_accuracy(labels, probs, 1))
    assert result["top5"] == pytest.approx(top_k_accuracy(labels, probs, 5))
    with pytest.raises(ValueError, match="empty"):
        evaluate_classifier(lambda x: x, [])


def test_evaluate_classifier_with_keras_model_and_tf_data():
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Softmax()(inputs))  # identity ranking of the input
    dataset = tf.data.Dataset.from_tensor_slices((PROBS.astype("float32"), LABELS)).batch(3)
    result = evaluate_classifier(model, dataset, ks=(1, 2))
    assert result == {"top1": pytest.approx(0.25), "top2": pytest.approx(0.75), "num_examples": 4}
