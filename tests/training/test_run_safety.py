"""Training state that survives NaN, divergence, interrupts and reused folders; empty data and
``--on-error skip`` fail or skip cleanly."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from keras_efficient.cli import main
from keras_efficient.training.callbacks import (
    NonFiniteLossError,
    SafeBackupAndRestore,
    StopOnDivergence,
    TrainingDivergedError,
)
from keras_efficient.training.detector import DetectorTrainConfig, train_detector
from keras_efficient.training.output_folder import prepare_output_folder
from tests.harness import TINY_OVERRIDES
from tests.harness import train_config as config


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def all_finite(path: Path) -> bool:
    arrays: list[np.ndarray] = []
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda _, item: arrays.append(item[()])
                          if isinstance(item, h5py.Dataset) else None)
    assert arrays
    return all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")


class PoisonLastStep(keras.callbacks.Callback):
    """After the last step of ``epoch`` the kernel turns NaN while the step's loss was finite:
    the weights are broken before any loss shows it."""

    def __init__(self, epoch: int, steps: int) -> None:
        super().__init__()
        self.poison_epoch, self.steps, self.epoch = epoch, steps, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.poison_epoch and batch == self.steps - 1:
            kernel = self.model.detector.get_layer("class_net_predict").pointwise_kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_non_finite_weights_are_never_saved_and_reruns_resume_or_restart(tiny_data, tmp_path,
                                                                          capsys):
    """A run stopped by NaN weights keeps only finite files; rerun as it is, it resumes from
    the finite epoch-1 backup; rerun after that backup was cut short (as a Ctrl-C during
    Keras' in-place write leaves it: the stopped run's folder, copied), it sets the backup
    aside and restarts from epoch 1."""
    settings = config(tiny_data, tmp_path / "run", epochs=3, steps_per_epoch=2)
    with pytest.raises(NonFiniteLossError, match="last finite"):
        train_detector(settings, extra_callbacks=[PoisonLastStep(1, 2)])
    run = tmp_path / "run"
    assert all_finite(run / "detector.weights.h5")
    assert all_finite(run / "backup" / "latest.weights.h5")
    assert json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"] == 1

    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    backup = cut / "backup" / "latest.weights.h5"
    data = backup.read_bytes()
    backup.write_bytes(data[: len(data) // 4])
    with pytest.warns(UserWarning, match="cannot be read"):
        restarted = train_detector(dataclasses.replace(settings, output_dir=str(cut)))
    assert len(restarted.history["loss"]) == 3  # from epoch 1 again
    assert "moved to" in capsys.readouterr().err
    [aside] = cut.glob("backup.unreadable-*")
    assert (aside / "latest.weights.h5").stat().st_size == len(data) // 4

    result = train_detector(settings)  # the stopped run as it was: resumes after epoch 1
    assert len(result.history["loss"]) == 2 and np.isfinite(result.history["loss"]).all()
    assert not (run / "backup").exists()


def test_backup_write_is_atomic(tmp_path):
    """An interrupt during the backup write leaves the previous backup whole."""
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    callback = SafeBackupAndRestore(str(tmp_path / "backup"))
    callback.set_model(model)
    callback._save_model()
    good = tmp_path / "backup" / "latest.weights.h5"
    before = sha256(good)

    def interrupted(filepath, overwrite=True):
        Path(filepath).write_bytes(b"half a file")
        raise KeyboardInterrupt

    model.save_weights = interrupted
    with pytest.raises(KeyboardInterrupt):
        callback._save_model()
    assert sha256(good) == before
    assert sorted(p.name for p in good.parent.iterdir()) == ["latest.weights.h5",
                                                            "training_metadata.json"]


def test_divergence_stops_before_the_epoch_is_saved():
    stop = StopOnDivergence(factor=100, warmup_steps=2)
    stop.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    for step, loss in enumerate([2.0, 1.5, 1.2, 1.0, 30.0]):
        stop.on_train_batch_end(step, {"loss": loss})
    with pytest.raises(TrainingDivergedError, match=r"diverged.*Lower the learning rate"):
        stop.on_train_batch_end(5, {"loss": 5e5})
    assert issubclass(TrainingDivergedError, ValueError)  # the CLI prints it, exit status 2


def test_a_loss_growing_for_epochs_warns(capsys):
    stop = StopOnDivergence(patience=3)
    with pytest.warns(UserWarning, match="grown for 3 epochs"):
        for epoch, loss in enumerate([1.0, 1.1, 1.3, 1.6]):
            stop.on_epoch_end(epoch, {"loss": loss})
    assert "warning:" in capsys.readouterr().err


def test_reused_folders_are_refused_unless_overwrite(tiny_data, tiny_run, tmp_path, capsys):
    # A copy of the shared finished run (tests/conftest.py), with the settings that made it.
    shutil.copytree(tiny_run.weights_path.parent, tmp_path, dirs_exist_ok=True)
    settings = dataclasses.replace(DetectorTrainConfig.from_json(tmp_path / "train_config.json"),
                                   output_dir=str(tmp_path))
    weights = tmp_path / "detector.weights.h5"
    finished = sha256(weights)
    with pytest.raises(ValueError, match=r"finished training run.*--overwrite"):
        train_detector(settings)  # the same command again would silently retrain
    other = dataclasses.replace(settings, model="efficientdet-lite1", batch_size=2)
    with pytest.raises(ValueError, match="finished training run"):
        train_detector(other)
    assert sha256(weights) == finished  # nothing touched
    # An interrupted run of other settings: refused, naming what differs.
    (tmp_path / "backup").mkdir()
    with pytest.raises(ValueError, match=r"another configuration \(batch_size: 4 -> 2"):
        prepare_output_folder(tmp_path, dataclasses.asdict(other),
                              weights_file="detector.weights.h5", run_files=())
    shutil.rmtree(tmp_path / "backup")
    # --overwrite replaces it.
    overrides = dict(TINY_OVERRIDES)
    overrides["backbone"] = dataclasses.asdict(overrides["backbone"])
    cfg = tmp_path.parent / f"{tmp_path.name}.json"
    cfg.write_text(json.dumps({"spec_overrides": overrides, "batch_size": 4, "verbose": 0,
                               "ema_decay": None, "scale_range": [0.8, 1.25]}))
    argv = ["train", "--config", str(cfg), "--train-json", str(tiny_data.train_json),
            "--train-images", str(tiny_data.train_images_dir), "--output-dir", str(tmp_path),
            "--epochs", "1", "--steps-per-epoch", "1"]
    assert main(argv) == 2
    assert "finished training run" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert sha256(weights) != finished


def test_empty_data_fails_before_writing_anything(tmp_path, capsys):
    annotations = tmp_path / "empty.json"
    annotations.write_text(json.dumps({"images": [], "annotations": [],
                                       "categories": [{"id": 1, "name": "a"}]}))
    out = tmp_path / "run"
    assert main(["train", "--train-json", str(annotations), "--train-images", str(tmp_path),
                 "--output-dir", str(out)]) == 2
    assert "no usable images" in capsys.readouterr().err
    assert not out.exists()
    assert main(["eval", "--weights", str(annotations), "--gt-json", str(annotations),
                 "--images", str(tmp_path)]) == 2
    assert "No images to evaluate" in capsys.readouterr().err


def test_on_error_skip_for_train_and_eval(tiny_data, tiny_run, tmp_path, capsys):
    images = tmp_path / "val"
    shutil.copytree(tiny_data.val_images_dir, images)
    gt = json.loads(Path(tiny_data.val_json).read_text())
    (images / gt["images"][0]["file_name"]).unlink()  # one image is missing
    gt_json = tmp_path / "val.json"
    gt_json.write_text(json.dumps(gt))
    run = tiny_run.weights_path.parent  # the shared finished run (tests/conftest.py)
    args = ["eval", "--train-dir", str(run), "--gt-json", str(gt_json),
            "--images", str(images)]
    assert main(args) == 2
    assert gt["images"][0]["file_name"] in capsys.readouterr().err
    assert main([*args, "--on-error", "skip", "--output", str(tmp_path / "m.json")]) == 0
    assert "skipped" in capsys.readouterr().err
    assert json.loads((tmp_path / "m.json").read_text())["num_images"] == len(gt["images"]) - 1
    from keras_efficient.cli import build_parser

    parsed = build_parser().parse_args(["train", "--on-error", "skip", "--train-json", "x"])
    assert parsed.on_error == "skip"
