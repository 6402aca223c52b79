"""Official EfficientDet checkpoints (google/automl) -> our detector layers (REFERENCE §3.3)."""

from __future__ import annotations

from typing import Any

from keras_efficient.configs.efficientdet import (
    EfficientDetSpec,
    bifpn_nodes,
    fpn_edge_prefix,
    fpn_node_prefix,
    needs_projection,
)
from keras_efficient.weights.checkpoint import (
    BN_VARIABLES,
    NameMap,
    assign_from_checkpoint,
    efficientnet_name_map,
    read_checkpoint,
)

SEPARABLE = ("depthwise_kernel", "pointwise_kernel", "bias")


def _bn(scope: str) -> list[str]:
    return [f"{scope}/{name}" for name in BN_VARIABLES]


def _sep(scope: str) -> list[str]:
    return [f"{scope}/{name}" for name in SEPARABLE]


def efficientdet_name_map(spec: EfficientDetSpec, fusion: str | None = None) -> NameMap:
    """Our detector layer names -> the automl checkpoint variable names.

    Example::

        efficientdet_name_map(get_efficientdet_spec("d0"))["resample_p6_conv"]
        # ["resample_p6/conv2d/kernel", "resample_p6/conv2d/bias"]
    """
    names: NameMap = dict(efficientnet_name_map(spec.backbone_scaling, spec.checkpoint_scope,
                                                 include_top=False, include_head=False))
    names["resample_p6_conv"] = ["resample_p6/conv2d/kernel", "resample_p6/conv2d/bias"]
    names["resample_p6_bn"] = _bn("resample_p6/bn")
    num_levels = spec.max_level - spec.min_level + 1
    nodes = bifpn_nodes(spec.min_level, spec.max_level)
    mode = fusion or spec.fusion
    for cell in range(spec.fpn_cells):
        for index, node in enumerate(nodes):
            scope = f"fpn_cells/cell_{cell}/fnode{index}"
            suffix = num_levels + index
            prefix = fpn_node_prefix(cell, index)
            if mode != "sum":
                wsm = tuple(f"{scope}/WSM" + (f"_{j}" if j else "")
                            for j in range(len(node.inputs)))
                names[f"{prefix}fusion"] = [wsm]
            names[f"{prefix}conv"] = _sep(f"{scope}/op_after_combine{suffix}/conv")
            names[f"{prefix}bn"] = _bn(f"{scope}/op_after_combine{suffix}/bn")
            for edge, input_id in enumerate(node.inputs):
                if needs_projection(spec, cell, input_id):  # the BiFPN builder's rule
                    edge_scope = f"{scope}/resample_{edge}_{input_id}_{suffix}"
                    layer = fpn_edge_prefix(cell, index, edge, input_id)
                    names[f"{layer}_conv"] = [f"{edge_scope}/conv2d/kernel",
                                              f"{edge_scope}/conv2d/bias"]
                    names[f"{layer}_bn"] = _bn(f"{edge_scope}/bn")
    for kind in ("class", "box"):
        for r in range(spec.head_repeats):
            names[f"{kind}_net_conv{r}"] = _sep(f"{kind}_net/{kind}-{r}")
            for level in range(spec.min_level, spec.max_level + 1):
                names[f"{kind}_net_bn{r}_p{level}"] = _bn(f"{kind}_net/{kind}-{r}-bn-{level}")
        names[f"{kind}_net_predict"] = _sep(f"{kind}_net/{kind}-predict")
    return names


def load_efficientdet_checkpoint(model: Any, prefix: str, spec: EfficientDetSpec,
                                 fusion: str | None = None,
                                 skip_class_predictor: bool = False) -> dict[str, int]:
    """Load an official EfficientDet checkpoint into our detector.

    ``skip_class_predictor`` keeps the model's own class predictor (a different number of
    classes) and ignores the checkpoint's.

    Example::

        detector = EfficientDet("d0", num_classes=20)
        load_efficientdet_checkpoint(detector, "efficientdet-d0/model", get_efficientdet_spec("d0"),
                                     skip_class_predictor=True)
    """
    skip = ("normalization", "class_net_predict") if skip_class_predictor else ("normalization",)
    return assign_from_checkpoint(
        model, read_checkpoint(prefix), efficientdet_name_map(spec, fusion),
        skip_layers=skip,
    )
