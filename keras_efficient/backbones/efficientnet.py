"""The EfficientNet body: stem, MBConv stages and (optionally) the 1x1 head convolution."""

from __future__ import annotations

from typing import Any

from keras_efficient.configs.efficientnet import EfficientNetScaling, expand_blocks
from keras_efficient.layers.conv import conv_bn_act, resolve_data_format
from keras_efficient.layers.mbconv import mbconv_block


def efficientnet_body(x: Any, scaling: EfficientNetScaling, *, include_head: bool = True,
                      drop_connect_rate: float | None = None, data_format: str | None = None
                      ) -> tuple[Any, dict[str, Any]]:
    """Apply the EfficientNet body to a preprocessed image tensor.

    Returns the last tensor (``top_activation`` when ``include_head``, else the last block) and
    the multi-scale features ``{"P1": ..., "P5": ...}``: the output of each block whose
    ``feature_level`` is set (the last block of stages 1, 2, 3, 5 and 7, strides 2 to 32; see
    :func:`~keras_efficient.configs.efficientnet.expand_blocks`). ``data_format`` is
    "channels_last" or "channels_first" (None: ``keras.config.image_data_format()`` now); every
    layer stores it.

    Example::

        pixels = keras.Input((224, 224, 3))  # already preprocessed
        top, features = efficientnet_body(pixels, get_efficientnet_scaling("lite0"))
        features["P3"].shape  # (None, 28, 28, 40)
    """
    if drop_connect_rate is not None:
        scaling = scaling.with_(drop_connect=drop_connect_rate)
    data_format = resolve_data_format(data_format)
    activation = scaling.activation
    x = conv_bn_act(x, scaling.stem_filters, 3, strides=2, activation=activation, name="stem_",
                    data_format=data_format)
    features: dict[str, Any] = {}
    for block in expand_blocks(scaling):
        x = mbconv_block(x, block, activation, data_format)
        if block.feature_level is not None:
            features[f"P{block.feature_level}"] = x
    if include_head:
        x = conv_bn_act(x, scaling.head_filters, 1, activation=activation, name="top_",
                        data_format=data_format)
    return x, features
