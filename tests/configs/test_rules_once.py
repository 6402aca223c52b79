"""Rules stated once, on the data (issue 14): feature taps, BiFPN projections, variant names,
letterbox geometry. Pure Python: no TensorFlow."""

import subprocess
import sys

import numpy as np
import pytest

from keras_efficient.configs.efficientdet import (
    EFFICIENTDET_VARIANTS,
    bifpn_nodes,
    cell_input_filters,
    get_efficientdet_spec,
    needs_projection,
)
from keras_efficient.configs.efficientnet import (
    EFFICIENTNET_VARIANTS,
    FEATURE_LEVEL_STAGES,
    expand_blocks,
    feature_blocks,
    feature_layer_names,
    get_efficientnet_scaling,
)
from keras_efficient.configs.names import is_detector, known_variants, resolve_variant
from keras_efficient.data.transforms import letterbox_geometry

# --------------------------------------------------------------------------- feature taps


@pytest.mark.parametrize("name", list(EFFICIENTNET_VARIANTS))
def test_feature_level_marks_the_last_block_of_each_feature_stage(name):
    blocks = expand_blocks(EFFICIENTNET_VARIANTS[name])
    last_of_stage = {block.stage: block for block in blocks}
    flagged = {block.feature_level: block for block in blocks if block.feature_level}
    assert sorted(flagged) == [1, 2, 3, 4, 5]
    assert sum(block.feature_level is not None for block in blocks) == 5
    for level, stage in FEATURE_LEVEL_STAGES.items():
        assert flagged[level] is last_of_stage[stage]
    assert feature_blocks(EFFICIENTNET_VARIANTS[name]) == flagged
    assert feature_layer_names(EFFICIENTNET_VARIANTS[name]) == {
        level: block.output_name for level, block in flagged.items()}


def test_feature_layer_names_of_a_deeper_variant():
    assert feature_layer_names(get_efficientnet_scaling("b4")) == {
        1: "block1b_add", 2: "block2d_add", 3: "block3d_add", 4: "block5f_add",
        5: "block7b_add"}


# --------------------------------------------------------------------------- BiFPN projection


@pytest.mark.parametrize("name", list(EFFICIENTDET_VARIANTS))
def test_projection_rule(name):
    spec = EFFICIENTDET_VARIANTS[name]
    backbone = feature_blocks(spec.backbone_scaling)
    levels = spec.max_level - spec.min_level + 1
    assert cell_input_filters(spec, 0) == (
        backbone[3].filters_out, backbone[4].filters_out, backbone[5].filters_out,
        *[spec.fpn_filters] * (levels - 3))
    node_ids = range(levels, levels + len(bifpn_nodes(spec.min_level, spec.max_level)))
    for cell in range(spec.fpn_cells):
        for input_id in [*range(levels), *node_ids]:
            expected = cell == 0 and input_id < 3  # backbone P3-P5 are never BiFPN-wide here
            assert needs_projection(spec, cell, input_id) is expected, (cell, input_id)


def test_an_equally_wide_backbone_level_is_not_projected():
    spec = get_efficientdet_spec("lite0").with_(fpn_filters=40)  # P3 of Lite0 is 40 wide
    assert [needs_projection(spec, 0, i) for i in range(5)] == [False, True, True, False, False]


# --------------------------------------------------------------------------- variant names


@pytest.mark.parametrize(("query", "expected"), [
    ("b0", ("efficientnet", "efficientnetb0")),
    ("EfficientNetB4", ("efficientnet", "efficientnetb4")),
    ("efficientnet-lite2", ("efficientnet", "efficientnetlite2")),
    ("efficientnet_b7", ("efficientnet", "efficientnetb7")),
    ("lite0", ("efficientnet", "efficientnetlite0")),  # classifiers first
    ("d0", ("efficientdet", "efficientdet-d0")),
    ("D7X", ("efficientdet", "efficientdet-d7x")),
    ("lite3x", ("efficientdet", "efficientdet-lite3x")),  # no classifier of that name
    ("efficientdet_lite0", ("efficientdet", "efficientdet-lite0")),
    ("EfficientDet-D1", ("efficientdet", "efficientdet-d1")),
    ("efficientdetd2", ("efficientdet", "efficientdet-d2")),
])
def test_resolve_variant(query, expected):
    assert resolve_variant(query) == expected
    assert is_detector(query) is (expected[0] == "efficientdet")


def test_resolve_variant_in_one_family():
    assert resolve_variant("lite0", "efficientdet") == ("efficientdet", "efficientdet-lite0")
    assert resolve_variant("Lite0", "efficientnet") == ("efficientnet", "efficientnetlite0")
    with pytest.raises(ValueError, match="Unknown EfficientDet variant 'b0'"):
        resolve_variant("b0", "efficientdet")
    with pytest.raises(ValueError, match="family must be one of"):
        resolve_variant("b0", "resnet")


@pytest.mark.parametrize("family", [None, "efficientnet", "efficientdet"])
def test_every_canonical_name_resolves_to_itself(family):
    for name in known_variants(family):
        got_family, canonical = resolve_variant(name, family)
        assert canonical == name and name.startswith(got_family)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="Unknown model 'resnet50'") as info:
        resolve_variant("resnet50")
    assert "efficientnetb0" in str(info.value) and "efficientdet-lite4" in str(info.value)
    assert known_variants() == (*EFFICIENTNET_VARIANTS, *EFFICIENTDET_VARIANTS)


def test_table_lookups_use_the_rule():
    for query in ("b3", "EfficientNet_Lite4", "efficientnetb0"):
        assert get_efficientnet_scaling(query).name == resolve_variant(query, "efficientnet")[1]
    for query in ("d0", "Lite0", "efficientdet_d7x", "efficientdet-lite3x"):
        assert get_efficientdet_spec(query).name == resolve_variant(query, "efficientdet")[1]


# --------------------------------------------------------------------------- letterbox


@pytest.mark.parametrize(("height", "width", "size", "expected"), [
    (480, 640, (320, 320), (0.5, 240, 320)),
    (640, 480, (320, 320), (0.5, 320, 240)),
    (128, 3, (64, 64), (0.5, 64, 1)),   # automl's int(): 1.5 -> 1
    (128, 5, (64, 64), (0.5, 64, 2)),   # 2.5 -> 2
    (1, 300, (64, 64), (float(np.float32(64) / np.float32(300)), 1, 64)),  # float32 scale
    (30, 20, (64, 96), (float(np.float32(64) / np.float32(30)), 64, 42)),  # 42.67 -> 42
])
def test_letterbox_geometry(height, width, size, expected):
    assert letterbox_geometry(height, width, size) == expected


def test_letterbox_geometry_refuses_empty_images():
    with pytest.raises(ValueError, match="non-zero size"):
        letterbox_geometry(0, 5, (64, 64))


def test_the_rules_import_no_tensorflow():
    code = ("import sys, keras_efficient.configs.names, keras_efficient.data.transforms; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
