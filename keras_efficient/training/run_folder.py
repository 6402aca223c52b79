"""Rebuild the model a training run left in its folder: the one place that reads a run.

``train_detector`` writes ``train_config.json`` (the spec it trained), ``labels.json`` (class
index -> dataset category id and name) and ``detector.weights.h5`` into its output folder;
evaluation, export and ``keras-efficient detect`` all rebuild the trained detector from there.
``train_classifier`` writes ``train_config.json``, ``labels.txt`` and ``classifier.weights.h5``,
which ``keras-efficient classify --train-dir`` reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from keras_efficient.configs.efficientdet import EfficientDetSpec
from keras_efficient.models.efficientdet import EfficientDet
from keras_efficient.training.classifier import ClassifierTrainConfig, build_classifier
from keras_efficient.training.detector import WEIGHTS_FILE, DetectorTrainConfig
from keras_efficient.training.output_folder import CONFIG_FILE

LABELS_FILE = "labels.json"
CLASSIFIER_WEIGHTS = "classifier.weights.h5"


@dataclasses.dataclass(frozen=True)
class TrainedDetector:
    """A trained detector and the run it came from. The model carries its spec and label map;
    ``spec``, ``labels`` and ``category_ids`` read them from it.

    Example::

        run = load_trained_detector("runs/mine")
        run.model, run.spec.input_size, run.labels[0], run.category_ids[0]
    """

    model: Any
    config: DetectorTrainConfig | None
    weights_path: Path

    @property
    def spec(self) -> EfficientDetSpec:
        return self.model.spec

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    @property
    def category_ids(self) -> list[int]:
        return list(self.model.category_ids)


def load_trained_detector(train_dir: str | os.PathLike[str], *,
                          weights: str | os.PathLike[str] | None = None,
                          input_size: int | None = None,
                          name: str | None = None) -> TrainedDetector:
    """The detector ``train_detector`` left in ``train_dir`` (a run folder), or a saved
    ``detector.keras`` file (loaded with ``safe_mode=True``).

    ``weights`` overrides the run's weights file; ``input_size`` rebuilds it for another
    resolution (the weights do not depend on it). The model is named ``<variant>_trained``
    (e.g. ``efficientdet_lite0_trained``) unless ``name`` is given.

    Example::

        run = load_trained_detector("runs/demo/train")
        found = predict(inference_model(run.model), ["photo.jpg"])
    """
    folder = Path(train_dir)
    if folder.suffix == ".keras" and folder.is_file() and weights is None and not input_size:
        import keras

        model = keras.saving.load_model(folder, safe_mode=True)
        if not hasattr(model, "spec"):
            raise ValueError(f"{folder} holds a {type(model).__name__}, not an EfficientDet "
                             "detector.")
        return TrainedDetector(model, None, folder)
    config_path = folder / CONFIG_FILE
    if (folder / CLASSIFIER_WEIGHTS).is_file():
        raise ValueError(f"{folder} holds a trained classifier, not a detector; use "
                         "`keras-efficient classify --train-dir`.")
    if not config_path.is_file():
        raise ValueError(f"No trained detector in {folder} (no {CONFIG_FILE}); train one first "
                         "(`make demo` or `keras-efficient train`), or pass the folder that "
                         "`train --output-dir` wrote.")
    labels_path = folder / LABELS_FILE
    if not labels_path.is_file():
        raise ValueError(f"{labels_path} is missing: the training run in {folder} did not "
                         "finish writing its labels; rerun the training.")
    config = DetectorTrainConfig.from_json(config_path)
    spec = config.spec()
    if input_size:
        spec = spec.with_(input_size=input_size)
    entries = json.loads(labels_path.read_text())
    weights_path = Path(weights) if weights is not None else folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ValueError(f"No weights at {weights_path}: the training run in {folder} has not "
                         "saved an epoch yet; train (or resume) until it does.")
    model = EfficientDet(spec, num_classes=len(entries), weights=str(weights_path),
                         name=name or f"{spec.name.replace('-', '_')}_trained",
                         label_map=entries, resize=config.resize)
    return TrainedDetector(model, config, weights_path)


@dataclasses.dataclass(frozen=True)
class TrainedClassifier:
    """A classifier ``train_classifier`` left in its folder, with its class names.

    Example::

        run = load_trained_classifier("runs/flowers")
        run.model.predict(images), run.labels
    """

    model: Any
    labels: list[str]
    config: ClassifierTrainConfig
    weights_path: Path


def load_trained_classifier(train_dir: str | os.PathLike[str]) -> TrainedClassifier:
    """The classifier ``train_classifier`` left in ``train_dir`` (``train_config.json``,
    ``labels.txt``, ``classifier.weights.h5``), rebuilt with :func:`build_classifier`.

    Example::

        run = load_trained_classifier("runs/flowers")
    """
    folder = Path(train_dir)
    paths = {name: folder / name for name in (CONFIG_FILE, "labels.txt", CLASSIFIER_WEIGHTS)}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise ValueError(f"No trained classifier in {folder} (missing {', '.join(missing)}); "
                         "train one with `keras-efficient train --task classify`.")
    values = json.loads(paths[CONFIG_FILE].read_text())
    if "train_json" in values:
        raise ValueError(f"{folder} holds a trained detector, not a classifier; use "
                         "`keras-efficient detect --train-dir`.")
    config = ClassifierTrainConfig(**values)
    labels = [line for line in paths["labels.txt"].read_text().splitlines() if line]
    model = build_classifier(config, len(labels))
    model.load_weights(paths[CLASSIFIER_WEIGHTS])
    return TrainedClassifier(model, labels, config, paths[CLASSIFIER_WEIGHTS])
