"""The scaling tables and rounding rules, without TensorFlow."""

import subprocess
import sys

import pytest

from keras_efficient.configs import (
    B0_STAGES,
    EFFICIENTNET_VARIANTS,
    expand_blocks,
    feature_layer_names,
    get_efficientnet_scaling,
    round_filters,
    round_repeats,
    scaled_stages,
)


def test_configs_import_does_not_load_tensorflow():
    code = ("import sys, keras_efficient.configs; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("filters", "width", "expected"), [
    (32, 1.0, 32), (32, 1.1, 32), (32, 1.2, 40), (32, 1.4, 48), (32, 1.8, 56), (32, 2.0, 64),
    (1280, 1.4, 1792), (1280, 2.0, 2560), (16, 1.1, 16), (24, 1.1, 24), (40, 1.1, 48),
    (320, 1.1, 352), (4, 1.0, 8),
])
def test_round_filters(filters, width, expected):
    assert round_filters(filters, width) == expected


def test_round_filters_adds_divisor_when_rounding_loses_more_than_ten_percent():
    # 11 rounds to 8, which loses 27% of 11, so one divisor is added.
    assert round_filters(11, 1.0) == 16


@pytest.mark.parametrize(("repeats", "depth", "expected"), [(1, 3.1, 4), (4, 2.6, 11), (3, 1.1, 4)])
def test_round_repeats(repeats, depth, expected):
    assert round_repeats(repeats, depth) == expected


def test_b0_stage_table():
    assert [(s.kernel_size, s.repeats, s.filters_in, s.filters_out, s.expand_ratio, s.strides)
            for s in B0_STAGES] == [
        (3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2),
        (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2), (3, 1, 192, 320, 6, 1)]


@pytest.mark.parametrize(("name", "blocks"), [
    ("b0", 16), ("b1", 23), ("b2", 23), ("b3", 26), ("b4", 32), ("b5", 39), ("b6", 45),
    ("b7", 55), ("lite0", 16), ("lite4", 30)])
def test_block_counts(name, blocks):
    assert len(expand_blocks(get_efficientnet_scaling(name))) == blocks


def test_lite_rules():
    lite4 = get_efficientnet_scaling("lite4")
    stages = scaled_stages(lite4)
    assert (stages[0].repeats, stages[-1].repeats) == (1, 1)
    assert stages[1].repeats == round_repeats(2, 1.8)
    assert (lite4.stem_filters, lite4.head_filters) == (32, 1280)
    assert lite4.activation == "relu6"
    assert all(s.se_ratio == 0 for s in stages)
    b4 = get_efficientnet_scaling("b4")
    assert (b4.stem_filters, b4.head_filters, b4.activation) == (48, 1792, "swish")


def test_drop_connect_rates_and_names():
    blocks = expand_blocks(get_efficientnet_scaling("b0"))
    assert [b.name for b in blocks[:4]] == ["block1a_", "block2a_", "block2b_", "block3a_"]
    assert blocks[0].drop_rate == 0.0
    assert blocks[5].drop_rate == pytest.approx(0.2 * 5 / 16)
    assert [b.strides for b in blocks if b.stage == 6] == [2, 1, 1, 1]
    assert blocks[2].filters_in == blocks[2].filters_out == 24


def test_feature_layer_names():
    assert feature_layer_names(get_efficientnet_scaling("b0")) == {
        1: "block1a_project_bn", 2: "block2b_add", 3: "block3b_add", 4: "block5c_add",
        5: "block7a_project_bn"}


def test_lookup():
    assert get_efficientnet_scaling("EfficientNetB4") is EFFICIENTNET_VARIANTS["efficientnetb4"]
    assert get_efficientnet_scaling("efficientnet-lite2").name == "efficientnetlite2"
    with pytest.raises(ValueError, match="Unknown EfficientNet variant 'b9'"):
        get_efficientnet_scaling("b9")


def test_custom_scaling_row():
    row = get_efficientnet_scaling("b0").with_(width=0.5, name="tiny")
    assert row.stem_filters == 16 and row.name == "tiny"
