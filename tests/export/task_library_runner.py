"""Runs the Android Task Library (tflite-support 0.4.4) on images, in its own virtualenv.

Not a test module: ``tests/export/test_task_library.py`` runs it with the interpreter of a
separate virtualenv (tflite-support pins protobuf<4, which TensorFlow 2.21 refuses), so it
imports nothing from this repository. Usage::

    python task_library_runner.py detect|classify MODEL.tflite IMAGE.npy [IMAGE.npy ...]

Each image is an ``(height, width, 3)`` uint8 RGB array, given to the Task Library whole (it
resizes it to the model's input itself). Prints one JSON list with one entry per image:

* ``detect``: rows ``[origin_x, origin_y, width, height, class index, class name, score]``
  (pixels of the image, as ``ObjectDetector`` returns them: integers);
* ``classify``: rows ``[class index, class name, score]`` of the first classification head.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from tflite_support.task import core, processor, vision


def detect(model: str, images: list[np.ndarray]) -> list[list[list[Any]]]:
    """Every detection (no score threshold, no result limit) in each image."""
    options = vision.ObjectDetectorOptions(
        base_options=core.BaseOptions(file_name=model),
        detection_options=processor.DetectionOptions(max_results=-1, score_threshold=0.0))
    detector = vision.ObjectDetector.create_from_options(options)
    found = []
    for image in images:
        result = detector.detect(vision.TensorImage.create_from_array(image))
        rows = []
        for detection in result.detections:
            box = detection.bounding_box
            for category in detection.categories:
                rows.append([box.origin_x, box.origin_y, box.width, box.height, category.index,
                             category.category_name, category.score])
        found.append(rows)
    return found


def classify(model: str, images: list[np.ndarray]) -> list[list[list[Any]]]:
    """Every class's score (no result limit) in each image."""
    options = vision.ImageClassifierOptions(
        base_options=core.BaseOptions(file_name=model),
        classification_options=processor.ClassificationOptions(max_results=-1))
    classifier = vision.ImageClassifier.create_from_options(options)
    found = []
    for image in images:
        result = classifier.classify(vision.TensorImage.create_from_array(image))
        head = result.classifications[0]
        found.append([[c.index, c.category_name, c.score] for c in head.categories])
    return found


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] not in ("detect", "classify"):
        raise SystemExit(__doc__)
    task, model, paths = argv[0], argv[1], argv[2:]
    images = [np.load(path) for path in paths]
    for path, image in zip(paths, images, strict=True):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise SystemExit(f"{path}: expected a (height, width, 3) uint8 array, got "
                             f"{image.dtype} {image.shape}.")
    run = detect if task == "detect" else classify
    print(json.dumps(run(model, images)))


if __name__ == "__main__":
    main(sys.argv[1:])
