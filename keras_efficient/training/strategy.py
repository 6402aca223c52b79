"""Pick a ``tf.distribute`` strategy for the devices at hand, and the multi-worker facts the
training loop needs (which worker this is, whether it writes the run's files).

A ``MultiWorkerMirroredStrategy`` can only be created before TensorFlow has run any op
("Collective ops must be configured at program startup"), and only once per process: the
training entry points create it first thing, and :func:`choose_strategy` keeps the one it made.
"""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf

STRATEGY_KINDS = ("auto", "default", "mirrored", "multi-worker")
CONNECT_TIMEOUT = 300.0
# How long a worker may stop sending heartbeats before the others give up on it (a SIGKILLed
# worker makes the rest fail after this, instead of waiting in an all-reduce for ever).
HEARTBEAT_TIMEOUT = 10.0

_multi_worker: tf.distribute.MultiWorkerMirroredStrategy | None = None


class ClusterConnectionError(ConnectionError):
    """A worker could not reach the others of its ``TF_CONFIG`` cluster in time.

    Example::

        try:
            strategy = choose_strategy(connect_timeout=60)
        except ClusterConnectionError as error:
            print(error)  # names this worker, the addresses and TF_CONFIG
    """


def tf_config() -> dict[str, Any]:
    """The ``TF_CONFIG`` environment variable, parsed (``{}`` when unset), or a clear error.

    Example::

        tf_config()["cluster"]["worker"]  # ["host1:12345", "host2:12345"]
    """
    raw = os.environ.get("TF_CONFIG", "") or "{}"
    try:
        config = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw!r}") from error
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object; received {raw!r}")
    return config


def choose_strategy(kind: str = "auto", *,
                    connect_timeout: float = CONNECT_TIMEOUT) -> tf.distribute.Strategy:
    """The strategy for ``kind``: ``"auto"`` is MultiWorkerMirrored when ``TF_CONFIG`` names
    several workers, Mirrored on several GPUs, the default strategy otherwise; ``"default"``,
    ``"mirrored"`` (all local GPUs, or the CPU) and ``"multi-worker"`` force one.

    Multi-worker use: start the same command on every machine with ``TF_CONFIG`` set, e.g.
    ``{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker",
    "index": 0}}`` (index 1 on the second machine; worker 0 is the chief). Batch sizes are
    global. Call this before any other TensorFlow op (``train_detector`` does so first thing);
    a worker that cannot reach the others within ``connect_timeout`` seconds raises
    :class:`ClusterConnectionError` naming the addresses and ``TF_CONFIG``.

    Example::

        strategy = choose_strategy()  # MirroredStrategy on a machine with several GPUs
        train(config, strategy=strategy)
    """
    if kind not in STRATEGY_KINDS:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGY_KINDS)}; received "
                         f"{kind!r}.")
    workers = tf_config().get("cluster", {}).get("worker", [])
    if kind == "multi-worker" or (kind == "auto" and len(workers) > 1):
        return multi_worker_strategy(connect_timeout=connect_timeout)
    if kind == "mirrored" or (kind == "auto"
                              and len(tf.config.list_logical_devices("GPU")) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def multi_worker_strategy(*, connect_timeout: float = CONNECT_TIMEOUT
                          ) -> tf.distribute.MultiWorkerMirroredStrategy:
    """This process's ``MultiWorkerMirroredStrategy`` (made once, then reused), with bounded
    waits: registering with the cluster fails after ``connect_timeout`` seconds, and a worker
    that stops answering for ``HEARTBEAT_TIMEOUT`` seconds fails the others.

    Example::

        strategy = multi_worker_strategy(connect_timeout=120)  # first thing in the program
    """
    global _multi_worker
    if _multi_worker is not None:
        return _multi_worker
    config = tf_config()
    cluster = config.get("cluster", {})
    task = config.get("task", {})
    if cluster and task.get("type", "worker") in ("worker", "chief"):
        _configure_coordination(cluster, connect_timeout)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        if "program startup" not in str(error):
            raise
        raise RuntimeError(
            "A MultiWorkerMirroredStrategy must be created before TensorFlow runs any op, and "
            "this program already ran some. Call keras_efficient.training.strategy."
            "choose_strategy() (or create the strategy) first thing in the program and pass "
            "it to train(config, strategy=...), or use the `keras-efficient train` command."
        ) from error
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as error:
        addresses = [address for job in cluster.values() for address in job]
        raise ClusterConnectionError(
            f"{task.get('type', 'worker')} {task.get('index', 0)} could not reach the other "
            f"workers within {connect_timeout:g} s (cluster {', '.join(addresses)}; the chief "
            f"is {addresses[0] if addresses else 'not listed'}). Start every worker with the "
            "same cluster and its own task index, and check the host names, ports and "
            f"firewalls. TF_CONFIG={os.environ.get('TF_CONFIG', '')} ({error.message.strip()})"
        ) from error
    _multi_worker = strategy
    return strategy


def _configure_coordination(cluster: dict[str, list[str]], connect_timeout: float) -> None:
    # MultiWorkerMirroredStrategy configures TensorFlow's coordination service itself, with
    # waits of an hour; configured first, with these timeouts, it keeps ours (no public API).
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    jobs = [coordination_config_pb2.CoordinatedJob(name=name, num_tasks=len(cluster[name]))
            for name in ("chief", "worker") if name in cluster]
    leader = "chief" if "chief" in cluster else "worker"
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=f"/job:{leader}/replica:0/task:0",
        coordinated_jobs=jobs, cluster_register_timeout_in_ms=int(connect_timeout * 1000),
        heartbeat_timeout_in_ms=int(HEARTBEAT_TIMEOUT * 1000))


def worker_index(strategy: tf.distribute.Strategy) -> int:
    """This worker's index in its cluster (0 without one).

    Example::

        worker_index(tf.distribute.get_strategy())  # 0
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_id = getattr(resolver, "task_id", None)
    return int(task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this worker writes the run's files (checkpoints, weights, labels, logs): the only
    worker, or worker 0 (the chief) of a cluster.

    Example::

        is_chief(tf.distribute.get_strategy())  # True
    """
    return bool(strategy.extended.should_checkpoint)
