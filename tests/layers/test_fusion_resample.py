"""WeightedFusion (the three BiFPN fusion modes) and NearestUpsample (REFERENCE §2.3)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.layers.fusion import FAST_EPSILON, WeightedFusion
from keras_efficient.layers.resample import (
    NearestUpsample,
    nearest_indices,
    repeat_factor,
    upsample_lowering,
)
from tests.harness import keras_file_round_trip

RNG = np.random.default_rng(7)


def _inputs(n: int, shape=(2, 5, 6, 4)) -> list[np.ndarray]:
    return [RNG.normal(size=shape).astype("float32") for _ in range(n)]


# --------------------------------------------------------------------------- WeightedFusion


def test_fusion_weights_are_one_vector_initialised_to_one():
    for mode in ("fast", "softmax"):
        layer = WeightedFusion(mode)
        layer(_inputs(3))
        assert len(layer.weights) == 1 and len(layer.trainable_weights) == 1
        assert layer.weights[0].shape == (3,)
        np.testing.assert_array_equal(layer.get_weights()[0], np.ones(3, "float32"))


def test_fast_fusion_matches_numpy():
    xs = _inputs(3)
    layer = WeightedFusion("fast")
    layer(xs)
    w = np.array([0.7, -0.3, 1.9], "float32")  # the negative weight is clipped by relu
    layer.set_weights([w])
    relu = np.maximum(w, 0)
    expected = sum(relu[i] * xs[i] for i in range(3)) / (relu.sum() + 1e-4)
    out = np.asarray(layer(xs))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # The -0.3 input contributes nothing: changing it does not change the output.
    xs2 = [xs[0], xs[1] * 100.0, xs[2]]
    np.testing.assert_allclose(np.asarray(layer(xs2)), out, rtol=1e-5, atol=1e-6)
    assert FAST_EPSILON == 1e-4


def test_fast_fusion_epsilon_matters_for_tiny_weights():
    xs = _inputs(2)
    layer = WeightedFusion("fast")
    layer(xs)
    layer.set_weights([np.array([1e-4, 0.0], "float32")])
    # 1e-4 / (1e-4 + 1e-4) = 0.5, not 1: the epsilon is in the denominator.
    np.testing.assert_allclose(np.asarray(layer(xs)), 0.5 * xs[0], rtol=1e-4, atol=1e-6)


def test_softmax_fusion_matches_numpy():
    xs = _inputs(3)
    layer = WeightedFusion("softmax")
    layer(xs)
    w = np.array([0.2, -1.1, 2.3], "float32")
    layer.set_weights([w])
    soft = np.exp(w) / np.exp(w).sum()
    expected = sum(soft[i] * xs[i] for i in range(3))
    np.testing.assert_allclose(np.asarray(layer(xs)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [2, 3])
def test_sum_fusion_has_no_weights_and_adds(n):
    xs = _inputs(n)
    layer = WeightedFusion("sum")
    out = np.asarray(layer(xs))
    assert layer.weights == []
    np.testing.assert_allclose(out, sum(xs), rtol=1e-6, atol=1e-6)


def test_fusion_rejects_bad_mode_and_single_input():
    with pytest.raises(ValueError, match="mode must be"):
        WeightedFusion("mean")
    with pytest.raises(ValueError, match="at least two inputs"):
        WeightedFusion("fast")(_inputs(1))


@pytest.mark.parametrize("mode", ["fast", "softmax", "sum"])
def test_fusion_config_round_trip(mode):
    layer = WeightedFusion(mode, epsilon=1e-3, name="fuse")
    config = layer.get_config()
    assert config["mode"] == mode and config["epsilon"] == 1e-3
    clone = WeightedFusion.from_config(config)
    assert (clone.mode, clone.epsilon, clone.name) == (mode, 1e-3, "fuse")
    # Registered for deserialisation by name.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, WeightedFusion) and restored.mode == mode


# --------------------------------------------------------------------------- NearestUpsample


def _numpy_nearest(x: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = [int(np.floor(i * x.shape[1] / height)) for i in range(height)]
    cols = [int(np.floor(j * x.shape[2] / width)) for j in range(width)]
    return x[:, rows][:, :, cols]


def test_nearest_indices_floor_without_half_pixel_centres():
    np.testing.assert_array_equal(nearest_indices(3, 5), [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(nearest_indices(5, 10), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    np.testing.assert_array_equal(nearest_indices(2, 3), [0, 0, 1])


def test_upsample_3x3_to_5x5():
    x = RNG.normal(size=(2, 3, 3, 4)).astype("float32")
    out = np.asarray(NearestUpsample(5, 5)(x))
    assert out.shape == (2, 5, 5, 4)
    idx = [0, 0, 1, 1, 2]
    np.testing.assert_array_equal(out, x[:, idx][:, :, idx])
    np.testing.assert_array_equal(out, _numpy_nearest(x, 5, 5))
    # Half-pixel centres would take row 2 at output row 3 (floor(3.5 * 3 / 5) = 2): not here.
    np.testing.assert_array_equal(out[:, 3], x[:, 1][:, idx])


def test_upsample_non_square_and_mixed_ratio():
    x = RNG.normal(size=(1, 3, 4, 2)).astype("float32")
    out = np.asarray(NearestUpsample(5, 8)(x))  # rows 3->5 (gather), columns exactly 2x
    np.testing.assert_array_equal(out, _numpy_nearest(x, 5, 8))


@pytest.mark.parametrize(("size", "target"), [((4, 4), (8, 8)), ((5, 5), (10, 10)),
                                              ((2, 3), (4, 6))])
def test_upsample_exact_2x_equals_repeat(size, target):
    x = RNG.normal(size=(3, *size, 5)).astype("float32")
    out = np.asarray(NearestUpsample(*target)(x))
    assert out.shape == (3, *target, 5)
    np.testing.assert_array_equal(out, np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))


def test_upsample_output_shape_and_config_round_trip():
    layer = NearestUpsample(5, 7, name="up")
    assert layer.compute_output_shape((None, 3, 4, 16)) == (None, 5, 7, 16)
    config = layer.get_config()
    assert (config["height"], config["width"]) == (5, 7)
    clone = NearestUpsample.from_config(config)
    assert (clone.height, clone.width, clone.name) == (5, 7, "up")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, NearestUpsample) and (restored.height, restored.width) == (5, 7)


def test_fusion_and_upsample_survive_keras_save_with_safe_mode(tmp_path):
    fine = keras.Input((5, 5, 4), name="fine")
    coarse = keras.Input((3, 3, 4), name="coarse")
    coarser = keras.Input((5, 5, 4), name="coarser")
    up = NearestUpsample(5, 5, name="up")(coarse)
    up2 = NearestUpsample(10, 10, name="up2")(coarser)
    fused = WeightedFusion("fast", name="fuse")([fine, up])
    soft = WeightedFusion("softmax", name="soft")([fused, up])
    total = WeightedFusion("sum", name="sum")([soft, fine])
    model = keras.Model([fine, coarse, coarser], [total, up2])
    model.get_layer("fuse").set_weights([np.array([1.5, -0.5], "float32")])
    model.get_layer("soft").set_weights([np.array([0.3, 0.9], "float32")])
    loaded = keras_file_round_trip(model, tmp_path, "fusion")
    assert isinstance(loaded.get_layer("up"), NearestUpsample)
    assert loaded.get_layer("fuse").mode == "fast"
    assert loaded.get_layer("soft").mode == "softmax"
    np.testing.assert_array_equal(loaded.get_layer("fuse").get_weights()[0], [1.5, -0.5])
    xs = [RNG.normal(size=(2, 5, 5, 4)).astype("float32"),
          RNG.normal(size=(2, 3, 3, 4)).astype("float32"),
          RNG.normal(size=(2, 5, 5, 4)).astype("float32")]
    for a, b in zip(model(xs), loaded(xs), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # And the graph computes what numpy says.
    up_np = _numpy_nearest(xs[1], 5, 5)
    fused_np = 1.5 * xs[0] / (1.5 + 1e-4)  # relu(-0.5) = 0
    soft_w = np.exp([0.3, 0.9]) / np.exp([0.3, 0.9]).sum()
    expected = soft_w[0] * fused_np + soft_w[1] * up_np + xs[0]
    np.testing.assert_allclose(np.asarray(loaded(xs)[0]), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(loaded(xs)[1]),
                                  np.repeat(np.repeat(xs[2], 2, axis=1), 2, axis=2))


@pytest.mark.parametrize(("size", "target"), [((3, 3), (5, 5)), ((20, 20), (40, 40)),
                                              ((2, 3), (8, 6)), ((3, 4), (5, 8)),
                                              ((3, 3), (7, 7))])
def test_repeat_lowering_equals_resize(size, target):
    x = RNG.normal(size=(2, *size, 3)).astype("float32")
    layer = NearestUpsample(*target)
    with upsample_lowering("repeat"):
        repeated = np.asarray(layer(x))
    np.testing.assert_array_equal(repeated, np.asarray(layer(x)))
    np.testing.assert_array_equal(repeated, _numpy_nearest(x, *target))


def test_repeat_factor_only_where_repeating_is_nearest():
    assert (repeat_factor(20, 40), repeat_factor(3, 5), repeat_factor(5, 5)) == (2, 2, 1)
    assert repeat_factor(3, 7) is None  # 7 rows from 3: [0, 0, 0, 1, 1, 2, 2], no repeat
    with pytest.raises(ValueError, match="lowering must be one of"), upsample_lowering("tile"):
        pass


def _lowered_ops(lowering: str) -> dict[str, int]:
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((5, 5, 4), batch_size=1)
    model = keras.Model(inputs, NearestUpsample(10, 10)(inputs))
    with upsample_lowering(lowering):
        function = tf.function(lambda x: model(x), input_signature=[
            tf.TensorSpec((1, 5, 5, 4), tf.float32)]).get_concrete_function()
    payload = tf.lite.TFLiteConverter.from_concrete_functions([function], model).convert()
    interpreter = Interpreter(model_content=payload)
    return {op["op_name"]: 1 for op in interpreter._get_ops_details()}


def test_repeat_lowering_converts_without_resize_op():
    assert "RESIZE_NEAREST_NEIGHBOR" in _lowered_ops("resize")
    lowered = _lowered_ops("repeat")
    assert "RESIZE_NEAREST_NEIGHBOR" not in lowered
    assert set(lowered) <= {"CONCATENATION", "RESHAPE"}
