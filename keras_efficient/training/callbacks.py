"""Callbacks Keras lacks: stop on a non-finite loss, save the detector atomically, progress."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import keras


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss.

    Example::

        try:
            model.fit(data, callbacks=[StopOnNonFiniteLoss()])
        except NonFiniteLossError as error:
            print(error)  # the epoch, the step and the likely causes
    """


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{os.getpid()}.{self.path.name}")
        try:
            self.target.save_weights(temporary)
            os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)


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
