"""The BiFPN: extra pyramid levels from the backbone, then repeated bidirectional fusion cells.

The topology is data (:func:`keras_efficient.configs.efficientdet.bifpn_nodes`, drawn in that
module); one loop here builds any number of cells from it. Layer names are stable:
``resample_p6_*``, ``fpn_cell{c}_node{n}_{resample_{j}_{input id}_*,fusion,activation,conv,bn}``.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_efficient.configs.efficientdet import (
    EfficientDetSpec,
    bifpn_nodes,
    fpn_edge_prefix,
    fpn_node_prefix,
    needs_projection,
)
from keras_efficient.layers.conv import batch_norm
from keras_efficient.layers.fusion import WeightedFusion
from keras_efficient.layers.resample import NearestUpsample


def _pool(name: str) -> keras.layers.MaxPooling2D:
    return keras.layers.MaxPooling2D(pool_size=3, strides=2, padding="same", name=name)


def extra_levels(features: dict[int, Any], spec: EfficientDetSpec) -> dict[int, Any]:
    """Add P6.. from the backbone's P5: 1x1 conv + BN + max-pool, then max-pools (§2.2).

    Example::

        levels = extra_levels({3: p3, 4: p4, 5: p5}, spec)  # adds 6 and 7 (and 8 for D7x)
    """
    levels = dict(features)
    x = keras.layers.Conv2D(spec.fpn_filters, 1, padding="same", name="resample_p6_conv")(
        features[5])
    x = batch_norm("resample_p6_bn")(x)
    levels[6] = _pool("resample_p6_pool")(x)
    for level in range(7, spec.max_level + 1):
        levels[level] = _pool(f"resample_p{level}_pool")(levels[level - 1])
    return levels


def _resample(x: Any, level: int, target: Any, target_level: int, filters: int,
              name: str, project: bool) -> Any:
    """Bring one edge to the node's level and width: 1x1 conv + BN if ``project``
    (:func:`~keras_efficient.configs.efficientdet.needs_projection`), then resize."""
    if not project and x.shape[-1] != filters:
        raise ValueError(f"{name}: a {x.shape[-1]}-channel input is fused unprojected into a "
                         f"{filters}-wide BiFPN; the spec's backbone does not match its input.")
    if project:
        x = keras.layers.Conv2D(filters, 1, padding="same", name=f"{name}_conv")(x)
        x = batch_norm(f"{name}_bn")(x)
    if level < target_level:
        for step in range(target_level - level):
            x = _pool(f"{name}_pool" + (f"{step}" if step else ""))(x)
    elif level > target_level:
        x = NearestUpsample(int(target.shape[1]), int(target.shape[2]),
                            name=f"{name}_upsample")(x)
    return x


def bifpn_cell(levels: dict[int, Any], spec: EfficientDetSpec, cell: int) -> dict[int, Any]:
    """One BiFPN cell: returns the latest node of every level (§2.3).

    Example::

        levels = bifpn_cell(extra_levels(features, spec), spec, cell=0)
    """
    ordered = list(range(spec.min_level, spec.max_level + 1))
    tensors = [levels[level] for level in ordered]
    tensor_levels = list(ordered)
    for index, node in enumerate(bifpn_nodes(spec.min_level, spec.max_level)):
        prefix = fpn_node_prefix(cell, index)
        # The node's resolution is that of the same-level input (always the first input).
        reference = tensors[node.inputs[0]]
        edges = [
            _resample(tensors[i], tensor_levels[i], reference, node.level, spec.fpn_filters,
                      fpn_edge_prefix(cell, index, j, i), needs_projection(spec, cell, i))
            for j, i in enumerate(node.inputs)
        ]
        x = WeightedFusion(spec.fusion, name=f"{prefix}fusion")(edges)
        x = keras.layers.Activation(spec.activation, name=f"{prefix}activation")(x)
        x = keras.layers.SeparableConv2D(spec.fpn_filters, 3, padding="same", use_bias=True,
                                         name=f"{prefix}conv")(x)
        x = batch_norm(f"{prefix}bn")(x)
        tensors.append(x)
        tensor_levels.append(node.level)
    latest = {}
    for tensor, level in zip(tensors, tensor_levels, strict=True):
        latest[level] = tensor
    return latest


def bifpn(features: dict[int, Any], spec: EfficientDetSpec) -> dict[int, Any]:
    """Backbone P3–P5 -> fused P3..P{max_level}, all ``spec.fpn_filters`` wide.

    Example::

        spec = get_efficientdet_spec("lite0")
        levels = bifpn({3: p3, 4: p4, 5: p5}, spec)  # {3: ..., 7: ...}, all 64 channels wide
    """
    levels = extra_levels(features, spec)
    for cell in range(spec.fpn_cells):
        levels = bifpn_cell(levels, spec, cell)
    return levels
