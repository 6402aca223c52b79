"""Callbacks Keras lacks: stop on a non-finite or diverging loss, save weights and the resume
backup atomically and only when finite, progress."""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_efficient.files import atomic_path, write_json_atomic


def non_finite_count(variables: Iterable[Any]) -> int:
    """How many of ``variables`` (Keras variables or arrays) hold a NaN or infinite value.

    Example::

        non_finite_count(model.weights)  # 0 for a healthy model
    """
    count = 0
    for variable in variables:
        value = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            count += 1
    return count


class NonFiniteLossError(FloatingPointError, ValueError):
    """Training produced a NaN or infinite loss.

    Example::

        try:
            model.fit(data, callbacks=[StopOnNonFiniteLoss()])
        except NonFiniteLossError as error:
            print(error)  # the epoch, the step and the likely causes
    """


class TrainingDivergedError(NonFiniteLossError):
    """The loss grew far above its best value: training diverged (the checkpoints on disk are
    from before the divergence).

    Example::

        model.fit(data, callbacks=[StopOnDivergence(factor=100)])  # raises TrainingDivergedError
    """


class StopOnDivergence(keras.callbacks.Callback):
    """Stop when the loss rises ``factor`` times above the lowest loss seen so far; warn when
    the epoch loss grew ``patience`` epochs in a row.

    The loss Keras reports at a batch is the epoch's running mean, so single noisy batches do
    not trigger it; the first ``warmup_steps`` batches only set the reference. Raising before
    the epoch ends keeps the divergence out of every checkpoint.

    Example::

        model.fit(data, epochs=50, callbacks=[StopOnDivergence(), SaveWeights(model, path)])
    """

    def __init__(self, factor: float = 100.0, patience: int = 3, warmup_steps: int = 3) -> None:
        super().__init__()
        self.factor = factor
        self.patience = patience
        self.warmup_steps = warmup_steps
        self.best = math.inf
        self.steps = 0
        self.epoch = 0
        self.epoch_losses: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or not math.isfinite(float(loss)):
            return
        loss = float(loss)
        self.steps += 1
        if self.steps > self.warmup_steps and loss > self.factor * self.best:
            self.model.stop_training = True
            raise TrainingDivergedError(
                f"Training diverged: the loss rose to {loss:.4g} at epoch {self.epoch + 1}, "
                f"step {batch + 1}, {loss / self.best:.0f} times its lowest value so far "
                f"({self.best:.4g}). Lower the learning rate (or lengthen the warm-up) and "
                "retrain; the checkpoints on disk are from the epochs before.")
        self.best = min(self.best, loss)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        self.epoch_losses.append(float(loss))
        recent = self.epoch_losses[-(self.patience + 1):]
        if len(recent) == self.patience + 1 and all(
                later > earlier for earlier, later in itertools.pairwise(recent)):
            message = (f"The training loss has grown for {self.patience} epochs in a row "
                       f"({', '.join(f'{v:.4g}' for v in recent)}): the learning rate may be "
                       "too high; the run goes on, but check it.")
            warnings.warn(message, stacklevel=2)
            print(f"warning: {message}", file=sys.stderr, flush=True)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop at the first NaN/inf loss with a message naming the step and the likely causes.

    Raising (rather than ``stop_training``) keeps the epoch-end callbacks from writing a
    checkpoint of the broken weights: the last good checkpoint stays intact.

    Example::

        model.fit(data, epochs=10, callbacks=[StopOnNonFiniteLoss()])
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"The loss became {float(loss)} at epoch {self.epoch + 1}, step {batch + 1}. "
                "Likely causes: a learning rate too high for this batch size (lower it or "
                "lengthen the warm-up), boxes with zero or negative size or NaN coordinates in "
                "the annotations (validate the dataset), or float16 overflow (turn mixed "
                "precision off). The last checkpoint written before this step is intact."
            )


class SaveWeights(keras.callbacks.Callback):
    """Write a model's weights to ``path`` after every epoch, atomically (temp + rename).

    Place it after ``SwapEMAWeights(swap_on_epoch=True)`` so that the EMA copy is saved.

    Example::

        callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
                     SaveWeights(detector, "runs/mine/detector.weights.h5")]
    """

    def __init__(self, target: keras.Model, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.target = target
        self.path = Path(path)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        bad = non_finite_count(self.target.weights)
        if bad:
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"After epoch {epoch + 1}, {bad} of {len(self.target.weights)} weight arrays "
                f"hold NaN or infinite values; they were not saved, so {self.path} keeps the "
                "last finite weights. Lower the learning rate (or keep clipnorm on) and turn "
                "mixed precision off if it is on.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as temporary:
            self.target.save_weights(temporary)


# The file names keras.callbacks.BackupAndRestore gives its backup.
WEIGHTS_NAME = "latest.weights.h5"
METADATA_NAME = "training_metadata.json"


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that never leaves a half-written or non-finite backup.

    Keras writes ``latest.weights.h5`` in place, so an interrupt during the write leaves a file
    that cannot be loaded. Here the backup is written to a temporary name and renamed, and
    skipped (with an error) when the model or optimizer holds a NaN/inf. A backup that cannot
    be read (from an older run) is set aside with a warning and training starts over.

    ``restore_dir`` (default ``backup_dir``) is where the state is restored from: the other
    workers of a multi-worker run restore the chief's backup and write theirs to a temporary
    ``backup_dir`` of their own (the Keras/TensorFlow multi-worker convention).

    Example::

        model.fit(data, epochs=10, callbacks=[SafeBackupAndRestore("runs/mine/backup")])
        SafeBackupAndRestore("/tmp/worker1/backup", restore_dir="runs/mine/backup")  # worker 1
    """

    def __init__(self, backup_dir: str | os.PathLike[str],
                 restore_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(str(backup_dir), **kwargs)
        self.restore_dir = str(restore_dir or backup_dir)

    def _state(self) -> list[Any]:
        optimizer = getattr(self.model, "optimizer", None)
        return list(self.model.weights) + list(getattr(optimizer, "variables", []) or [])

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.restore_dir != self.backup_dir:  # restore another worker's backup
            self._weights_path = os.path.join(self.restore_dir, WEIGHTS_NAME)
            self._training_metadata_path = os.path.join(self.restore_dir, METADATA_NAME)
            try:
                super().on_train_begin(logs)
            finally:
                self._weights_path = os.path.join(self.backup_dir, WEIGHTS_NAME)
                self._training_metadata_path = os.path.join(self.backup_dir, METADATA_NAME)
            return
        weights = Path(self._weights_path)
        if weights.exists() and not _readable_h5(weights):
            aside = Path(self.backup_dir).with_name(
                f"{Path(self.backup_dir).name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(self.backup_dir, aside)
            message = (f"The resume backup {weights} cannot be read (it was cut short, e.g. by "
                       f"an interrupt while it was written); it was moved to {aside} and "
                       "training starts again from epoch 1. Delete that folder once done.")
            warnings.warn(message, stacklevel=2)
            print(f"warning: {message}", file=sys.stderr, flush=True)
        super().on_train_begin(logs)

    def _save_model(self) -> None:
        state = self._state()
        bad = non_finite_count(state)
        if bad:
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"{bad} of {len(state)} model/optimizer arrays hold NaN or infinite values at "
                f"epoch {self._current_epoch}; the resume backup in {self.backup_dir} was not "
                "overwritten and holds the last finite state. Lower the learning rate (or keep "
                "clipnorm on) and turn mixed precision off if it is on.")
        Path(self.backup_dir).mkdir(parents=True, exist_ok=True)
        with atomic_path(self._weights_path) as temporary:
            self.model.save_weights(filepath=str(temporary), overwrite=True)
        write_json_atomic(self._training_metadata_path,
                          {"epoch": self._current_epoch, "batch": self._last_batch_seen})


def _readable_h5(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            handle.visit(lambda name: None)
    except (OSError, RuntimeError, ValueError):
        return False
    return True


class EpochLog(keras.callbacks.Callback):
    """One line per epoch with the losses and the time taken (for non-interactive logs).

    Example::

        model.fit(data, epochs=25, verbose=0, callbacks=[EpochLog(25)])  # "epoch 1/25 (12s) ..."
    """

    def __init__(self, epochs: int, stream: Any = None) -> None:
        super().__init__()
        self.epochs = epochs
        self.stream = stream or sys.stdout
        self.started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = " ".join(f"{k}={float(v):.4f}" for k, v in sorted((logs or {}).items())
                          if isinstance(v, int | float))
        print(f"epoch {epoch + 1}/{self.epochs} ({time.perf_counter() - self.started:.0f}s) "
              f"{values}", file=self.stream, flush=True)


class CompileNotice(keras.callbacks.Callback):
    """Say, before a run's first step, that it traces and optimizes the training graph, and then
    how long that took, so that the silent first step is explained while it happens.

    Example::

        model.fit(data, callbacks=[CompileNotice()])
        # compiling the training step (the first step traces and optimizes the graph, ...)...
        # training step compiled and run once in 21.3 s
    """

    def __init__(self, stream: Any = None, clock: Any = time.perf_counter) -> None:
        super().__init__()
        self.stream = stream or sys.stdout
        self.clock = clock
        self.started: float | None = None
        self.seconds: float | None = None

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.started is None:
            print("compiling the training step (the first step traces and optimizes the "
                  "graph, once per run)...", file=self.stream, flush=True)
            self.started = self.clock()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.started is not None and self.seconds is None:
            self.seconds = self.clock() - self.started
            print(f"training step compiled and run once in {self.seconds:.1f} s",
                  file=self.stream, flush=True)
