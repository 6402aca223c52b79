"""Classification metrics: top-k accuracy over arrays and over a dataset of (images, labels)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


def _top_k_hits(labels: Any, probabilities: Any, k: int) -> np.ndarray:
    """Boolean ``[N]``: is the true class among the ``k`` highest scores?

    Ties at the boundary count as hits (as ``tf.math.in_top_k``): a sample is a hit when fewer
    than ``k`` classes score strictly higher than the true class.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; received {k}.")
    scores = np.asarray(probabilities, dtype="float64")
    if scores.ndim != 2:
        raise ValueError(f"probabilities must be [N, num_classes]; received {scores.shape}.")
    labels_ = np.asarray(labels)
    if labels_.ndim == 2 and labels_.shape == scores.shape:  # one-hot
        labels_ = np.argmax(labels_, axis=-1)
    labels_ = labels_.reshape(-1).astype("int64")
    if len(labels_) != len(scores):
        raise ValueError(f"{len(labels_)} labels for {len(scores)} rows of probabilities.")
    if len(labels_) and (labels_.min() < 0 or labels_.max() >= scores.shape[1]):
        raise ValueError(f"labels must be in [0, {scores.shape[1]}).")
    true_scores = scores[np.arange(len(labels_)), labels_]
    higher = np.sum(scores > true_scores[:, None], axis=1)
    return np.asarray(higher < k)


def top_k_accuracy(labels: Any, probabilities: Any, k: int = 1) -> float:
    """Fraction of samples whose label (int ``[N]`` or one-hot) is in the top ``k`` scores.

    Example::

        top_k_accuracy([1, 2], [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], k=1)  # 0.5
    """
    hits = _top_k_hits(labels, probabilities, k)
    if hits.size == 0:
        raise ValueError("top_k_accuracy needs at least one sample.")
    return float(np.mean(hits))


def evaluate_classifier(model_or_predict_fn: Any | Callable[[Any], Any],
                        dataset: Iterable[Any], *, ks: tuple[int, ...] = (1, 5)) -> dict[str, Any]:
    """Top-k accuracies of a Keras model or ``predict_fn(images) -> scores`` over a dataset.

    ``dataset`` yields ``(images, labels)`` batches (a ``tf.data.Dataset`` or any iterable; extra
    elements such as sample weights are ignored; empty batches are skipped). Scores may be
    probabilities or logits. Returns
    ``{"top1": ..., "top5": ..., "num_examples": n}`` (keys follow ``ks``).

    Example::

        val, names = image_folder_dataset("flowers/", (224, 224))
        evaluate_classifier(model, val)  # {"top1": ..., "top5": ..., "num_examples": ...}
    """
    if hasattr(model_or_predict_fn, "predict_on_batch"):
        predict = model_or_predict_fn.predict_on_batch
    elif callable(model_or_predict_fn):
        predict = model_or_predict_fn
    else:
        raise TypeError("model_or_predict_fn must be a Keras model or a callable.")
    hits = dict.fromkeys(ks, 0)
    count = 0
    for batch in dataset:
        images, labels = batch[0], batch[1]
        shape = getattr(images, "shape", None)
        if (shape[0] if shape is not None else len(images)) == 0:
            continue  # an empty batch (Keras' predict fails on one) adds nothing
        scores = np.asarray(predict(images))
        for k in ks:
            hits[k] += int(np.sum(_top_k_hits(np.asarray(labels), scores, k)))
        count += len(scores)
    if count == 0:
        raise ValueError("evaluate_classifier got an empty dataset.")
    result: dict[str, Any] = {f"top{k}": hits[k] / count for k in ks}
    result["num_examples"] = count
    return result
