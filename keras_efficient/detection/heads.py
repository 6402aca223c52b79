"""Class and box prediction heads, shared across levels with per-level BatchNormalization.

Outputs are flattened in anchor order (level, row, column, anchor): class logits
``[B, N, num_classes]`` (channel = anchor × num_classes + class) and box regressions
``[B, N, 4]`` as (ty, tx, th, tw) (channel = anchor × 4 + k), REFERENCE §2.4.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from keras_efficient.configs.efficientdet import EfficientDetSpec
from keras_efficient.layers.conv import batch_norm

PRIOR_PROBABILITY = 0.01


def _head(levels: dict[int, Any], spec: EfficientDetSpec, kind: str, outputs_per_anchor: int,
          bias_initializer: Any) -> Any:
    """One head (``kind`` is "class" or "box"): repeats of sepconv → BN(level) → act."""
    convs = [
        keras.layers.SeparableConv2D(spec.fpn_filters, 3, padding="same", use_bias=True,
                                     depthwise_initializer="variance_scaling",
                                     pointwise_initializer="variance_scaling",
                                     name=f"{kind}_net_conv{r}")
        for r in range(spec.head_repeats)
    ]
    predict = keras.layers.SeparableConv2D(
        spec.anchors_per_location * outputs_per_anchor, 3, padding="same", use_bias=True,
        depthwise_initializer="variance_scaling", pointwise_initializer="variance_scaling",
        bias_initializer=bias_initializer, name=f"{kind}_net_predict")
    flat = []
    for level in range(spec.min_level, spec.max_level + 1):
        x = levels[level]
        for r, conv in enumerate(convs):
            x = conv(x)
            x = batch_norm(f"{kind}_net_bn{r}_p{level}")(x)
            x = keras.layers.Activation(spec.activation, name=f"{kind}_net_act{r}_p{level}")(x)
        x = predict(x)
        flat.append(keras.layers.Reshape((-1, outputs_per_anchor),
                                         name=f"{kind}_net_flatten_p{level}")(x))
    name = "class_logits" if kind == "class" else "box_regression"
    return keras.layers.Concatenate(axis=1, name=name)(flat)


def class_head(levels: dict[int, Any], spec: EfficientDetSpec, num_classes: int) -> Any:
    """Class logits ``[B, N, num_classes]``; the bias starts at the 1% prior probability.

    Example::

        logits = class_head(bifpn(features, spec), spec, num_classes=90)  # [B, N, 90]
    """
    prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    return _head(levels, spec, "class", num_classes, keras.initializers.Constant(prior))


def box_head(levels: dict[int, Any], spec: EfficientDetSpec) -> Any:
    """Box regressions ``[B, N, 4]`` (ty, tx, th, tw).

    Example::

        regression = box_head(bifpn(features, spec), spec)  # [B, N, 4]
    """
    return _head(levels, spec, "box", 4, "zeros")
