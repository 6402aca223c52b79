"""Training on several workers (MultiWorkerMirroredStrategy), with real worker processes on
127.0.0.1: the same result as one process, disjoint shards, resume after a SIGKILL, a clear and
bounded failure when the other workers cannot be reached."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.data.coco import CocoDataset
from keras_efficient.data.pipeline import detection_dataset
from keras_efficient.training.api import train
from keras_efficient.training.detector import DetectorTrainConfig, shard_records
from tests.harness import TINY_OVERRIDES

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 150  # seconds any one worker process may take before the test fails


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


def environment(tmp_path: Path, cluster: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    # One thread per worker: two workers share this machine's cores.
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(tmp_path),
               CUDA_VISIBLE_DEVICES="", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="2")
    if cluster is not None:
        env["TF_CONFIG"] = cluster
    return env


@contextlib.contextmanager
def processes(deadline: float = 2 * TIMEOUT) -> Iterator[list[subprocess.Popen]]:
    """Started processes, all killed after ``deadline`` seconds (so that no read can block
    for ever) and on the way out, whatever happened."""
    started: list[subprocess.Popen] = []

    def kill_all() -> None:
        for process in started:
            if process.poll() is None:
                process.kill()

    watchdog = threading.Timer(deadline, kill_all)
    watchdog.start()
    try:
        yield started
    finally:
        watchdog.cancel()
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            if process.stdout is not None:
                process.stdout.close()


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = TIMEOUT) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def settings(images_json: Path, images: Path, out: Path, **changes) -> dict:
    overrides = dict(TINY_OVERRIDES)
    # No stochastic depth: its random masks are drawn per worker, unlike one process's.
    overrides["backbone"] = {**dataclasses.asdict(overrides["backbone"]), "drop_connect": 0.0}
    values = {"train_json": str(images_json), "train_images": str(images), "output_dir": str(out),
              "spec_overrides": overrides, "batch_size": 4, "epochs": 2, "steps_per_epoch": 2,
              "learning_rate": 0.002, "optimizer": "sgd", "ema_decay": 0.9, "flip": False,
              "scale_range": (1.0, 1.0), "verbose": 0}
    values.update(changes)
    return values


# Trains through training.api.train (the strategy chosen from TF_CONFIG, as a user would) and
# prints the per-epoch losses and a digest of the final weights.
TRAIN_SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    from keras_efficient.training.api import train
    from keras_efficient.training.detector import DetectorTrainConfig
    values = json.loads(sys.argv[1])
    values["scale_range"] = tuple(values["scale_range"])
    result = train(DetectorTrainConfig(**values))
    weights = result.detector.get_weights()
    digest = hashlib.sha256(b"".join(w.tobytes() for w in weights)).hexdigest()
    print("RESULT", json.dumps({"losses": result.history["loss"], "digest": digest}),
          flush=True)
""")


def result_of(output: str) -> dict:
    return json.loads(output.split("RESULT", 1)[1].strip().splitlines()[0])


def identical_images(data, folder: Path, count: int) -> Path:
    """A COCO json listing one image ``count`` times: any split into batches then holds the
    same images, so one process and two workers see the same global batch."""
    source = json.loads(data.train_json.read_text())
    image = source["images"][0]
    annotations = [a for a in source["annotations"] if a["image_id"] == image["id"]]
    images, kept = [], []
    for number in range(1, count + 1):
        images.append({**image, "id": number})
        kept += [{**a, "id": number * 100 + i, "image_id": number}
                 for i, a in enumerate(annotations)]
    path = folder / "same.json"
    path.write_text(json.dumps({**source, "images": images, "annotations": kept}))
    return path


def test_two_workers_match_one_process_with_the_same_global_batch(tiny_data, tmp_path):
    """Two workers (2 x 4 images) against one process (8 images), SGD with momentum, EMA and
    clipping, no warm-up, 2 epochs of 2 steps: the workers end with bit-identical weights; the
    first epoch's loss (before and after one update) agrees within rtol 1e-3, the second's
    within 2e-2.

    The images are all one image, unaugmented and without stochastic depth, so both runs see
    the same global batch and even BatchNorm (whose statistics are per replica) computes the
    same. What differs is float32 rounding: BatchNorm moments over 4 instead of 8 images and
    the gradients summed in another order give a first loss 5e-6 apart and gradients ~1e-4
    apart (relative; nearly all of it in biases and BatchNorm offsets followed by another
    BatchNorm, whose exact gradient is zero). This tiny detector on one repeated image is
    chaotic, though: in one process, scaling its initial weights by (1 + 1e-5 noise) moves the
    4th step's loss by 3.6% (measured). So the loss after one update is compared tightly, the
    later one loosely; a wrong gradient scale (a factor of 2) fails both."""
    same = identical_images(tiny_data, tmp_path, 8)
    ports = free_ports(2)
    with processes() as started:
        for index in range(2):
            values = settings(same, tiny_data.train_images_dir, tmp_path / "multi", batch_size=8,
                              warmup_epochs=0.0)
            started.append(start([sys.executable, "-c", TRAIN_SCRIPT, json.dumps(values)],
                                 environment(tmp_path, tf_config(ports, index))))
        single = settings(same, tiny_data.train_images_dir, tmp_path / "single", batch_size=8,
                          warmup_epochs=0.0)
        single["scale_range"] = tuple(single["scale_range"])
        alone = train(DetectorTrainConfig(**single))  # one process, in this one, meanwhile
        chief, worker = (result_of(finish(process)) for process in started)
    assert chief["digest"] == worker["digest"]  # the workers hold the very same weights
    losses, reference = chief["losses"], alone.history["loss"]
    assert len(losses) == 2 and np.isfinite(losses).all()
    np.testing.assert_allclose(losses[0], reference[0], rtol=1e-3)
    np.testing.assert_allclose(losses[1], reference[1], rtol=2e-2)
    assert (tmp_path / "multi" / "detector.keras").exists()  # written by the chief
    assert not list(tmp_path.glob(".keras-efficient-worker*"))  # worker 1 cleaned up


def test_each_worker_reads_a_disjoint_half_of_the_images(tiny_data):
    data = CocoDataset(tiny_data.train_json, tiny_data.train_images_dir)
    seen = []
    for index in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index,
                                             num_replicas_in_sync=2)
        records = shard_records(data.records, context)
        batches = detection_dataset(records, (64, 64), batch_size=1, training=True, seed=index)
        seen.append({int(batch["image_id"][0]) for batch in batches})
    assert len(seen[0]) == len(seen[1]) == len(data) // 2
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(data.image_ids)


def cli_train(values: dict) -> list[str]:
    config = {k: v for k, v in values.items()
              if k not in ("train_json", "train_images", "output_dir")}
    path = Path(values["output_dir"]).with_suffix(".json")
    path.write_text(json.dumps(config))
    return [sys.executable, "-m", "keras_efficient.cli", "train", "--config", str(path),
            "--train-json", values["train_json"], "--train-images", values["train_images"],
            "--output-dir", values["output_dir"], "--connect-timeout", "60"]


def test_killed_worker_then_restarted_job_resumes_from_the_last_epoch(tiny_data, tmp_path):
    out = tmp_path / "run"
    command = cli_train(settings(tiny_data.train_json, tiny_data.train_images_dir, out,
                                 epochs=3, steps_per_epoch=4, ema_decay=None))
    ports = free_ports(2)
    envs = [environment(tmp_path, tf_config(ports, index)) for index in range(2)]
    with processes() as started:
        chief, worker = (start(command, env) for env in envs)
        started += [chief, worker]
        assert chief.stdout is not None
        lines = []
        for line in chief.stdout:  # epoch 1 is checkpointed: kill worker 1 during epoch 2
            lines.append(line)
            if line.startswith("epoch 1/3"):
                worker.send_signal(signal.SIGKILL)
                break
        assert worker.wait(timeout=30) == -signal.SIGKILL, "".join(lines[-20:])
        killed = time.monotonic()
        rest, _ = chief.communicate(timeout=TIMEOUT)
        assert chief.returncode != 0, rest[-3000:]  # the chief notices instead of hanging
        assert time.monotonic() - killed < 60
        assert "epoch 2/3" not in rest
    backup = out / "backup"
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    with h5py.File(backup / "latest.weights.h5", "r") as handle:  # whole, not half-written
        handle.visit(lambda name: None)
    assert not [p.name for p in backup.iterdir() if p.name.startswith(".")]
    assert list(tmp_path.glob(".keras-efficient-worker1.staging-*"))  # the killed one's

    with processes() as started:
        started += [start(command, env) for env in envs]
        output = finish(started[0])
        finish(started[1])
    epochs = [line.split()[1] for line in output.splitlines() if line.startswith("epoch ")]
    assert epochs == ["2/3", "3/3"], output[-3000:]
    assert "resuming the interrupted run" in output
    assert (out / "detector.weights.h5").exists() and (out / "detector.keras").exists()
    assert not backup.exists()
    assert not list(tmp_path.glob(".keras-efficient-worker*"))  # removed by the restarted one


def test_a_worker_that_cannot_reach_the_chief_fails_in_bounded_time(tiny_data, tmp_path):
    chief_port, own_port = free_ports(2)  # nobody listens on the chief's port
    values = settings(tiny_data.train_json, tiny_data.train_images_dir, tmp_path / "run")
    command = [*cli_train(values)[:-2], "--connect-timeout", "5"]
    with processes() as started:
        started.append(start(command, environment(tmp_path, tf_config([chief_port, own_port],
                                                                      1))))
        began = time.monotonic()
        output, _ = started[0].communicate(timeout=TIMEOUT)
    assert started[0].returncode == 2, output[-3000:]
    assert time.monotonic() - began < 60
    assert f"127.0.0.1:{chief_port}" in output and "TF_CONFIG=" in output
    assert "could not reach the other workers within 5 s" in output
    assert not (tmp_path / "run").exists()


def test_unknown_strategy_kind_is_a_clear_error():
    from keras_efficient.training.strategy import choose_strategy

    with pytest.raises(ValueError, match="multi-worker"):
        choose_strategy("bogus")
