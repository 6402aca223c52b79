"""``train_classifier``: fine-tune (or train) an EfficientNet on an image folder."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from keras_efficient.configs.efficientnet import get_efficientnet_scaling
from keras_efficient.data.classification import image_folder_dataset
from keras_efficient.files import write_json_atomic, write_text_atomic
from keras_efficient.models.efficientnet import EfficientNet
from keras_efficient.training.callbacks import (
    EpochLog,
    SafeBackupAndRestore,
    SaveWeights,
    StopOnDivergence,
    StopOnNonFiniteLoss,
)
from keras_efficient.training.optimizers import SGD, AdamW
from keras_efficient.training.output_folder import prepare_output_folder
from keras_efficient.training.schedules import warmup_cosine
from keras_efficient.training.strategy import choose_strategy

WEIGHTS_FILE = "classifier.weights.h5"


@dataclasses.dataclass
class ClassifierTrainConfig:
    """Settings of ``train_classifier``; JSON-serialisable.

    Example::

        config = ClassifierTrainConfig(train_images="flowers/", output_dir="runs/flowers",
                                       model="efficientnetlite0", weights="imagenet",
                                       freeze_backbone=True, epochs=5)
    """

    train_images: str
    output_dir: str
    model: str = "efficientnetlite0"
    image_size: int | None = None
    validation_split: float = 0.2
    batch_size: int = 16
    epochs: int = 5
    learning_rate: float = 1e-3
    warmup_epochs: float = 0.5
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    ema_decay: float | None = None
    label_smoothing: float = 0.1
    weights: str | None = None
    freeze_backbone: bool = False
    seed: int = 0
    verbose: int | str = "auto"


def classifier_input_size(config: ClassifierTrainConfig) -> int:
    """The square input size a classifier run trains (and is rebuilt) at."""
    return config.image_size or get_efficientnet_scaling(config.model).resolution


def build_classifier(config: ClassifierTrainConfig, num_classes: int,
                     weights: str | None = None) -> keras.Model:
    """The network ``train_classifier`` trains: the backbone (``weights`` as for
    :func:`keras_efficient.EfficientNet`, without its top), average pooling, dropout and a new
    softmax layer with ``num_classes`` outputs. Rebuilding a finished run uses the same function.

    Example::

        model = build_classifier(ClassifierTrainConfig("flowers/", "runs/flowers"), 5)
        model.load_weights("runs/flowers/classifier.weights.h5")
    """
    size = classifier_input_size(config)
    backbone = EfficientNet(config.model, include_top=False, weights=weights,
                            input_shape=(size, size, 3), pooling="avg")
    if config.freeze_backbone:
        backbone.trainable = False
    x = keras.layers.Dropout(0.2, name="top_dropout")(backbone.output)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(backbone.inputs, outputs, name=f"{config.model}_classifier")


def train_classifier(config: ClassifierTrainConfig,
                     strategy: tf.distribute.Strategy | None = None, *,
                     overwrite: bool = False) -> dict[str, Any]:
    """Train on ``train_images/<class>/*``; returns the model, class names, history, metrics.

    A new classifier head with one output per class folder is put on the backbone
    (``weights`` as for :func:`keras_efficient.EfficientNet`, without its ImageNet top).
    Writes ``classifier.weights.h5`` (after every epoch), ``labels.txt``,
    ``train_config.json`` (to rebuild the model) and ``metrics.json``. The output folder
    rules (resume, refuse, ``overwrite``) and the NaN/divergence stops are those of
    :func:`~keras_efficient.training.detector.train_detector`.

    Example::

        result = train_classifier(ClassifierTrainConfig(train_images="flowers/",
                                                        output_dir="runs/flowers"))
        result["metrics"]  # {"top1": ..., "top5": ..., "num_examples": ...}
    """
    # First: a MultiWorkerMirroredStrategy can only be made before TensorFlow runs any op.
    strategy = strategy or choose_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise ValueError("Classifier training runs on one machine (one or several GPUs); "
                         "training on several workers is available for detectors.")
    keras.utils.set_random_seed(config.seed)
    out = Path(config.output_dir)
    mode = prepare_output_folder(out, dataclasses.asdict(config), weights_file=WEIGHTS_FILE,
                                 run_files=(WEIGHTS_FILE, "labels.txt", "metrics.json"),
                                 overwrite=overwrite)
    size = classifier_input_size(config)
    train, names = image_folder_dataset(config.train_images, (size, size), config.batch_size,
                                        validation_split=config.validation_split,
                                        subset="training", seed=config.seed)
    val, _ = image_folder_dataset(config.train_images, (size, size), config.batch_size,
                                  validation_split=config.validation_split,
                                  subset="validation", seed=config.seed)
    steps = int(train.cardinality().numpy())
    if steps < 1:
        raise ValueError(f"No training batches in {config.train_images}: add images or lower "
                         "batch_size / validation_split.")
    with strategy.scope():
        model = build_classifier(config, len(names), weights=config.weights)
        schedule = warmup_cosine(config.learning_rate, steps * config.epochs,
                                 int(config.warmup_epochs * steps))
        common: dict[str, Any] = {"learning_rate": schedule}
        if config.ema_decay:
            common.update(use_ema=True, ema_momentum=config.ema_decay)
        optimizer = (AdamW(weight_decay=config.weight_decay, **common)
                     if config.optimizer == "adamw" else SGD(momentum=0.9, **common))
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        model.compile(optimizer=optimizer, loss=loss, metrics=[
            keras.metrics.CategoricalAccuracy(name="top1"),
            keras.metrics.TopKCategoricalAccuracy(k=min(5, len(names)), name="top5")])

    out.mkdir(parents=True, exist_ok=True)  # training can start: now write into the folder
    write_text_atomic(out / "labels.txt", "\n".join(names) + "\n")
    write_json_atomic(out / "train_config.json", dataclasses.asdict(config))
    if mode == "resume":
        print(f"resuming the interrupted run in {out}", file=sys.stderr, flush=True)

    def one_hot(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return images, tf.one_hot(labels, len(names))

    callbacks: list[keras.callbacks.Callback] = [
        StopOnNonFiniteLoss(), StopOnDivergence(), SafeBackupAndRestore(str(out / "backup"))]
    if config.ema_decay:
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    callbacks.append(SaveWeights(model, out / WEIGHTS_FILE))
    if config.verbose == 0:
        callbacks.append(EpochLog(config.epochs))
    history = model.fit(train.map(one_hot), validation_data=val.map(one_hot),
                        epochs=config.epochs, callbacks=callbacks, verbose=config.verbose,
                        shuffle=False)
    scores = model.evaluate(val.map(one_hot), return_dict=True, verbose=0)
    metrics = {"top1": float(scores["top1"]), "top5": float(scores["top5"]),
               "num_examples": int(sum(int(labels.shape[0]) for _, labels in val))}
    write_json_atomic(out / "metrics.json", metrics)
    return {"model": model, "class_names": names, "history": history.history,
            "metrics": metrics}

