"""Learning-rate schedule of the reference: linear warm-up, then cosine decay to zero."""

from __future__ import annotations

import keras

REFERENCE_LR_PER_64 = 0.08


def scaled_learning_rate(batch_size: int, per_64: float = REFERENCE_LR_PER_64) -> float:
    """The reference learning rate for ``batch_size`` (0.08 per 64 images, linear scaling).

    Example::

        scaled_learning_rate(16)  # 0.02
    """
    return per_64 * batch_size / 64.0


def warmup_cosine(peak: float, total_steps: int, warmup_steps: int
                  ) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, cosine to 0 at ``total_steps``.

    Example::

        schedule = warmup_cosine(0.08, total_steps=10_000, warmup_steps=500)
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1; received {total_steps}.")
    warmup_steps = max(0, min(warmup_steps, total_steps - 1))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak,
        decay_steps=max(1, total_steps - warmup_steps), alpha=0.0,
        warmup_target=peak if warmup_steps else None, warmup_steps=warmup_steps)
