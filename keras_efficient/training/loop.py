"""``fit`` for any ``tf.distribute`` strategy, multi-worker included: one code path for one
device, several GPUs and several machines.

Keras 3's ``fit`` fails under ``MultiWorkerMirroredStrategy`` (its first batch goes through
``strategy.reduce`` as ``PerReplica`` data, keras-team/keras#20585), and it distributes a
dataset by auto-sharding, where every worker reads every image. Here each worker builds its own
input pipeline over its own shard (``distribute_datasets_from_function``), Keras' own
``train_step`` runs under ``strategy.run`` (the same loss, loss scaling, clipping, EMA and
schedule as ``fit``; the optimizer all-reduces the gradients), and the callbacks are driven the
way ``fit`` drives them, so ``BackupAndRestore``, ``SwapEMAWeights``, ``TensorBoard`` and ours
work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf


def fit_distributed(model: keras.Model,
                    dataset_fn: Callable[[tf.distribute.InputContext], tf.data.Dataset], *,
                    strategy: tf.distribute.Strategy, epochs: int, steps_per_epoch: int,
                    callbacks: Sequence[keras.callbacks.Callback] = (),
                    verbose: int | str = "auto") -> keras.callbacks.History:
    """Train a compiled ``model`` (made in ``strategy.scope()``) like ``model.fit``.

    ``dataset_fn(input_context)`` returns this worker's endless dataset of per-replica batches
    (``input_context.get_per_replica_batch_size(global_batch)``), reading its own shard
    (``input_context.input_pipeline_id`` of ``num_input_pipelines``). The logs passed to the
    callbacks are the running means over all replicas, the same on every worker. Every worker
    must run the same callbacks (a callback's collective op would wait for the others).
    Returns the ``History``.

    Example::

        def dataset_fn(context):
            return batches(shard=context.input_pipeline_id, of=context.num_input_pipelines,
                           batch_size=context.get_per_replica_batch_size(64)).repeat()

        history = fit_distributed(trainer, dataset_fn, strategy=strategy, epochs=10,
                                  steps_per_epoch=100, callbacks=[EpochLog(10)], verbose=0)
    """
    with strategy.scope():
        # Optimizer variables cannot be created inside the traced, distributed step.
        model.optimizer.build(model.trainable_variables)
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))

    @tf.function(reduce_retracing=True)
    def train_step(iterator: Any) -> dict[str, Any]:
        outputs = strategy.run(model.train_step, args=(next(iterator),))
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in outputs.items()}

    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=verbose != 0, verbose=verbose,
        epochs=epochs, steps=steps_per_epoch, model=model)
    model.stop_training = False
    callback_list.on_train_begin()
    # BackupAndRestore tells fit where to resume through this attribute; so it tells us.
    initial_epoch = getattr(model, "_initial_epoch", None) or 0
    model._initial_epoch = None
    check_same_on_all_workers(
        strategy, initial_epoch, "the epoch to resume from",
        hint="They must all read the chief's resume backup, so the output folder has to be one "
             "folder shared by every worker (a network file system or a bucket mounted at the "
             "same path).")
    logs: dict[str, Any] = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            logs = train_step(iterator)
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        callback_list.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    if epochs > initial_epoch:
        model.optimizer.finalize_variable_values(model.trainable_weights)  # as fit: EMA weights
    callback_list.on_train_end(logs={name: float(value) for name, value in logs.items()})
    return model.history


def check_same_on_all_workers(strategy: tf.distribute.Strategy, value: int, what: str, *,
                              hint: str = "") -> None:
    """Raise ``RuntimeError`` (``what``, the values seen, ``hint``) unless every replica holds
    the same ``value``. A collective: every worker must call it.

    Example::

        check_same_on_all_workers(strategy, initial_epoch, "the epoch to resume from")
    """
    values = strategy.gather(strategy.run(lambda: tf.constant([value], tf.int64)), axis=0)
    seen = sorted({int(v) for v in values.numpy()})
    if len(seen) > 1:
        raise RuntimeError(f"The workers disagree on {what} ({seen}). {hint}".rstrip())


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Wait until every worker of ``strategy`` gets here (a no-op on one worker).

    Example::

        save_files_on_the_chief()
        barrier(strategy)  # the other workers go on only once the files are written
    """
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)),
                    axis=None)
