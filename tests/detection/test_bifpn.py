"""BiFPN and head wiring: per-level shapes, exact-size nearest resize, custom layer configs."""

import keras
import numpy as np
import pytest

from keras_efficient.configs.efficientdet import get_efficientdet_spec
from keras_efficient.detection.inference import ToOriginalPixels
from keras_efficient.layers.resample import NearestUpsample, nearest_indices
from keras_efficient.models.efficientdet import EfficientDet
from tests.harness import assert_same_outputs, config_round_trip, keras_file_round_trip


def head_level_shapes(model: keras.Model, spec) -> list[tuple]:
    return [tuple(model.get_layer(f"class_net_flatten_p{level}").input.shape[1:])
            for level in range(spec.min_level, spec.max_level + 1)]


@pytest.mark.parametrize(("name", "sizes"), [
    ("lite0", [40, 20, 10, 5, 3]),
    ("d0", [64, 32, 16, 8, 4]),
])
def test_per_level_shapes(name, sizes):
    spec = get_efficientdet_spec(name)
    model = EfficientDet(spec, num_classes=7)
    width = spec.fpn_filters
    assert head_level_shapes(model, spec) == [(s, s, 9 * 7) for s in sizes]
    assert [tuple(model.get_layer(f"box_net_act0_p{level}").output.shape[1:])
            for level in range(3, 8)] == [(s, s, width) for s in sizes]


@pytest.mark.slow
def test_per_level_shapes_d7x_has_p8():
    spec = get_efficientdet_spec("d7x")
    model = EfficientDet(spec)
    assert head_level_shapes(model, spec) == [
        (s, s, 9 * 90) for s in (192, 96, 48, 24, 12, 6)]
    assert model.get_layer("resample_p8_pool").output.shape[1:3] == (6, 6)


@pytest.mark.parametrize(("source", "target", "expected"), [
    (3, 5, [0, 0, 1, 1, 2]),
    (4, 7, [0, 0, 1, 1, 2, 2, 3]),
    (5, 10, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]),
])
def test_nearest_floor_indices(source, target, expected):
    assert nearest_indices(source, target).tolist() == expected
    x = np.arange(source * source, dtype="float32").reshape(1, source, source, 1)
    out = keras.ops.convert_to_numpy(NearestUpsample(target, target)(x))
    np.testing.assert_array_equal(out[0, :, :, 0], x[0][np.ix_(expected, expected)][..., 0])


def test_to_original_pixels_config_and_math():
    layer = ToOriginalPixels(name="t")
    clone = config_round_trip(layer)
    boxes = np.array([[[10.0, 20.0, 50.0, 200.0]]], "float32")
    info = np.array([[0.5, 60.0, 300.0]], "float32")
    out = keras.ops.convert_to_numpy(clone(boxes, info))
    np.testing.assert_allclose(out, [[[20.0, 40.0, 60.0, 300.0]]])


@pytest.mark.slow  # the Lite0 and tiny-spec round trips (tests/models) cover it by default
def test_d0_keras_file_round_trip_with_safe_mode(tmp_path):
    model = EfficientDet("d0", num_classes=5)
    image = np.random.default_rng(0).uniform(0, 255, (1, 512, 512, 3)).astype("float32")
    assert_same_outputs(model, keras_file_round_trip(model, tmp_path, "d0"), image, atol=1e-5)
