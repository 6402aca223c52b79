"""EfficientDet builders: parameter counts, outputs, structure, arguments and serialisation.

The fast tier builds only D0 and Lite0 (plus small variations); every other row is behind
``@pytest.mark.slow``.
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np
import pytest

import keras_efficient as ke
from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.configs.efficientdet import EFFICIENTDET_VARIANTS
from keras_efficient.detection.anchors import generate_anchors
from keras_efficient.layers.fusion import WeightedFusion
from keras_efficient.layers.resample import NearestUpsample
from tests.harness import as_json, config_round_trip, keras_file_round_trip, randomize

#: REFERENCE §2.1 (90 classes, 9 anchors): name -> (trainable, total).
PARAMS = {
    "efficientdet-d0": (3_880_067, 3_927_203),
    "efficientdet-d1": (6_625_898, 6_697_354),
    "efficientdet-d2": (8_097_039, 8_178_815),
    "efficientdet-d3": (12_032_296, 12_146_600),
    "efficientdet-d4": (20_723_675, 20_890_987),
    "efficientdet-d5": (33_653_315, 33_880_707),
    "efficientdet-d6": (51_871_782, 52_183_766),
    "efficientdet-d7": (51_871_782, 52_183_766),
    "efficientdet-d7x": (77_147_166, 77_564_894),
    "efficientdet-lite0": (3_243_470, 3_290_606),
    "efficientdet-lite1": (4_248_318, 4_311_390),
    "efficientdet-lite2": (5_252_334, 5_324_894),
    "efficientdet-lite3": (8_350_862, 8_455_054),
    "efficientdet-lite3x": (9_280_862, 9_392_574),
    "efficientdet-lite4": (15_130_894, 15_286_398),
}
#: The in-graph Normalization layer of D0-D7x: mean (3) + variance (3) + count (1).
NORMALIZATION_PARAMS = 7
#: Anchors of the default inputs: 9 × Σ feature-map cells (512: 64², 32², 16², 8², 4²).
ANCHORS = {"efficientdet-d0": 9 * (64**2 + 32**2 + 16**2 + 8**2 + 4**2),
           "efficientdet-lite0": 9 * (40**2 + 20**2 + 10**2 + 5**2 + 3**2)}
PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)
#: Inputs per BiFPN node (P3-P7): 2, 2, 2, 2, 3, 3, 3, 2 -> 19 fusion weights per cell.
WEIGHTS_PER_CELL = 19


def trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def total_count(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.weights)


def images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


@pytest.fixture(scope="module")
def d0() -> keras.Model:
    return ke.EfficientDet("d0")


@pytest.fixture(scope="module")
def lite0() -> keras.Model:
    return ke.EfficientDetLite0()


@pytest.fixture
def model(request: pytest.FixtureRequest) -> keras.Model:
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------- parameter counts


def check_counts(model: keras.Model, name: str) -> None:
    trainable, total = PARAMS[name]
    assert trainable_count(model) == trainable
    if name.startswith("efficientdet-lite"):
        assert not any(layer.name == "normalization" for layer in model.layers)
        assert total_count(model) == total
        assert model.count_params() == total
    else:
        norm = model.get_layer("normalization")
        assert [tuple(w.shape) for w in norm.weights] == [(3,), (3,), ()]
        assert not norm.trainable_weights
        assert sum(int(np.prod(w.shape)) for w in norm.weights) == NORMALIZATION_PARAMS
        assert total_count(model) == total + NORMALIZATION_PARAMS


@pytest.mark.parametrize(("model", "name"), [("d0", "efficientdet-d0"),
                                             ("lite0", "efficientdet-lite0")],
                         indirect=["model"])
def test_parameter_counts(model, name):
    assert model.name == name
    check_counts(model, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts_all_rows(name):
    model = ke.EfficientDet(name)
    check_counts(model, name)
    assert model.output["class_logits"].shape[1] == generate_anchors(
        EFFICIENTDET_VARIANTS[name].anchor_spec()).shape[0]
    keras.backend.clear_session()


def test_d0_normalization_holds_imagenet_statistics(d0):
    mean, variance, _ = d0.get_layer("normalization").get_weights()
    np.testing.assert_allclose(mean, [0.485, 0.456, 0.406], rtol=1e-6)
    np.testing.assert_allclose(variance, np.square([0.229, 0.224, 0.225]), rtol=1e-5)


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize(("model", "name"), [("d0", "efficientdet-d0"),
                                             ("lite0", "efficientdet-lite0")],
                         indirect=["model"])
def test_symbolic_output_shapes(model, name):
    assert isinstance(model.output, dict)
    assert set(model.output) == {"class_logits", "box_regression"}
    n = ANCHORS[name]
    assert n == generate_anchors(EFFICIENTDET_VARIANTS[name].anchor_spec()).shape[0]
    assert tuple(model.output["class_logits"].shape) == (None, n, 90)
    assert tuple(model.output["box_regression"].shape) == (None, n, 4)


def test_lite0_outputs(lite0):
    assert ANCHORS["efficientdet-lite0"] == 19_206
    assert ANCHORS["efficientdet-d0"] == 49_104
    out = lite0(images((2, 320, 320, 3)))
    assert tuple(out["class_logits"].shape) == (2, 19_206, 90)
    assert tuple(out["box_regression"].shape) == (2, 19_206, 4)
    # With freshly initialised BN statistics the class logits sit at the 1% prior.
    np.testing.assert_allclose(np.asarray(out["class_logits"]), PRIOR_BIAS, atol=0.5)


@pytest.mark.parametrize("model", ["d0", "lite0"], indirect=True)
def test_predictor_bias_initialisation(model):
    assert abs(PRIOR_BIAS - (-4.59512)) < 1e-5
    class_bias = np.asarray(model.get_layer("class_net_predict").bias)
    assert class_bias.shape == (90 * 9,)
    np.testing.assert_allclose(class_bias, PRIOR_BIAS, rtol=1e-6)
    box_bias = np.asarray(model.get_layer("box_net_predict").bias)
    assert box_bias.shape == (4 * 9,)
    np.testing.assert_array_equal(box_bias, np.zeros(36, "float32"))


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("model", ["d0", "lite0"], indirect=True)
@pytest.mark.parametrize("kind", ["class", "box"])
def test_heads_share_convs_with_per_level_bn(model, kind):
    names = [layer.name for layer in model.layers]
    convs = [name for name in names if re.fullmatch(rf"{kind}_net_conv\d+", name)]
    assert convs == [f"{kind}_net_conv{r}" for r in range(3)]
    bns = set()
    for r in range(3):
        conv = model.get_layer(f"{kind}_net_conv{r}")
        assert isinstance(conv, keras.layers.SeparableConv2D)
        assert len(conv._inbound_nodes) == 5  # one shared layer applied to P3..P7
        for level in range(3, 8):
            bn = model.get_layer(f"{kind}_net_bn{r}_p{level}")
            assert isinstance(bn, keras.layers.BatchNormalization)
            bns.add(id(bn))
    assert len(bns) == 15
    assert not any(name.startswith(f"{kind}_net_bn3") for name in names)
    assert len(model.get_layer(f"{kind}_net_predict")._inbound_nodes) == 5


def test_cell0_projects_backbone_levels_per_edge(lite0):
    projections = {layer.name: layer for layer in lite0.layers
                   if re.fullmatch(r"fpn_cell\d+_node\d+_resample_\d+_\d+_conv", layer.name)}
    # Backbone P3 (id 0, 40 ch), P4 (id 1, 112 ch) and P5 (id 2, 320 ch): P4, P5 twice.
    expected = {"fpn_cell0_node1_resample_0_2_conv": 320,
                "fpn_cell0_node2_resample_0_1_conv": 112,
                "fpn_cell0_node3_resample_0_0_conv": 40,
                "fpn_cell0_node4_resample_0_1_conv": 112,
                "fpn_cell0_node5_resample_0_2_conv": 320}
    assert set(projections) == set(expected)
    for name, channels in expected.items():
        layer = projections[name]
        assert tuple(layer.kernel.shape) == (1, 1, channels, 64)
        assert layer.use_bias
        bn = lite0.get_layer(name.removesuffix("_conv") + "_bn")
        assert isinstance(bn, keras.layers.BatchNormalization)
    p4 = (projections["fpn_cell0_node2_resample_0_1_conv"],
          projections["fpn_cell0_node4_resample_0_1_conv"])
    assert p4[0] is not p4[1]
    assert p4[0].input is p4[1].input  # the same backbone tensor, projected twice
    # P6 is made from P5 by a 1x1 conv (with bias) + BN + pool; P7 by a pool only.
    assert tuple(lite0.get_layer("resample_p6_conv").kernel.shape) == (1, 1, 320, 64)
    assert lite0.get_layer("resample_p6_conv").use_bias
    assert not lite0.get_layer("resample_p7_pool").weights


def test_bifpn_resample_ops_for_lite0(lite0):
    # 320 px: P6 5x5, P7 3x3; P7 -> P6 upsampling is 3 -> 5 (floor indexing).
    up = lite0.get_layer("fpn_cell0_node0_resample_1_4_upsample")
    assert isinstance(up, NearestUpsample) and (up.height, up.width) == (5, 5)
    down = lite0.get_layer("fpn_cell0_node7_resample_1_11_pool")
    assert isinstance(down, keras.layers.MaxPooling2D)
    assert down.pool_size == (3, 3) and down.strides == (2, 2) and down.padding == "same"
    fusions = [layer for layer in lite0.layers if isinstance(layer, WeightedFusion)]
    assert len(fusions) == 3 * 8
    assert {layer.mode for layer in fusions} == {"sum"}


@pytest.mark.parametrize(("model", "mode"), [("d0", "fast"), ("lite0", "sum")],
                         indirect=["model"])
def test_fusion_mode_and_weights(model, mode):
    fusions = [layer for layer in model.layers if isinstance(layer, WeightedFusion)]
    assert {layer.mode for layer in fusions} == {mode}
    params = sum(int(np.prod(w.shape)) for layer in fusions for w in layer.weights)
    assert params == (3 * WEIGHTS_PER_CELL if mode != "sum" else 0)


def test_fusion_override_adds_the_weights(lite0):
    softmax = ke.EfficientDet("lite0", fusion="softmax")
    fusions = [layer for layer in softmax.layers if isinstance(layer, WeightedFusion)]
    assert {layer.mode for layer in fusions} == {"softmax"}
    assert trainable_count(softmax) - trainable_count(lite0) == 3 * WEIGHTS_PER_CELL
    assert total_count(softmax) - total_count(lite0) == 3 * WEIGHTS_PER_CELL
    node4 = softmax.get_layer("fpn_cell2_node4_fusion")
    np.testing.assert_array_equal(node4.get_weights()[0], np.ones(3, "float32"))


# --------------------------------------------------------------------------- arguments


def test_custom_spec_builds():
    spec = EFFICIENTDET_VARIANTS["efficientdet-d0"].with_(fpn_filters=32, fpn_cells=2,
                                                          input_size=256)
    model = ke.EfficientDet(spec, num_classes=3, name="tiny")
    assert model.name == "tiny"
    assert tuple(model.input.shape) == (None, 256, 256, 3)
    n = generate_anchors(spec.anchor_spec()).shape[0]
    assert n == 9 * (32**2 + 16**2 + 8**2 + 4**2 + 2**2)
    assert tuple(model.output["class_logits"].shape) == (None, n, 3)
    assert tuple(model.output["box_regression"].shape) == (None, n, 4)
    assert any(layer.name.startswith("fpn_cell1_") for layer in model.layers)
    assert not any(layer.name.startswith("fpn_cell2_") for layer in model.layers)
    assert model.get_layer("class_net_conv0").pointwise_kernel.shape[-1] == 32
    assert tuple(model.get_layer("class_net_predict").bias.shape) == (27,)


def test_non_square_input():
    model = ke.EfficientDet("lite0", input_shape=(256, 384, 3), num_classes=7)
    spec = EFFICIENTDET_VARIANTS["efficientdet-lite0"]
    anchors = AnchorSpec((256, 384), anchor_scale=spec.anchor_scale)
    assert anchors.feature_sizes()[0] == (32, 48)
    n = generate_anchors(anchors).shape[0]
    assert n == generate_anchors(spec.anchor_spec((256, 384))).shape[0]
    assert n == 9 * (32 * 48 + 16 * 24 + 8 * 12 + 4 * 6 + 2 * 3)
    out = model(images((1, 256, 384, 3)))
    assert tuple(out["class_logits"].shape) == (1, n, 7)
    assert tuple(out["box_regression"].shape) == (1, n, 4)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"input_shape": (96, 96, 3)}, "at least 128x128"),
    ({"input_shape": (127, 512, 3)}, "at least 128x128"),
    ({"input_shape": (None, None, 3)}, "static input"),
    ({"input_shape": (512, 512, 1)}, "input_shape"),
    ({"num_classes": 0}, "num_classes"),
    ({"num_classes": -3}, "num_classes"),
    ({"weights": "nonexistent"}, "weights"),
    ({"weights": "imagenet"}, "weights"),
    ({"backbone_weights": "nonexistent"}, "backbone_weights"),
    ({"fusion": "mean"}, "fusion"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ke.EfficientDet("d0", **kwargs)


def test_unknown_variant():
    with pytest.raises(ValueError, match="Unknown EfficientDet variant"):
        ke.EfficientDet("d9")


# --------------------------------------------------------------------------- serialisation


def test_config_round_trip_and_keras_file(lite0, tmp_path):
    config = lite0.get_config()
    clone = config_round_trip(lite0)
    assert [w.path for w in clone.weights] == [w.path for w in lite0.weights]
    randomize(clone, seed=3)
    x = images((1, 320, 320, 3), seed=1)
    expected = clone(x)
    assert float(np.std(np.asarray(expected["class_logits"]))) > 0.1  # outputs really vary

    loaded = keras_file_round_trip(clone, tmp_path, "lite0")
    assert as_json(loaded.get_config()) == as_json(config)  # JSON turns tuples into lists
    assert isinstance(loaded.get_layer("fpn_cell0_node0_resample_1_4_upsample"),
                      NearestUpsample)
    out = loaded(x)
    for key in ("class_logits", "box_regression"):
        np.testing.assert_array_equal(np.asarray(out[key]), np.asarray(expected[key]))


def test_backbone_weights_from_classifier_file(tmp_path):
    classifier = ke.EfficientNetLite0(weights=None, include_top=False,
                                      input_shape=(None, None, 3))
    randomize(classifier, seed=11)
    path = tmp_path / "lite0_backbone.weights.h5"
    classifier.save_weights(path)

    detector = ke.EfficientDet("lite0", backbone_weights=str(path))
    compared = 0
    for layer in classifier.layers:
        if not layer.weights or layer.name.startswith("top_"):
            continue
        target = detector.get_layer(layer.name)
        for mine, theirs in zip(target.weights, layer.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs),
                                          err_msg=mine.path)
        compared += 1
    # stem conv + BN; block 1a: depthwise + BN + project conv + BN; 15 blocks x 6 layers.
    assert compared == 2 + 4 + 15 * 6
    np.testing.assert_array_equal(np.asarray(detector.get_layer("block7a_project_conv").kernel),
                                  np.asarray(classifier.get_layer("block7a_project_conv").kernel))
    # The detector's own layers keep their initialisation.
    np.testing.assert_allclose(np.asarray(detector.get_layer("class_net_predict").bias),
                               PRIOR_BIAS, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(detector.get_layer("resample_p6_bn").gamma),
                                  np.ones(64, "float32"))
