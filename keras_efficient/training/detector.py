"""``train_detector`` / ``train_classifier``: one call from data on disk to trained weights.

Everything Keras provides is used as is — its ``train_step``, SGD/AdamW with ``use_ema``, cosine
decay with warm-up, ``BackupAndRestore`` (resume after interruption), ``SwapEMAWeights``
(checkpoints hold the EMA copy), ``TensorBoard`` — and only what Keras lacks is ours (targets,
loss, NaN stop, and a ``fit`` loop that also runs on several workers: ``training.loop``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from keras_efficient.configs.efficientdet import (
    EfficientDetSpec,
    check_resize,
    get_efficientdet_spec,
)
from keras_efficient.configs.efficientnet import EfficientNetScaling
from keras_efficient.data.coco import CocoDataset, ImageRecord
from keras_efficient.data.pipeline import detection_dataset
from keras_efficient.detection.anchors import generate_anchors
from keras_efficient.files import atomic_path, make_staging_folder, write_json_atomic
from keras_efficient.models.efficientdet import EfficientDet
from keras_efficient.training.callbacks import (
    CompileNotice,
    EpochLog,
    SafeBackupAndRestore,
    SaveWeights,
    StopOnDivergence,
    StopOnNonFiniteLoss,
)
from keras_efficient.training.loop import barrier, fit_distributed
from keras_efficient.training.optimizers import SGD, AdamW
from keras_efficient.training.output_folder import prepare_output_folder
from keras_efficient.training.qat import quantization_aware
from keras_efficient.training.schedules import scaled_learning_rate, warmup_cosine
from keras_efficient.training.strategy import choose_strategy, is_chief, worker_index
from keras_efficient.training.targets import with_targets
from keras_efficient.training.trainer import DetectionTrainer

BACKBONE_PREFIXES = ("stem_", "block", "normalization", "rescaling")


@dataclasses.dataclass
class DetectorTrainConfig:
    """Everything ``train_detector`` needs; JSON-serialisable (written next to the weights).

    Example::

        config = DetectorTrainConfig(train_json="data/annotations/instances_train.json",
                                     train_images="data/train", output_dir="runs/mine",
                                     model="lite0", spec_overrides={"input_size": 384},
                                     batch_size=16, epochs=50, optimizer="adamw")
        config.spec().input_size, config.peak_learning_rate()  # 384, 0.02 (0.08 per 64 images)

    ``qat=True``: quantization-aware fine-tuning of the trained detector in ``weights``
    (:mod:`keras_efficient.training.qat`); the saved detector exports to int8 without
    calibration.
    """

    train_json: str
    train_images: str
    output_dir: str
    model: str = "efficientdet-lite0"
    spec_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int = 8
    epochs: int = 10
    steps_per_epoch: int | None = None
    learning_rate: float | None = None
    warmup_epochs: float = 1.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 4e-5
    clipnorm: float | None = 10.0
    ema_decay: float | None = 0.9998
    mixed_precision: bool = False
    label_smoothing: float = 0.0
    iou_loss_weight: float = 0.0
    flip: bool = True
    scale_range: tuple[float, float] = (0.1, 2.0)
    # "letterbox" (automl's) or "stretch" (as the Task Library and MediaPipe feed phones'
    # images): recorded in the detector, which evaluation, serving and export then follow.
    resize: str = "letterbox"
    weights: str | None = None
    backbone_weights: str | None = None
    freeze_backbone: bool = False
    qat: bool = False
    on_error: str = "raise"
    seed: int = 0
    verbose: int | str = "auto"

    def spec(self) -> EfficientDetSpec:
        """The detector row with ``spec_overrides`` applied (a ``backbone`` given as a dict of
        scaling fields, as in a JSON config, becomes a custom backbone row)."""
        overrides = dict(self.spec_overrides)
        if isinstance(overrides.get("backbone"), dict):
            overrides["backbone"] = EfficientNetScaling(**overrides["backbone"])
        return get_efficientdet_spec(self.model).with_(**overrides)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> DetectorTrainConfig:
        """Read a config written by :func:`train_detector` (``train_config.json``)."""
        values = json.loads(Path(path).read_text())
        if "scale_range" in values:
            values["scale_range"] = tuple(values["scale_range"])
        return cls(**values)

    def peak_learning_rate(self) -> float:
        return self.learning_rate or scaled_learning_rate(self.batch_size)


WEIGHTS_FILE = "detector.weights.h5"
MODEL_FILE = "detector.keras"
RUN_FILES = (WEIGHTS_FILE, MODEL_FILE, "labels.txt", "labels.json", "logs")


@dataclasses.dataclass
class TrainResult:
    """The trained detector (EMA weights when enabled) and where its files are.

    Example::

        result = train_detector(config)
        result.detector, result.history["loss"], result.weights_path, result.labels_path
    """

    detector: keras.Model
    spec: EfficientDetSpec
    dataset: CocoDataset
    history: dict[str, list[float]]
    weights_path: Path
    labels_path: Path


def make_optimizer(config: DetectorTrainConfig, schedule: Any, *,
                   replicas: int = 1) -> keras.optimizers.Optimizer:
    """SGD with momentum (reference) or AdamW, with gradient clipping and weight EMA (Keras'
    optimizers with TensorFlow's fused updates: :mod:`keras_efficient.training.optimizers`).

    Keras clips each replica's share of the gradient before the all-reduce; with ``replicas``
    shares the limit is ``clipnorm / replicas`` each, so that the summed gradient stays within
    ``clipnorm`` (the same clipping as on one device when the shares are alike).

    Example::

        optimizer = make_optimizer(config, warmup_cosine(0.02, total_steps=1000, warmup_steps=50))
    """
    clipnorm = config.clipnorm / replicas if config.clipnorm else config.clipnorm
    common: dict[str, Any] = {"learning_rate": schedule, "clipnorm": clipnorm}
    if config.ema_decay:
        common.update(use_ema=True, ema_momentum=config.ema_decay)
    if config.optimizer == "sgd":
        return SGD(momentum=config.momentum, **common)
    if config.optimizer == "adamw":
        # AdamW decays weights itself; the trainer's L2 term is then switched off.
        return AdamW(weight_decay=config.weight_decay or 0.0, **common)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw'; received {config.optimizer!r}.")


def shard_records(records: Sequence[ImageRecord],
                  context: tf.distribute.InputContext) -> list[ImageRecord]:
    """The images one input pipeline (one worker) reads: every ``num_input_pipelines``-th
    record from ``input_pipeline_id`` on, so that the workers read disjoint shards of about
    the same size that together cover the dataset.

    Example::

        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
        shard_records(data.records, context)  # records 1, 3, 5, ...
    """
    return list(records)[context.input_pipeline_id::context.num_input_pipelines]


def train_detector(config: DetectorTrainConfig, *, strategy: tf.distribute.Strategy | None = None,
                   extra_callbacks: Sequence[keras.callbacks.Callback] = (),
                   overwrite: bool = False) -> TrainResult:
    """Train an EfficientDet on a COCO-format dataset; see :class:`DetectorTrainConfig`.

    Writes to ``output_dir``: ``detector.weights.h5`` (EMA weights, after every epoch),
    ``detector.keras`` (at the end: the whole detector with its spec and label map, loadable
    with ``keras.saving.load_model`` and ``safe_mode=True``),
    ``labels.txt`` / ``labels.json`` (class index -> category), ``train_config.json``,
    ``backup/`` (resume state, removed when training completes) and TensorBoard ``logs/``
    when TensorBoard is installed. Rerunning the same command after an interruption resumes;
    a folder holding a finished run, or an interrupted run of other settings, is refused unless
    ``overwrite=True`` (which removes that run first). Nothing is written before the data is
    read and the model is built. Training stops with an error, keeping the last finite
    checkpoint, on a NaN/inf loss or weights and when the loss diverges.

    Any strategy works (default: :func:`~keras_efficient.training.strategy.choose_strategy`,
    created first thing, before any other TensorFlow op), through one training loop
    (:func:`~keras_efficient.training.loop.fit_distributed`). ``batch_size`` is global: each
    of the replicas takes its share, and each worker of a multi-worker run reads its own
    shard of the images. Only the chief (worker 0) writes into ``output_dir``, which every
    worker must see at the same path to resume; the other workers write to temporary folders
    that they remove.

    Example::

        result = train_detector(DetectorTrainConfig(train_json="instances_train.json",
                                                    train_images="train/", output_dir="runs/mine"))
        same = keras.saving.load_model("runs/mine/detector.keras")  # spec, labels and weights
    """
    # First: a MultiWorkerMirroredStrategy can only be made before TensorFlow runs any op.
    strategy = strategy or choose_strategy()
    chief = is_chief(strategy)
    keras.utils.set_random_seed(config.seed)
    output = Path(config.output_dir)
    data = CocoDataset(config.train_json, config.train_images, on_error=config.on_error)
    if len(data) == 0:
        raise ValueError(f"{config.train_json} lists no usable images (skipped: "
                         f"{data.skipped or 'none'}); nothing to train on. Check the 'images' "
                         "list and the image folder.")
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"batch_size {config.batch_size} is the global batch and must divide "
                         f"evenly among the {replicas} replicas; use a multiple of {replicas}.")
    spec = config.spec()
    check_resize(config.resize)
    mode = "worker"
    if chief:
        mode = prepare_output_folder(output, dataclasses.asdict(config),
                                     weights_file=WEIGHTS_FILE, run_files=RUN_FILES,
                                     overwrite=overwrite)
    barrier(strategy)  # the others read the chief's backup only once it has been checked
    size = (spec.input_size, spec.input_size)
    anchors = generate_anchors(spec.anchor_spec(size))
    steps = config.steps_per_epoch or max(1, math.ceil(len(data) / config.batch_size))

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        batches = detection_dataset(shard_records(data.records, context), size,
                                    batch_size=context.get_per_replica_batch_size(
                                        config.batch_size),
                                    training=True, flip=config.flip,
                                    scale_range=config.scale_range,
                                    pad_value=spec.pad_value, resize=config.resize,
                                    seed=config.seed + context.input_pipeline_id)
        return with_targets(batches.repeat(), anchors, data.num_classes)

    policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with strategy.scope():
            detector = EfficientDet(spec, num_classes=data.num_classes, weights=config.weights,
                                    backbone_weights=config.backbone_weights,
                                    label_map=list(zip(data.category_ids, data.class_names,
                                                       strict=True)),
                                    resize=config.resize)
            if config.qat:
                if config.weights is None:
                    raise ValueError("qat=True fine-tunes a trained detector: pass its weights "
                                     "(weights='runs/float/detector.keras').")
                detector = quantization_aware(detector)
            if config.freeze_backbone:
                for layer in detector.layers:
                    if layer.name.startswith(BACKBONE_PREFIXES):
                        layer.trainable = False
            trainer = DetectionTrainer(
                detector, label_smoothing=config.label_smoothing,
                weight_decay=0.0 if config.optimizer == "adamw" else config.weight_decay,
                iou_weight=config.iou_loss_weight,
                anchors=anchors if config.iou_loss_weight else None)
            total = steps * config.epochs
            schedule = warmup_cosine(config.peak_learning_rate(), total,
                                     int(config.warmup_epochs * steps))
            trainer.compile(optimizer=make_optimizer(config, schedule, replicas=replicas),
                            jit_compile=False)
    finally:
        keras.config.set_dtype_policy(policy)

    # Training can start: only now is anything written into the output folder.
    # Other workers: a folder of their own in the temporary directory (those that killed
    # workers left behind are removed here).
    work = output if chief else make_staging_folder(
        Path(tempfile.gettempdir()) / f"keras-efficient-worker{worker_index(strategy)}")
    try:
        if chief:
            output.mkdir(parents=True, exist_ok=True)
            data.write_label_file(output / "labels.txt")
            write_json_atomic(output / "train_config.json", dataclasses.asdict(config))
        if mode == "resume":
            print(f"resuming the interrupted run in {output}", file=sys.stderr, flush=True)
        callbacks: list[keras.callbacks.Callback] = [
            StopOnNonFiniteLoss(),
            StopOnDivergence(),
            SafeBackupAndRestore(work / "backup", restore_dir=output / "backup"),
        ]
        if config.ema_decay:
            callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
        callbacks.append(SaveWeights(detector, work / WEIGHTS_FILE))
        if _tensorboard_available():
            callbacks.append(keras.callbacks.TensorBoard(str(work / "logs")))
        if chief:
            callbacks.append(CompileNotice())
        if config.verbose == 0 and chief:
            callbacks.append(EpochLog(config.epochs))
        callbacks.extend(extra_callbacks)
        history = fit_distributed(trainer, dataset_fn, strategy=strategy, epochs=config.epochs,
                                  steps_per_epoch=steps, callbacks=callbacks,
                                  verbose=config.verbose if chief else 0)
        if chief:
            save_model_atomic(detector, output / MODEL_FILE)
        barrier(strategy)  # the others finish once the chief's files are written
    finally:
        if not chief:
            shutil.rmtree(work, ignore_errors=True)
    return TrainResult(detector, detector.spec, data, history.history, output / WEIGHTS_FILE,
                       output / "labels.txt")


def save_model_atomic(model: keras.Model, path: Path) -> Path:
    """``model.save(path)`` through a temporary sibling and a rename (a ``.keras`` file that
    is either whole or absent).

    Example::

        save_model_atomic(detector, Path("runs/mine/detector.keras"))
    """
    with atomic_path(path) as temporary:
        model.save(temporary)
    return path


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
