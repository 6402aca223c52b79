"""The keras.applications contract in channels_first (issue 13) and the minimum-size check.

Builds, shapes, configs, `.keras` round trips and weight loading run everywhere. Numerics run
where the backend can execute channels_first convolutions (TensorFlow on GPU; recent CPU
builds too) and are skipped otherwise. Every test that changes the global image data format
does it through the ``data_format`` / ``channels_first`` fixtures, which restore it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

import keras_efficient as ke
from keras_efficient.layers import InputSizeCheck
from tests.harness import keras_file_round_trip, randomize, transfer_by_order

CF = "channels_first"
CL = "channels_last"
SIZE = 64


@pytest.fixture
def channels_first() -> Iterator[None]:
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format(CF)
    try:
        yield
    finally:
        keras.config.set_image_data_format(previous)


# channels_last: the same checks as tests/models/test_efficientnet.py, so in the slow tier.
@pytest.fixture(params=[CF, pytest.param(CL, marks=pytest.mark.slow)])
def data_format(request: pytest.FixtureRequest) -> Iterator[str]:
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_image_data_format(previous)


@functools.cache
def _channels_first_runs() -> bool:
    """Whether this backend/device can execute channels_first (depthwise) convolutions."""
    inputs = keras.Input((3, 8, 8))
    x = keras.layers.Conv2D(2, 3, strides=2, data_format=CF)(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", data_format=CF)(x)
    probe = keras.Model(inputs, x)
    try:
        probe.predict(np.ones((1, 3, 8, 8), "float32"), verbose=0)
    except Exception:  # any failure means "cannot run here"
        return False
    return True


@pytest.fixture
def channels_first_kernels() -> None:
    """Skip numerics where channels_first convolutions cannot run (TF on some CPU builds)."""
    if not _channels_first_runs():
        pytest.skip("this backend/device cannot run channels_first convolutions")


def pixels(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def run(model: keras.Model, x: np.ndarray) -> object:
    """One eager forward pass in inference mode (cheaper than tracing ``predict``)."""
    out = model(x, training=False)
    if isinstance(out, dict):
        return {key: np.asarray(value) for key, value in out.items()}
    return np.asarray(out)


def to_first(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 3, 1, 2))


def assert_layers_channels_first(model: keras.Model) -> None:
    """Every layout-dependent layer stores channels_first (axis 1), none the default."""
    checked = 0
    for layer in model.layers:
        if hasattr(layer, "data_format"):
            assert layer.data_format == CF, layer.name
            checked += 1
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.axis in (1, [1]), layer.name
        if isinstance(layer, keras.layers.Normalization):
            assert tuple(layer.axis) == (1,), layer.name
        if isinstance(layer, keras.layers.Reshape):
            assert layer.target_shape[1:] == (1, 1), layer.name
    assert checked > 10


# --- building and shapes ------------------------------------------------------------------

@pytest.mark.parametrize("builder", [ke.EfficientNetB0, ke.EfficientNetLite0])
@pytest.mark.parametrize(("include_top", "pooling", "expected"), [
    (True, None, (None, 1000)),
    (False, None, (None, 1280, 2, 2)),
    (False, "avg", (None, 1280)),
    (False, "max", (None, 1280)),
])
def test_builds_channels_first(channels_first, builder, include_top, pooling, expected):
    model = builder(weights=None, include_top=include_top, pooling=pooling,
                    input_shape=(3, SIZE, SIZE))
    assert model.input_shape == (None, 3, SIZE, SIZE)
    assert model.output_shape == expected
    assert model.compute_output_shape((2, 3, SIZE, SIZE)) == (2, *expected[1:])
    assert_layers_channels_first(model)
    # The stem pads like TF "SAME" on the height and width, not the channels (the TensorFlow
    # backend's own "same"; elsewhere bottom/right, explicitly).
    if keras.backend.backend() == "tensorflow":
        assert model.get_layer("stem_conv").padding == "same"
    else:
        assert model.get_layer("stem_conv_pad").padding == ((0, 1), (0, 1))
    assert model.get_layer("stem_conv").output.shape[1:] == (32, SIZE // 2, SIZE // 2)


def test_default_input_shapes_follow_the_data_format(channels_first):
    assert ke.EfficientNetB0(weights=None).input_shape == (None, 3, 224, 224)
    notop = ke.EfficientNetLite0(weights=None, include_top=False)
    assert notop.input_shape == (None, 3, None, None)
    assert notop.output_shape == (None, 1280, None, None)


def test_parameter_count_is_the_same_in_both_formats(channels_first):
    first = ke.EfficientNetB0(weights=None)
    keras.config.set_image_data_format(CL)
    last = ke.EfficientNetB0(weights=None)
    assert first.count_params() == last.count_params() == 5_330_571
    assert [w.shape for w in first.weights] == [w.shape for w in last.weights]


def test_odd_sizes_pad_height_and_width(channels_first):
    model = ke.EfficientNetB0(weights=None, include_top=False, input_shape=(3, 225, 199))
    assert model.output_shape == (None, 1280, 8, 7)


def test_backbone_feature_maps_channels_first(channels_first):
    backbone = ke.EfficientNetBackbone("b0", input_shape=(3, 256, 256), levels=(1, 2, 3, 4, 5))
    assert {k: tuple(v.shape) for k, v in backbone.output.items()} == {
        "P1": (None, 16, 128, 128), "P2": (None, 24, 64, 64), "P3": (None, 40, 32, 32),
        "P4": (None, 112, 16, 16), "P5": (None, 320, 8, 8)}
    dynamic = ke.EfficientNetBackbone("lite0")
    assert dynamic.input_shape == (None, 3, None, None)
    assert tuple(dynamic.output["P5"].shape) == (None, 320, None, None)


# --- numerics -----------------------------------------------------------------------------

@pytest.mark.usefixtures("channels_first_kernels")
@pytest.mark.parametrize("name", ["b0", "lite0"])
def test_channels_first_matches_channels_last(channels_first, name):
    first = ke.EfficientNet(name, weights=None, input_shape=(3, SIZE, SIZE),
                            classifier_activation=None)
    keras.config.set_image_data_format(CL)
    last = ke.EfficientNet(name, weights=None, input_shape=(SIZE, SIZE, 3),
                           classifier_activation=None)
    randomize(last, seed=3)
    first.set_weights(last.get_weights())
    x = pixels((2, SIZE, SIZE, 3))
    expected = run(last, x)
    # The global format is channels_last again: the channels_first model keeps its layout.
    got = run(first, to_first(x))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.usefixtures("channels_first_kernels")
def test_parity_with_keras_applications_channels_first(channels_first):
    ref = keras.applications.EfficientNetB0(weights=None, input_shape=(3, SIZE, SIZE),
                                            classifier_activation=None)
    randomize(ref, seed=5)
    ours = ke.EfficientNetB0(weights=None, input_shape=(3, SIZE, SIZE),
                             classifier_activation=None)
    transfer_by_order(ref, ours)
    x = to_first(pixels((2, SIZE, SIZE, 3)))
    expected = run(ref, x)
    np.testing.assert_allclose(run(ours, x), expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())


@pytest.mark.usefixtures("channels_first_kernels")
def test_backbone_features_match_channels_last(channels_first):
    first = ke.EfficientNetBackbone("lite0", input_shape=(3, SIZE, SIZE))
    keras.config.set_image_data_format(CL)
    last = ke.EfficientNetBackbone("lite0", input_shape=(SIZE, SIZE, 3))
    randomize(last, seed=4)
    first.set_weights(last.get_weights())
    x = pixels((1, SIZE, SIZE, 3))
    expected = run(last, x)
    got = run(first, to_first(x))
    for level, value in expected.items():
        np.testing.assert_allclose(got[level], to_first(value), rtol=1e-4,
                                   atol=1e-4 * np.abs(value).max())


# --- weights across layouts ---------------------------------------------------------------

def _weights_by_layer(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def _assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    wa, wb = _weights_by_layer(a), _weights_by_layer(b)
    assert wa.keys() == wb.keys()
    for name, arrays in wa.items():
        for x, y in zip(arrays, wb[name], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.parametrize("name", ["b0", "lite0"])
def test_channels_last_weights_file_loads_channels_first(channels_first, name, tmp_path):
    keras.config.set_image_data_format(CL)
    last = ke.EfficientNet(name, weights=None, input_shape=(SIZE, SIZE, 3), classes=5)
    randomize(last, seed=7)
    path = tmp_path / f"{name}.weights.h5"
    last.save_weights(path)
    keras.config.set_image_data_format(CF)
    first = ke.EfficientNet(name, weights=str(path), input_shape=(3, SIZE, SIZE), classes=5)
    _assert_same_weights(first, last)
    # And back: a channels_first save loads into a channels_last model.
    path_first = tmp_path / f"{name}_first.weights.h5"
    first.save_weights(path_first)
    keras.config.set_image_data_format(CL)
    again = ke.EfficientNet(name, weights=str(path_first), input_shape=(SIZE, SIZE, 3),
                            classes=5)
    _assert_same_weights(again, last)


def test_keras_applications_legacy_h5_loads_channels_first(channels_first, tmp_path):
    keras.config.set_image_data_format(CL)
    source = keras.applications.EfficientNetB0(weights=None, include_top=False,
                                               input_shape=(SIZE, SIZE, 3))
    randomize(source, seed=9)
    std = np.array([0.229, 0.224, 0.225], "float32")
    mean = np.array([0.485, 0.456, 0.406], "float32")
    # The published files hold the standard deviations in the variance slot.
    (normalization,) = [layer for layer in source.layers
                        if isinstance(layer, keras.layers.Normalization)]
    normalization.set_weights([mean, std, np.zeros((), "int64")])
    path = tmp_path / "efficientnetb0_notop.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    keras.config.set_image_data_format(CF)
    ours = ke.EfficientNetB0(weights=str(path), include_top=False, input_shape=(3, SIZE, SIZE))
    expected = _weights_by_layer(source)
    got = _weights_by_layer(ours)
    for name, arrays in expected.items():
        if name == normalization.name:
            continue
        for x, y in zip(arrays, got[name], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)
    got_mean, got_variance, _ = got["normalization"]
    np.testing.assert_allclose(got_mean, mean)
    np.testing.assert_allclose(got_variance, std**2, rtol=1e-6)


# --- configs and .keras round trips -------------------------------------------------------

@pytest.mark.parametrize("name", ["b0", "lite0"])
def test_config_and_keras_round_trip_channels_first(channels_first, name, tmp_path):
    model = ke.EfficientNet(name, weights=None, include_top=False, pooling="avg")
    assert isinstance(model.get_layer("input_size_check"), InputSizeCheck)
    clone = keras.Model.from_config(model.get_config())
    assert clone.input_shape == (None, 3, None, None)
    assert_layers_channels_first(clone)
    keras.config.set_image_data_format(CL)  # loading must not depend on the global setting
    loaded = keras_file_round_trip(model, tmp_path, name)
    assert loaded.input_shape == (None, 3, None, None)
    assert loaded.output_shape == (None, 1280)
    assert_layers_channels_first(loaded)
    _assert_same_weights(loaded, model)
    if _channels_first_runs():
        x = to_first(pixels((1, SIZE, SIZE, 3)))
        np.testing.assert_allclose(run(loaded, x), run(model, x),
                                   atol=1e-6)


def test_input_size_check_config():
    layer = InputSizeCheck(32, "channels_first", name="input_size_check")
    config = layer.get_config()
    assert config["min_size"] == 32 and config["data_format"] == CF
    again = InputSizeCheck.from_config(config)
    assert (again.min_size, again.data_format, again.name) == (32, CF, "input_size_check")
    assert keras.saving.get_registered_object("keras_efficient>InputSizeCheck") is InputSizeCheck


# --- the minimum input size -----------------------------------------------------------------

def test_dynamic_classifier_refuses_a_31px_image():
    model = ke.EfficientNetB0(weights=None, include_top=False, input_shape=(None, None, 3),
                              pooling="avg")
    small = pixels((1, 31, 31, 3))
    with pytest.raises(ValueError, match=r"at least 32x32; received an image of 31x31"):
        model(small)
    with pytest.raises(ValueError, match=r"at least 32x32; received an image of 31x31"):
        model.predict(small, verbose=0)
    with pytest.raises(ValueError, match=r"at least 32x32; received an image of 31x40"):
        model(pixels((1, 31, 40, 3)))
    assert model(pixels((1, 32, 32, 3))).shape == (1, 1280)


def test_graph_traced_for_any_size_still_names_the_minimum():
    import tensorflow as tf

    model = ke.EfficientNetLite0(weights=None, include_top=False, input_shape=(None, None, 3))
    forward = tf.function(model, input_signature=[tf.TensorSpec((None, None, None, 3))])
    assert forward(pixels((1, 32, 64, 3))).shape == (1, 1, 2, 1280)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"at least 32x32.*\[31 64\]"):
        forward(pixels((1, 31, 64, 3)))


def test_static_input_tensor_under_32_is_refused():
    with pytest.raises(ValueError, match="at least 32x32"):
        ke.EfficientNetB0(weights=None, include_top=False, input_tensor=keras.Input((16, 64, 3)))


def test_channels_first_dynamic_classifier_refuses_a_31px_image(channels_first):
    model = ke.EfficientNetLite0(weights=None, include_top=False, pooling="max")
    with pytest.raises(ValueError, match=r"at least 32x32; received an image of 31x31"):
        model(to_first(pixels((1, 31, 31, 3))))
    # 31 channels are not a 31 px image: the layer reads height and width in the right axes.
    with pytest.raises(ValueError, match=r"at least 32x32; received an image of 31x33"):
        model(np.zeros((1, 3, 31, 33), "float32"))


# --- argument errors in channels_first ------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"weights": None, "include_top": False, "input_shape": (None, None, 3)},
     "known number of channels"),
    ({"weights": None, "include_top": False, "input_shape": (3, 31, 64)}, "at least 32x32"),
    # A channels_last shape read as (channels, height, width): width 3 is refused.
    ({"weights": None, "include_top": False, "input_shape": (224, 224, 3)}, "at least 32x32"),
    ({"weights": "imagenet", "input_shape": (3, 300, 300)}, r"must be \(3, 224, 224\)"),
    ({"weights": "imagenet", "include_top": False, "input_shape": (1, 224, 224)},
     "3 input channels"),
    ({"weights": None, "input_shape": (3, None, None)}, "static input size"),
    ({"weights": None, "input_shape": (224, 224)}, r"\(channels, height, width\)"),
])
@pytest.mark.filterwarnings("ignore:This model usually expects 1 or 3 input channels")
def test_argument_errors_channels_first(channels_first, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ke.EfficientNetB0(**kwargs)


# --- detectors refuse ---------------------------------------------------------------------

def test_detectors_refuse_channels_first(channels_first):
    with pytest.raises(ValueError, match="EfficientDet builds channels_last only"):
        ke.EfficientDetLite0(num_classes=3, input_shape=(128, 128, 3))
    with pytest.raises(ValueError, match=r"set_image_data_format\('channels_last'\)"):
        ke.get_model("efficientdet-d0")


# --- keras' own applications tests (keras/src/applications/applications_test.py) ------------

APPS = [(ke.EfficientNetB0, 1280), (ke.EfficientNetLite0, 1280), (ke.EfficientNetB2, 1408)]
APP_IDS = ["B0", "Lite0", "B2"]


@pytest.mark.parametrize(("app", "last_dim"), APPS[:2], ids=APP_IDS[:2])
def test_application_notop_variable_input_channels(data_format, app, last_dim):
    first = data_format == CF
    expected = [None, last_dim, None, None] if first else [None, None, None, last_dim]
    for channels in (1, 4):
        shape = (channels, None, None) if first else (None, None, channels)
        if channels == 4:
            with pytest.warns(UserWarning, match="1 or 3 input channels"):
                model = app(weights=None, include_top=False, input_shape=shape)
        else:
            model = app(weights=None, include_top=False, input_shape=shape)
        assert list(model.outputs[0].shape) == expected


@pytest.mark.parametrize(("app", "last_dim"), APPS[:2], ids=APP_IDS[:2])
def test_application_notop_custom_input_shape(data_format, app, last_dim):
    first = data_format == CF
    shape = (3, 123, 123) if first else (123, 123, 3)
    model = app(weights=None, include_top=False, input_shape=shape)
    expected = [None, last_dim, 4, 4] if first else [None, 4, 4, last_dim]
    assert list(model.outputs[0].shape) == expected


@pytest.mark.parametrize(("app", "last_dim"), APPS[:2], ids=APP_IDS[:2])
def test_application_notop_custom_input_tensor(data_format, app, last_dim):
    first = data_format == CF
    shape = (4, 200, 200) if first else (200, 200, 4)
    inputs = keras.Input(shape=shape, name="custom_input")
    x = keras.layers.Conv2D(3, (2, 2), padding="valid", strides=(2, 2))(inputs)
    model = app(weights=None, include_top=False, input_tensor=x)
    assert list(model.outputs[0].shape)[1 if first else -1] == last_dim


@pytest.mark.parametrize(("app", "last_dim"), APPS, ids=APP_IDS)
def test_application_pooling(data_format, app, last_dim):
    model = app(weights=None, include_top=False, pooling="max")
    assert list(model.outputs[0].shape) == [None, last_dim]


@pytest.mark.parametrize(("app", "last_dim"), APPS[:2], ids=APP_IDS[:2])
def test_application_classifier_activation(data_format, app, last_dim):
    model = app(weights=None, include_top=True, classifier_activation="softmax")
    assert model.layers[-1].activation.__name__ == "softmax"
    assert model.input_shape[1:] == ((3, 224, 224) if data_format == CF else (224, 224, 3))
