"""Count multiply-accumulates (MACs) of a built Keras model from its layers' static shapes."""

from __future__ import annotations

import math
from typing import Any

import keras


def _spatial(shape: Any) -> int:
    return math.prod(int(d) for d in shape[1:-1])


def layer_macs(layer: keras.layers.Layer) -> int:
    """MACs of one Conv2D, DepthwiseConv2D, SeparableConv2D or Dense layer (0 for others).

    Counts the multiplications of the kernels only (no bias, BN or activation), the convention
    of the EfficientNet papers.

    Example::

        layer_macs(model.get_layer("stem_conv"))  # B0: 112 * 112 * (3 * 3 * 3 * 32)
    """
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = layer.kernel.shape  # (kh, kw, in, multiplier)
        return _spatial(layer.output.shape) * math.prod(int(d) for d in kernel)
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = layer.depthwise_kernel.shape
        pointwise = layer.pointwise_kernel.shape
        out = _spatial(layer.output.shape)
        return out * (math.prod(int(d) for d in depthwise) + math.prod(int(d) for d in pointwise))
    if isinstance(layer, keras.layers.Conv2D):
        kernel = layer.kernel.shape  # (kh, kw, in / groups, out)
        return _spatial(layer.output.shape) * math.prod(int(d) for d in kernel)
    if isinstance(layer, keras.layers.Dense):
        return math.prod(int(d) for d in layer.kernel.shape)
    return 0


def count_macs(model: keras.Model) -> int:
    """Total MACs of one forward pass of a model with a static input size, batch 1.

    Shared layers (called on several inputs) are counted once per call.

    Example::

        count_macs(EfficientNetB0(weights=None))  # 0.386e9 (the paper rounds to 0.39 B)
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        macs = layer_macs(layer)
        if macs:
            total += macs * max(1, len(layer._inbound_nodes))
    return total
