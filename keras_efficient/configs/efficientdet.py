"""EfficientDet scaling table (D0–D7x, Lite0–4) and the BiFPN topology as data (REFERENCE §2).

The BiFPN of one cell, for levels P3–P7 (ids 0–4 are the cell inputs; nodes append ids 5–12)::

    P7 (4) ─────────────────────────────────────────────┬──► P7 out (12) = [4, 11]
      │ up                                              │
    P6 (3) ──► P6 td (5) = [3, 4] ──────────────────────┼──► P6 out (11) = [3, 5, 10]
                 │ up                                   ▲ down
    P5 (2) ──► P5 td (6) = [2, 5] ──────────────────────┼──► P5 out (10) = [2, 6, 9]
                 │ up                                   ▲ down
    P4 (1) ──► P4 td (7) = [1, 6] ──────────────────────┼──► P4 out (9)  = [1, 7, 8]
                 │ up                                   ▲ down
    P3 (0) ─────────────────────────────────────────────┴──► P3 out (8)  = [0, 7]

Top-down nodes for levels max−1 down to min read [latest(level), latest(level+1)]; bottom-up
nodes for levels min+1 up to max read [every node of level] + [latest(level−1)]. The cell's
outputs are the latest node of each level. :func:`bifpn_nodes` derives this for any levels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.configs.efficientnet import (
    EfficientNetScaling,
    feature_blocks,
    get_efficientnet_scaling,
)

FUSION_MODES = ("fast", "softmax", "sum")

#: How an image becomes a detector's input: ``"letterbox"`` (automl's: resize keeping the aspect
#: ratio, pad bottom/right with the mean colour) or ``"stretch"`` (resize the whole image to the
#: input, aspect not kept: what the Android Task Library and MediaPipe feed). A detector records
#: the mode it was trained with, and evaluation, serving and export verification feed it so.
RESIZE_MODES = ("letterbox", "stretch")


def check_resize(resize: object) -> str:
    """``resize`` if it is one of :data:`RESIZE_MODES`, else a ``ValueError`` naming them.

    Example::

        check_resize("stretch")  # "stretch"
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES} ('letterbox': keep the aspect "
                         "ratio and pad, as automl; 'stretch': fill the input, as the Task "
                         f"Library and MediaPipe feed); received {resize!r}.")
    return str(resize)


@dataclasses.dataclass(frozen=True)
class BiFPNNode:
    """One fusion node: its pyramid level and the ids of the tensors it fuses.

    Example::

        bifpn_nodes()[0]  # BiFPNNode(level=6, inputs=(3, 4)): P6 top-down from P6 and P7
    """

    level: int
    inputs: tuple[int, ...]


def bifpn_nodes(min_level: int = 3, max_level: int = 7) -> tuple[BiFPNNode, ...]:
    """The nodes of one BiFPN cell; ids count the cell inputs (one per level) first.

    Example::

        len(bifpn_nodes(3, 7)), len(bifpn_nodes(3, 8))  # (8, 10): D7x has P8
    """
    levels = list(range(min_level, max_level + 1))
    ids_by_level: dict[int, list[int]] = {level: [i] for i, level in enumerate(levels)}
    next_id = len(levels)
    nodes = []

    def add(level: int, inputs: list[int]) -> None:
        nonlocal next_id
        nodes.append(BiFPNNode(level, tuple(inputs)))
        ids_by_level[level].append(next_id)
        next_id += 1

    for level in range(max_level - 1, min_level - 1, -1):
        add(level, [ids_by_level[level][-1], ids_by_level[level + 1][-1]])
    for level in range(min_level + 1, max_level + 1):
        add(level, [*ids_by_level[level], ids_by_level[level - 1][-1]])
    return tuple(nodes)


def fpn_node_prefix(cell: int, node: int) -> str:
    """Layer-name prefix of BiFPN node ``node`` (0-based, in :func:`bifpn_nodes` order).

    Example::

        fpn_node_prefix(0, 3)  # "fpn_cell0_node3_"
    """
    return f"fpn_cell{cell}_node{node}_"


def fpn_edge_prefix(cell: int, node: int, edge: int, input_id: int) -> str:
    """Layer-name prefix of the resampling of input ``edge`` (tensor ``input_id``) of a node.

    Example::

        fpn_edge_prefix(0, 3, 1, 7)  # "fpn_cell0_node3_resample_1_7"
    """
    return f"{fpn_node_prefix(cell, node)}resample_{edge}_{input_id}"


def cell_input_filters(spec: EfficientDetSpec, cell: int) -> tuple[int, ...]:
    """Channels of the cell's input tensors (ids 0.., one per level ``min_level``..).

    Cell 0 reads the backbone's P3–P5 (their widths: the ``feature_level`` blocks of
    :func:`~keras_efficient.configs.efficientnet.expand_blocks`) and the extra levels P6..
    (``fpn_filters`` wide); later cells read the previous cell's nodes, all ``fpn_filters``.

    Example::

        cell_input_filters(get_efficientdet_spec("d0"), 0)  # (40, 112, 320, 64, 64)
    """
    levels = range(spec.min_level, spec.max_level + 1)
    if cell > 0:
        return tuple(spec.fpn_filters for _ in levels)
    backbone = feature_blocks(spec.backbone_scaling)
    return tuple(backbone[level].filters_out if level in backbone else spec.fpn_filters
                 for level in levels)


def needs_projection(spec: EfficientDetSpec, cell: int, input_id: int) -> bool:
    """Whether the edge from tensor ``input_id`` into a node of ``cell`` starts with a 1x1
    conv + BN (``fpn_edge_prefix(...) + "_conv"/"_bn"``) to the BiFPN width: exactly when that
    tensor is not ``fpn_filters`` wide, i.e. a backbone level of cell 0 whose width differs
    (as in automl, whose checkpoints then hold ``resample_{edge}_{input_id}_{n}`` variables).
    Node outputs (ids past the cell inputs) are always ``fpn_filters`` wide.

    The BiFPN builder and the checkpoint name map both ask this function.

    Example::

        needs_projection(get_efficientdet_spec("d0"), 0, 2)  # True: P5 is 320 wide, BiFPN 64
        needs_projection(get_efficientdet_spec("d0"), 1, 2)  # False
    """
    inputs = cell_input_filters(spec, cell)
    return input_id < len(inputs) and inputs[input_id] != spec.fpn_filters


@dataclasses.dataclass(frozen=True)
class EfficientDetSpec:
    """One row of the EfficientDet table (REFERENCE §2.1).

    Example::

        spec = EFFICIENTDET_VARIANTS["efficientdet-lite0"]  # 320 px, sum fusion, relu6
        small = spec.with_(input_size=256, fpn_cells=2)  # a custom detector for EfficientDet(...)
        spec.anchor_spec().num_anchors  # 19206
    """

    name: str
    backbone: str | EfficientNetScaling
    input_size: int
    fpn_filters: int
    fpn_cells: int
    head_repeats: int
    anchor_scale: float
    fusion: str
    activation: str
    min_level: int = 3
    max_level: int = 7
    num_scales: int = 3
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5)
    published_ap: float = 0.0
    published_macs: float = 0.0

    def __post_init__(self) -> None:
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}; received {self.fusion!r}.")
        if self.min_level != 3 or self.max_level < 5:
            raise ValueError(
                "EfficientDet reads backbone levels P3–P5: min_level must be 3 and max_level "
                f"at least 5; received {self.min_level}..{self.max_level}."
            )

    @property
    def backbone_scaling(self) -> EfficientNetScaling:
        """The backbone's scaling row (``backbone`` may name one or be a custom row)."""
        if isinstance(self.backbone, EfficientNetScaling):
            return self.backbone
        return get_efficientnet_scaling(self.backbone)

    @property
    def lite(self) -> bool:
        return self.backbone_scaling.lite

    @property
    def pad_value(self) -> tuple[float, float, float]:
        """The raw RGB value the letterbox pads with: the backbone's ``mean_rgb``, which the
        in-graph normalization maps to 0 (automl normalizes first, then pads with 0).

        Example::

            get_efficientdet_spec("lite0").pad_value  # (127.0, 127.0, 127.0)
        """
        return self.backbone_scaling.mean_rgb

    @property
    def anchors_per_location(self) -> int:
        return self.num_scales * len(self.aspect_ratios)

    @property
    def checkpoint_scope(self) -> str:
        """Variable-name prefix of the backbone in the official checkpoints."""
        return self.backbone_scaling.checkpoint_scope

    def anchor_spec(self, image_size: tuple[int, int] | None = None) -> AnchorSpec:
        """The anchors this detector predicts against."""
        return AnchorSpec(image_size=image_size or (self.input_size, self.input_size),
                          min_level=self.min_level, max_level=self.max_level,
                          num_scales=self.num_scales, aspect_ratios=self.aspect_ratios,
                          anchor_scale=self.anchor_scale)

    def with_(self, **changes: object) -> EfficientDetSpec:
        """A copy with some fields changed, for custom detectors."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def spec_to_config(spec: EfficientDetSpec) -> dict[str, object]:
    """A JSON-ready dict of ``spec`` (a custom backbone row becomes a dict of its fields), the
    form a detector's ``get_config`` and ``train_config.json`` hold.

    Example::

        spec_from_config(spec_to_config(spec)) == spec  # True
    """
    values = dataclasses.asdict(spec)
    if not isinstance(spec.backbone, EfficientNetScaling):
        values["backbone"] = spec.backbone
    return values


def _tupled(value: object) -> object:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def spec_from_config(values: Mapping[str, object]) -> EfficientDetSpec:
    """The spec :func:`spec_to_config` wrote (lists from JSON become tuples again).

    Example::

        spec = spec_from_config(json.loads(text))
    """
    fields = {key: _tupled(value) for key, value in values.items()}
    backbone = fields.get("backbone")
    if isinstance(backbone, Mapping):
        fields["backbone"] = EfficientNetScaling(
            **{key: _tupled(value) for key, value in backbone.items()})  # type: ignore[arg-type]
    return EfficientDetSpec(**fields)  # type: ignore[arg-type]


def _d(name: str, backbone: str, size: int, width: int, cells: int, head: int, scale: float,
       fusion: str, ap: float, macs: float, max_level: int = 7) -> EfficientDetSpec:
    return EfficientDetSpec(name, backbone, size, width, cells, head, scale, fusion, "swish",
                            max_level=max_level, published_ap=ap, published_macs=macs)


def _lite(name: str, backbone: str, size: int, width: int, cells: int, head: int,
          scale: float, ap: float) -> EfficientDetSpec:
    return EfficientDetSpec(name, backbone, size, width, cells, head, scale, "sum", "relu6",
                            published_ap=ap)


EFFICIENTDET_VARIANTS: Mapping[str, EfficientDetSpec] = {
    row.name: row
    for row in (
        _d("efficientdet-d0", "efficientnetb0", 512, 64, 3, 3, 4.0, "fast", 34.6, 2.54e9),
        _d("efficientdet-d1", "efficientnetb1", 640, 88, 4, 3, 4.0, "fast", 40.5, 6.10e9),
        _d("efficientdet-d2", "efficientnetb2", 768, 112, 5, 3, 4.0, "fast", 43.9, 11.0e9),
        _d("efficientdet-d3", "efficientnetb3", 896, 160, 6, 4, 4.0, "fast", 47.2, 24.9e9),
        _d("efficientdet-d4", "efficientnetb4", 1024, 224, 7, 4, 4.0, "fast", 49.7, 55.2e9),
        _d("efficientdet-d5", "efficientnetb5", 1280, 288, 7, 4, 4.0, "fast", 51.5, 130e9),
        _d("efficientdet-d6", "efficientnetb6", 1280, 384, 8, 5, 4.0, "sum", 52.6, 226e9),
        _d("efficientdet-d7", "efficientnetb6", 1536, 384, 8, 5, 5.0, "sum", 53.7, 325e9),
        _d("efficientdet-d7x", "efficientnetb7", 1536, 384, 8, 5, 4.0, "sum", 55.1, 410e9,
           max_level=8),
        _lite("efficientdet-lite0", "efficientnetlite0", 320, 64, 3, 3, 3.0, 26.41),
        _lite("efficientdet-lite1", "efficientnetlite1", 384, 88, 4, 3, 3.0, 31.50),
        _lite("efficientdet-lite2", "efficientnetlite2", 448, 112, 5, 3, 3.0, 35.06),
        _lite("efficientdet-lite3", "efficientnetlite3", 512, 160, 6, 4, 4.0, 38.77),
        _lite("efficientdet-lite3x", "efficientnetlite3", 640, 200, 6, 4, 3.0, 42.64),
        _lite("efficientdet-lite4", "efficientnetlite4", 640, 224, 7, 4, 4.0, 43.18),
    )
}


def get_efficientdet_spec(name: str) -> EfficientDetSpec:
    """Look up a row by name (``"efficientdet-d0"``, ``"d0"``, ``"lite3x"``; case-insensitive).

    The name rule is :func:`keras_efficient.configs.names.resolve_variant`'s.

    Example::

        get_efficientdet_spec("D0").input_size  # 512
    """
    from keras_efficient.configs.names import resolve_variant  # names reads this table

    return EFFICIENTDET_VARIANTS[resolve_variant(name, "efficientdet")[1]]
