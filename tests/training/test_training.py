"""train_detector: learns, stops on NaN keeping the last checkpoint, resumes, distributes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_efficient.training.callbacks import NonFiniteLossError
from keras_efficient.training.detector import train_detector
from tests.harness import train_config as config

ROOT = Path(__file__).resolve().parents[2]


def test_training_writes_weights_labels_and_reduces_loss(tiny_run):
    """The shared run (``tests/conftest.py``: 4 epochs of 4 steps) is this test's training."""
    folder = tiny_run.weights_path.parent
    losses = tiny_run.history["loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert tiny_run.weights_path.exists()
    assert tiny_run.labels_path.read_text().split() == ["circle", "square", "triangle"]
    saved = json.loads((folder / "train_config.json").read_text())
    assert saved["batch_size"] == 4 and saved["epochs"] == 4
    assert not (folder / "backup").exists()  # removed once training completes


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class PoisonAtEpoch(keras.callbacks.Callback):
    """Put a NaN into one kernel when the given epoch starts."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.poison_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.poison_epoch:
            kernel = self.model.detector.get_layer("class_net_predict").pointwise_kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_nan_loss_stops_with_a_clear_error_and_keeps_last_checkpoint(tiny_data, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1.*learning rate"):
        train_detector(config(tiny_data, tmp_path, epochs=2, steps_per_epoch=2),
                       extra_callbacks=[PoisonAtEpoch(1)])
    weights = tmp_path / "detector.weights.h5"
    before = sha256(weights)
    from keras_efficient.models.efficientdet import EfficientDet
    from tests.harness import tiny_spec

    detector = EfficientDet(tiny_spec(), num_classes=3, weights=str(weights))
    assert all(np.isfinite(w.numpy()).all() for w in detector.weights)
    assert sha256(weights) == before


SCRIPT = textwrap.dedent("""
    import sys, time, json
    import tensorflow as tf
    if sys.argv[2] == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_efficient.training.detector import DetectorTrainConfig, train_detector
    values = json.loads(sys.argv[1])
    values["scale_range"] = tuple(values["scale_range"])
    from tests.harness import TINY_OVERRIDES
    values["spec_overrides"] = dict(TINY_OVERRIDES)

    class Slow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(float(sys.argv[3]))

    strategy = None
    if sys.argv[2] == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = train_detector(DetectorTrainConfig(**values), strategy=strategy,
                            extra_callbacks=[Slow()])
    print("LOSSES", json.dumps(result.history["loss"]), flush=True)
""")


def run_script(values: dict, mode: str, delay: float, **kwargs) -> subprocess.Popen:
    values = {k: v for k, v in values.items() if k != "spec_overrides"}  # set by the script
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(values), mode, str(delay)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_reduces_loss(tiny_data, tmp_path):
    """Slow tier (a process of its own, 56 CPU-seconds measured): everything of ours that runs
    with two replicas (``fit_distributed``, each replica's share of the global batch and of
    the loss, the all-reduced normaliser, clipping per replica) runs in the default tier in
    test_multi_worker.py::test_two_workers_match_one_process_with_the_same_global_batch,
    which also checks the result against one process."""
    values = config(tiny_data, tmp_path, epochs=4, steps_per_epoch=4).__dict__
    process = run_script(values, "mirrored", 0.0)
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-3000:]
    losses = json.loads(output.split("LOSSES", 1)[1].strip().splitlines()[0])
    assert len(losses) == 4 and losses[-1] < losses[0]


@pytest.mark.slow
def test_killed_training_resumes_from_the_last_checkpoint(tiny_data, tmp_path):
    """Slow tier (two processes, 58 s in the tier's timing): in the default tier a SIGKILL and a
    restart that resumes from the last epoch run in
    test_multi_worker.py::test_killed_worker_then_restarted_job_resumes_from_the_last_epoch,
    and an in-process resume in
    test_run_safety.py::test_non_finite_weights_are_never_saved_and_the_rerun_resumes."""
    values = config(tiny_data, tmp_path, epochs=3, steps_per_epoch=6).__dict__
    first = run_script(values, "default", 0.5)
    lines: list[str] = []
    deadline = time.monotonic() + 900
    assert first.stdout is not None
    for line in first.stdout:  # epoch 1 done (checkpointed), then kill mid-epoch 2
        lines.append(line)
        if line.startswith("epoch 1/3"):
            time.sleep(1.5)
            first.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(lines[-20:])
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert (tmp_path / "backup").exists()

    second = run_script(values, "default", 0.0)
    output, _ = second.communicate(timeout=900)
    assert second.returncode == 0, output[-3000:]
    epochs = [line.split()[1] for line in output.splitlines() if line.startswith("epoch ")]
    assert epochs == ["2/3", "3/3"], output[-3000:]
    assert (tmp_path / "detector.weights.h5").exists()
    assert not (tmp_path / "backup").exists()


def test_mixed_precision_training_runs_and_restores_the_policy(tiny_data, tmp_path, capsys):
    before = keras.config.dtype_policy().name
    result = train_detector(config(tiny_data, tmp_path, epochs=1, steps_per_epoch=2,
                                   mixed_precision=True))
    printed = capsys.readouterr().out  # train_detector's CompileNotice, around the first step
    assert printed.count("compiling the training step") == 1
    assert printed.count("training step compiled and run once in") == 1
    assert result.detector.get_layer("class_net_conv0").compute_dtype == "float16"
    assert np.isfinite(result.history["loss"]).all()
    assert keras.config.dtype_policy().name == before
