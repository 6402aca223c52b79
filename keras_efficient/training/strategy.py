"""Pick a ``tf.distribute`` strategy for the devices at hand."""

from __future__ import annotations

import json
import os

import tensorflow as tf


def choose_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored when ``TF_CONFIG`` names several workers, Mirrored on several GPUs,
    the default strategy otherwise.

    Multi-worker use: start the same command on every machine with ``TF_CONFIG`` set, e.g.
    ``{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker",
    "index": 0}}`` (index 1 on the second machine); batch sizes are global. Caveats
    (TensorFlow 2.21, Keras 3): TensorFlow creates a ``MultiWorkerMirroredStrategy`` only before
    it has run any op, which ``train_detector`` has done by the time it calls this, and Keras 3's
    ``fit`` fails under that strategy (keras-team/keras#20585); see the README.

    Example::

        strategy = choose_strategy()  # MirroredStrategy on a machine with several GPUs
        train(config, strategy=strategy)
    """
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    if len(config.get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
