"""The fused-update optimizers compute Keras' own updates, one op per variable."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.training.optimizers import SGD, AdamW
from keras_efficient.training.schedules import warmup_cosine
from tests.harness import config_round_trip

RNG = np.random.default_rng(5)
SHAPES = [(3, 3, 4, 8), (8,), (5, 2)]


def _run(optimizer, steps=4, clip=False):
    """``steps`` updates of three variables by seeded gradients inside one ``tf.function``;
    the variables and the optimizer's own variables after them."""
    variables = [keras.Variable(RNG.normal(size=shape).astype("float32"), name=f"v{i}")
                 for i, shape in enumerate(SHAPES)]
    grads = [[tf.constant(RNG.normal(size=shape).astype("float32")) for shape in SHAPES]
             for _ in range(steps)]
    optimizer.build(variables)

    @tf.function
    def step(gradients):
        optimizer.apply(gradients, variables)

    for gradients in grads:
        step(gradients)
    graph = step.get_concrete_function(grads[0]).graph
    return ([v.numpy() for v in variables], [v.numpy() for v in optimizer.variables],
            {op.type for op in graph.get_operations()})


def _pair(ours, keras_class, **kwargs):
    state = RNG.bit_generator.state
    got = _run(ours(**kwargs))
    RNG.bit_generator.state = state
    expected = _run(keras_class(**kwargs))
    return got, expected


@pytest.mark.parametrize(("ours", "theirs", "kwargs", "kernel"), [
    (SGD, keras.optimizers.SGD, {"momentum": 0.9}, "ResourceApplyKerasMomentum"),
    (SGD, keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True},
     "ResourceApplyKerasMomentum"),
    (AdamW, keras.optimizers.AdamW, {"weight_decay": 0.01}, "ResourceApplyAdam"),
    (AdamW, keras.optimizers.AdamW, {"weight_decay": 0.0, "use_ema": True,
                                     "clipnorm": 0.5}, "ResourceApplyAdam"),
])
def test_fused_updates_equal_keras(ours, theirs, kwargs, kernel):
    schedule = warmup_cosine(0.05, total_steps=10, warmup_steps=2)
    (got, got_slots, got_ops), (want, want_slots, want_ops) = _pair(
        ours, theirs, learning_rate=schedule, **kwargs)
    assert kernel in got_ops and kernel not in want_ops
    # The kernels round in another order: ~1 ulp per step on moments, 1e-6 on the variables
    # after four steps of size ~lr; a wrong term (bias correction, momentum) is off by 1e-2.
    for a, b in zip(got + got_slots, want + want_slots, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-6)


def test_sgd_without_momentum_and_amsgrad_are_keras_own_updates():
    (got, _, ops), (want, _, _) = _pair(SGD, keras.optimizers.SGD, learning_rate=0.1)
    assert "ResourceApplyKerasMomentum" not in ops
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    (got, _, ops), (want, _, _) = _pair(AdamW, keras.optimizers.AdamW, learning_rate=0.1,
                                        amsgrad=True)
    assert "ResourceApplyAdam" not in ops
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)


def test_the_schedule_is_traced_once_per_step_not_per_variable():
    schedule = warmup_cosine(0.05, total_steps=10, warmup_steps=2)
    _, _, _ = _run(AdamW(learning_rate=schedule, weight_decay=0.01), steps=1)
    variables = [keras.Variable(np.ones(shape, "float32")) for shape in SHAPES]
    optimizer = AdamW(learning_rate=schedule, weight_decay=0.01)
    optimizer.build(variables)
    graph = tf.function(lambda g: optimizer.apply(g, variables)).get_concrete_function(
        [tf.TensorSpec(shape) for shape in SHAPES]).graph
    assert [op.type for op in graph.get_operations()].count("Cos") == 1
    assert float(schedule(1)) == pytest.approx(0.025)  # eager calls are not cached
    assert float(schedule(6)) == pytest.approx(0.05 * 0.5 * (1 + np.cos(np.pi * 4 / 8)))


def test_config_round_trip_keeps_the_class():
    for optimizer in (SGD(learning_rate=0.1, momentum=0.8), AdamW(weight_decay=0.02)):
        clone = config_round_trip(optimizer)
        assert type(clone) is type(optimizer)
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(optimizer))
        assert type(restored) is type(optimizer)
