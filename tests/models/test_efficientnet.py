"""EfficientNet builders: parameter counts, MACs, parity with keras.applications, arguments."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

import keras_efficient as ke
from keras_efficient.configs import EFFICIENTNET_VARIANTS
from keras_efficient.models.profile import count_macs
from tests.harness import (
    assert_same_outputs,
    config_round_trip,
    keras_file_round_trip,
    randomize,
    transfer_by_order,
)

# REFERENCE §1.2 / §1.5: (trainable with top, total with top, total without top).
PARAMS = {
    "efficientnetb0": (5_288_548, 5_330_571, 4_049_571),
    "efficientnetb1": (7_794_184, 7_856_239, 6_575_239),
    "efficientnetb2": (9_109_994, 9_177_569, 7_768_569),
    "efficientnetb3": (12_233_232, 12_320_535, 10_783_535),
    "efficientnetb4": (19_341_616, 19_466_823, 17_673_823),
    "efficientnetb5": (30_389_784, 30_562_527, 28_513_527),
    "efficientnetb6": (43_040_704, 43_265_143, 40_960_143),
    "efficientnetb7": (66_347_960, 66_658_687, 64_097_687),
    "efficientnetlite0": (4_652_008, None, None),
    "efficientnetlite1": (5_416_680, None, None),
    "efficientnetlite2": (6_092_072, None, None),
    "efficientnetlite3": (8_197_096, None, None),
    "efficientnetlite4": (13_006_568, None, None),
}
PUBLISHED_MACS = {
    "efficientnetb0": 0.39e9, "efficientnetb1": 0.70e9, "efficientnetb2": 1.0e9,
    "efficientnetb3": 1.8e9, "efficientnetb4": 4.2e9, "efficientnetb5": 9.9e9,
    "efficientnetb6": 19e9, "efficientnetb7": 37e9, "efficientnetlite0": 407e6,
}


@functools.cache
def built(name: str, include_top: bool = True) -> keras.Model:
    return ke.get_model(name, weights=None, include_top=include_top)


def trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# B3-B7 and Lite3-4 take most of the time and exercise the same rules as B0-B2 and Lite0-2:
# slow tier.
BIG = {"efficientnetb3", "efficientnetb4", "efficientnetb5", "efficientnetb6", "efficientnetb7",
       "efficientnetlite3", "efficientnetlite4"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n
                                  for n in PARAMS])
def test_parameter_counts(name):
    trainable, total, no_top = PARAMS[name]
    model = built(name)
    assert trainable_count(model) == trainable
    if total is not None:
        assert model.count_params() == total
    else:  # Lite: no Normalization layer, so the non-trainable part is the BN statistics only.
        bn_stats = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
        assert model.count_params() == trainable + bn_stats
    head = model.get_layer("predictions")
    expected_no_top = (no_top if no_top is not None
                       else model.count_params() - head.count_params())
    assert built(name, include_top=False).count_params() == expected_no_top


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n
                                  for n in PUBLISHED_MACS])
def test_macs_match_published(name):
    ratio = count_macs(built(name)) / PUBLISHED_MACS[name]
    # The Lite figures of the tpu README are ~5% above a plain kernel count for every Lite
    # variant (Lite0 0.946 ... Lite4 0.967); the B figures are within 5% either way.
    tolerance = 0.06 if "lite" in name else 0.05
    assert abs(ratio - 1) <= tolerance, ratio


def test_b0_plain_mac_count():
    assert round(count_macs(built("efficientnetb0")) / 1e9, 3) == 0.386


def images(size: int, count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def assert_parity(variant: str) -> None:
    ref = getattr(keras.applications, f"EfficientNet{variant.upper()}")(weights=None)
    randomize(ref, 1)
    ours = ke.get_model(variant, weights=None)
    transfer_by_order(ref, ours)
    x = images(ours.input_shape[1])
    delta = np.abs(ref.predict(x, verbose=0) - ours.predict(x, verbose=0)).max()
    assert delta <= 1e-5
    # Same layer names, but for keras.applications' explicit stride-2 pads: on the TensorFlow
    # backend our convolutions pad themselves (layers.conv.pad_for_stride; no weights there).
    padded_here = keras.backend.backend() != "tensorflow"
    ref_names = [layer.name for layer in ref.layers if not layer.name.startswith(
        ("rescaling", "normalization", "input"))
        and (padded_here or not layer.name.endswith("_pad"))]
    ours_names = [layer.name for layer in ours.layers if not layer.name.startswith(
        ("rescaling", "normalization", "input"))]
    assert ref_names == ours_names


def test_parity_with_keras_applications():
    """B0 here; B1-B7 in the slow tier (B1/B2's structure is pinned by the parameter counts)."""
    assert_parity("b0")


@pytest.mark.slow
@pytest.mark.parametrize("variant", [f"b{i}" for i in range(8)])
def test_parity_with_keras_applications_all(variant):
    assert_parity(variant)


def test_weights_none_graph_normalizes_with_imagenet_statistics():
    model = built("efficientnetb0")
    mean, variance, _ = model.get_layer("normalization").get_weights()
    np.testing.assert_allclose(mean, [0.485, 0.456, 0.406])
    np.testing.assert_allclose(variance, np.square([0.229, 0.224, 0.225]), rtol=1e-6)
    probe = keras.Model(model.input, model.get_layer("normalization").output)
    pixel = np.full((1, 224, 224, 3), 255.0 * 0.485, "float32")
    assert abs(float(probe.predict(pixel, verbose=0)[0, 0, 0, 0])) < 1e-5


def test_lite_preprocessing_is_x_minus_127_over_128():
    model = built("efficientnetlite0")
    probe = keras.Model(model.input, model.get_layer("rescaling").output)
    pixels = np.zeros((1, 224, 224, 3), "float32")
    pixels[0, 0, 0] = [255.0, 127.0, 0.0]
    out = probe.predict(pixels, verbose=0)
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 0.0, -127.0 / 128.0], rtol=1e-6)
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in model.layers)
    assert not any("se_" in layer.name for layer in model.layers)
    assert model.get_layer("stem_activation").get_config()["activation"] == "relu6"


def test_backbone_features():
    backbone = ke.EfficientNetBackbone("b0", input_shape=(256, 256, 3), levels=(1, 2, 3, 4, 5))
    outputs = backbone.predict(images(256, 1), verbose=0)
    assert {k: v.shape for k, v in outputs.items()} == {
        "P1": (1, 128, 128, 16), "P2": (1, 64, 64, 24), "P3": (1, 32, 32, 40),
        "P4": (1, 16, 16, 112), "P5": (1, 8, 8, 320)}
    with pytest.raises(ValueError, match="levels 1-5"):
        ke.EfficientNetBackbone("b0", levels=(3, 6))


def test_odd_input_size_pads_like_tf_same():
    model = ke.EfficientNetB0(weights=None, include_top=False, input_shape=(225, 199, 3))
    assert model.output_shape == (None, 8, 7, 1280)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"weights": "nonexistent.h5"}, "weights` argument should be None"),
    ({"weights": "imagenet", "classes": 10}, "`classes` must be 1000"),
    ({"weights": None, "include_top": False, "pooling": "mean"}, "`pooling` must be one of"),
    ({"weights": None, "pooling": "avg"}, "applies only with include_top=False"),
    ({"weights": "imagenet", "input_shape": (300, 300, 3)}, r"`input_shape` must be \(224, 224"),
    ({"weights": "imagenet", "include_top": False, "input_shape": (224, 224, 1)},
     "3 input channels"),
    ({"weights": None, "include_top": False, "input_shape": (31, 64, 3)}, "at least 32x32"),
    ({"weights": None, "input_shape": (224, 224)}, "three integers"),
    ({"weights": None, "input_shape": (None, None, 3)}, "static input size"),
    ({"weights": "imagenet", "classifier_activation": "relu"}, "None or 'softmax'"),
])
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ke.EfficientNetB0(**kwargs)


def test_unusual_channel_count_warns_but_builds():
    with pytest.warns(UserWarning, match="1 or 3 input channels"):
        model = ke.EfficientNetB0(weights=None, include_top=False, input_shape=(64, 64, 4))
    assert model.input_shape == (None, 64, 64, 4)


def test_keras_input_tensor_and_pooling():
    inputs = keras.Input((96, 96, 3))
    model = ke.EfficientNetLite0(weights=None, include_top=False, input_tensor=inputs,
                                 pooling="max")
    assert model.inputs[0] is inputs
    assert model.output_shape == (None, 1280)
    assert model.get_layer("max_pool") is not None


def test_classifier_activation_and_classes():
    model = ke.EfficientNetB0(weights=None, classes=7, classifier_activation=None)
    assert model.output_shape == (None, 7)
    logits = model.predict(images(224, 1), verbose=0)
    assert not np.allclose(logits.sum(), 1.0)


@pytest.mark.parametrize("name", ["efficientnetb0", "efficientnetlite0"])
def test_config_and_keras_save_round_trip(name, tmp_path):
    model = built(name)
    x = images(224, 1)
    expected = model.predict(x, verbose=0)
    clone = config_round_trip(model)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict(x, verbose=0), expected, atol=1e-6)
    assert_same_outputs(model, keras_file_round_trip(model, tmp_path, name), x)


def test_no_lambda_layers():
    model = built("efficientnetb0")
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


def test_every_variant_is_registered():
    assert set(EFFICIENTNET_VARIANTS) == {
        *(f"efficientnetb{i}" for i in range(8)), *(f"efficientnetlite{i}" for i in range(5))}
    with pytest.raises(ValueError, match="Unknown model"):
        ke.get_model("resnet50")
