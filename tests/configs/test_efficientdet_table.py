"""The EfficientDet table (REFERENCE §2.1) and the BiFPN topology as data (§2.3), without TF."""

from __future__ import annotations

import pytest

from keras_efficient.configs.efficientdet import (
    EFFICIENTDET_VARIANTS,
    BiFPNNode,
    EfficientDetSpec,
    bifpn_nodes,
    get_efficientdet_spec,
)

#: REFERENCE §2.3, written out by hand: (level, input ids) of nodes 0-7 for P3-P7.
BIFPN_P3_P7 = [
    (6, (3, 4)),
    (5, (2, 5)),
    (4, (1, 6)),
    (3, (0, 7)),
    (4, (1, 7, 8)),
    (5, (2, 6, 9)),
    (6, (3, 5, 10)),
    (7, (4, 11)),
]

#: The general rule applied by hand to P3-P8 (ids 0-5 are P3..P8; nodes append ids 6-15).
BIFPN_P3_P8 = [
    (7, (4, 5)),        # id 6: P7 top-down
    (6, (3, 6)),        # id 7: P6 top-down
    (5, (2, 7)),        # id 8: P5 top-down
    (4, (1, 8)),        # id 9: P4 top-down
    (3, (0, 9)),        # id 10: P3 out
    (4, (1, 9, 10)),    # id 11: P4 out
    (5, (2, 8, 11)),    # id 12: P5 out
    (6, (3, 7, 12)),    # id 13: P6 out
    (7, (4, 6, 13)),    # id 14: P7 out
    (8, (5, 14)),       # id 15: P8 out
]

#: REFERENCE §2.1: model -> (backbone, input, width, cells, head repeats, anchor scale,
#: max level, fusion, activation).
TABLE = {
    "efficientdet-d0": ("efficientnetb0", 512, 64, 3, 3, 4.0, 7, "fast", "swish"),
    "efficientdet-d1": ("efficientnetb1", 640, 88, 4, 3, 4.0, 7, "fast", "swish"),
    "efficientdet-d2": ("efficientnetb2", 768, 112, 5, 3, 4.0, 7, "fast", "swish"),
    "efficientdet-d3": ("efficientnetb3", 896, 160, 6, 4, 4.0, 7, "fast", "swish"),
    "efficientdet-d4": ("efficientnetb4", 1024, 224, 7, 4, 4.0, 7, "fast", "swish"),
    "efficientdet-d5": ("efficientnetb5", 1280, 288, 7, 4, 4.0, 7, "fast", "swish"),
    "efficientdet-d6": ("efficientnetb6", 1280, 384, 8, 5, 4.0, 7, "sum", "swish"),
    "efficientdet-d7": ("efficientnetb6", 1536, 384, 8, 5, 5.0, 7, "sum", "swish"),
    "efficientdet-d7x": ("efficientnetb7", 1536, 384, 8, 5, 4.0, 8, "sum", "swish"),
    "efficientdet-lite0": ("efficientnetlite0", 320, 64, 3, 3, 3.0, 7, "sum", "relu6"),
    "efficientdet-lite1": ("efficientnetlite1", 384, 88, 4, 3, 3.0, 7, "sum", "relu6"),
    "efficientdet-lite2": ("efficientnetlite2", 448, 112, 5, 3, 3.0, 7, "sum", "relu6"),
    "efficientdet-lite3": ("efficientnetlite3", 512, 160, 6, 4, 4.0, 7, "sum", "relu6"),
    "efficientdet-lite3x": ("efficientnetlite3", 640, 200, 6, 4, 3.0, 7, "sum", "relu6"),
    "efficientdet-lite4": ("efficientnetlite4", 640, 224, 7, 4, 4.0, 7, "sum", "relu6"),
}


def _as_tuples(nodes: tuple[BiFPNNode, ...]) -> list[tuple[int, tuple[int, ...]]]:
    return [(node.level, tuple(node.inputs)) for node in nodes]


def test_bifpn_p3_p7_is_the_reference_table():
    nodes = bifpn_nodes(3, 7)
    assert _as_tuples(nodes) == BIFPN_P3_P7
    assert bifpn_nodes() == nodes  # P3-P7 is the default
    assert all(isinstance(node.inputs, tuple) for node in nodes)


def test_bifpn_p3_p8_has_ten_nodes_following_the_general_rule():
    nodes = bifpn_nodes(3, 8)
    assert len(nodes) == 10
    assert _as_tuples(nodes) == BIFPN_P3_P8


@pytest.mark.parametrize("max_level", [5, 6, 7, 8, 9])
def test_bifpn_general_rule(max_level):
    """Re-derive the rule structurally: top-down then bottom-up, inputs read earlier ids only."""
    levels = list(range(3, max_level + 1))
    nodes = bifpn_nodes(3, max_level)
    assert len(nodes) == 2 * (len(levels) - 1)
    ids = {level: [i] for i, level in enumerate(levels)}  # every id of each level, in order
    level_of = dict(enumerate(levels))
    top_down, bottom_up = nodes[: len(levels) - 1], nodes[len(levels) - 1:]
    assert [n.level for n in top_down] == list(range(max_level - 1, 2, -1))
    assert [n.level for n in bottom_up] == list(range(4, max_level + 1))
    for offset, node in enumerate(nodes):
        new_id = len(levels) + offset
        assert all(i < new_id for i in node.inputs)
        if offset < len(top_down):
            expected = (ids[node.level][-1], ids[node.level + 1][-1])
        else:
            expected = (*ids[node.level], ids[node.level - 1][-1])
        assert node.inputs == expected
        # The first input always has the node's own level (it sets the output resolution).
        assert level_of[node.inputs[0]] == node.level
        ids[node.level].append(new_id)
        level_of[new_id] = node.level
    # After one cell every level's latest node is a bottom-up output (or P3 out).
    assert ids[3][-1] == len(levels) + len(top_down) - 1
    assert ids[max_level][-1] == len(levels) + len(nodes) - 1


def test_table_has_exactly_the_fifteen_published_rows():
    assert list(EFFICIENTDET_VARIANTS) == list(TABLE)


@pytest.mark.parametrize("name", list(TABLE))
def test_table_row_matches_reference(name):
    spec = EFFICIENTDET_VARIANTS[name]
    backbone, size, width, cells, head, scale, max_level, fusion, act = TABLE[name]
    assert spec.name == name
    assert spec.backbone == backbone
    assert spec.input_size == size
    assert spec.fpn_filters == width
    assert spec.fpn_cells == cells
    assert spec.head_repeats == head
    assert spec.anchor_scale == scale
    assert (spec.min_level, spec.max_level) == (3, max_level)
    assert spec.fusion == fusion
    assert spec.activation == act
    assert spec.anchors_per_location == 9
    assert spec.lite == name.startswith("efficientdet-lite")
    assert spec.checkpoint_scope == backbone.replace("efficientnet", "efficientnet-")
    anchors = spec.anchor_spec()
    assert anchors.image_size == (size, size)
    assert anchors.levels == tuple(range(3, max_level + 1))
    assert anchors.anchor_scale == scale


def test_checkpoint_scope_examples():
    assert EFFICIENTDET_VARIANTS["efficientdet-d0"].checkpoint_scope == "efficientnet-b0"
    assert EFFICIENTDET_VARIANTS["efficientdet-lite3x"].checkpoint_scope == "efficientnet-lite3"


@pytest.mark.parametrize(("query", "expected"), [
    ("d0", "efficientdet-d0"),
    ("D0", "efficientdet-d0"),
    ("efficientdet-d0", "efficientdet-d0"),
    ("efficientdet_d7x", "efficientdet-d7x"),
    ("efficientdet-lite3x", "efficientdet-lite3x"),
    ("lite3x", "efficientdet-lite3x"),
    ("Lite0", "efficientdet-lite0"),
])
def test_get_efficientdet_spec(query, expected):
    assert get_efficientdet_spec(query) is EFFICIENTDET_VARIANTS[expected]


@pytest.mark.parametrize("bad", ["d8", "lite5", "efficientnet-b0", "", "efficientdet-"])
def test_get_efficientdet_spec_unknown_name(bad):
    with pytest.raises(ValueError, match="Unknown EfficientDet variant") as info:
        get_efficientdet_spec(bad)
    assert "efficientdet-d0" in str(info.value)  # lists the known names


def test_with_makes_a_validated_copy():
    d0 = EFFICIENTDET_VARIANTS["efficientdet-d0"]
    custom = d0.with_(fpn_filters=32, fpn_cells=2, input_size=256)
    assert (custom.fpn_filters, custom.fpn_cells, custom.input_size) == (32, 2, 256)
    assert custom.backbone == d0.backbone and custom.fusion == d0.fusion
    assert d0.fpn_filters == 64  # the table row is unchanged


@pytest.mark.parametrize(("changes", "match"), [
    ({"fusion": "attention"}, "fusion must be one of"),
    ({"fusion": "Fast"}, "fusion must be one of"),
    ({"min_level": 2}, "min_level must be 3"),
    ({"min_level": 4}, "min_level must be 3"),
    ({"max_level": 4}, "max_level"),
])
def test_spec_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        EFFICIENTDET_VARIANTS["efficientdet-d0"].with_(**changes)
    with pytest.raises(ValueError, match=match):
        EfficientDetSpec(**{**_fields("efficientdet-lite0"), **changes})


def _fields(name):
    spec = EFFICIENTDET_VARIANTS[name]
    return {field: getattr(spec, field) for field in spec.__dataclass_fields__}
