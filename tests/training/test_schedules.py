"""The warm-up + cosine schedule: Keras CosineDecay's values, without a conditional."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.training.schedules import WarmupCosine, scaled_learning_rate, warmup_cosine


@pytest.mark.parametrize(("total", "warmup"), [(1000, 50), (100, 0), (10, 20), (1, 0)])
def test_values_equal_keras_cosine_decay_with_warmup(total, warmup):
    ours = warmup_cosine(0.08, total_steps=total, warmup_steps=warmup)
    clamped = max(0, min(warmup, total - 1))
    keras_schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if clamped else 0.08, decay_steps=max(1, total - clamped), alpha=0.0,
        warmup_target=0.08 if clamped else None, warmup_steps=clamped)
    for step in sorted({0, 1, clamped // 2, clamped, clamped + 1, total // 2, total - 1, total,
                        total + 10}):
        np.testing.assert_allclose(float(ours(step)), float(keras_schedule(step)), atol=1e-7,
                                   err_msg=f"step {step}")


def test_traced_schedule_has_no_conditional():
    schedule = WarmupCosine(0.1, total_steps=100, warmup_steps=10)
    graph = tf.function(schedule).get_concrete_function(tf.TensorSpec([], tf.int64)).graph
    kinds = {op.type for op in graph.get_operations()}
    assert not kinds & {"If", "StatelessIf", "Switch", "Merge"}, kinds


def test_round_trip_and_errors():
    schedule = WarmupCosine(0.1, total_steps=100, warmup_steps=10)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert clone.get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="total_steps must be at least 1"):
        WarmupCosine(0.1, total_steps=0, warmup_steps=0)
    assert scaled_learning_rate(16) == pytest.approx(0.02)
