"""``train(config)``: the one entry point for detectors and classifiers."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_efficient.training.classifier import ClassifierTrainConfig, train_classifier
from keras_efficient.training.detector import DetectorTrainConfig, train_detector


def train(config: DetectorTrainConfig | ClassifierTrainConfig,
          strategy: tf.distribute.Strategy | None = None, *, overwrite: bool = False) -> Any:
    """Train what ``config`` describes: a detector (COCO data) or a classifier (image folder).

    Returns :class:`~keras_efficient.training.detector.TrainResult` for detectors and the result
    dict of :func:`~keras_efficient.training.classifier.train_classifier` for classifiers.
    ``overwrite=True`` replaces a finished (or differently configured) run in the output folder.

    Example::

        result = train(DetectorTrainConfig(train_json="data/annotations/instances_train.json",
                                           train_images="data/train", output_dir="runs/mine",
                                           model="efficientdet-lite0", epochs=50, batch_size=16))
        result.weights_path  # runs/mine/detector.weights.h5
        metrics = train(ClassifierTrainConfig(train_images="flowers/", output_dir="runs/fl",
                                              weights="imagenet"))["metrics"]  # top1, top5
    """
    if isinstance(config, DetectorTrainConfig):
        return train_detector(config, strategy=strategy, overwrite=overwrite)
    if isinstance(config, ClassifierTrainConfig):
        return train_classifier(config, strategy=strategy, overwrite=overwrite)
    raise TypeError(f"train() takes a DetectorTrainConfig or ClassifierTrainConfig; received "
                    f"{type(config).__name__}.")
