"""MBConv (inverted residual) blocks with squeeze-excite, built from stock Keras layers.

Layer names and the order of weight-owning layers follow keras.applications exactly: names are
API (they decide weight compatibility) and legacy ``.h5`` files load by order.

Every block takes ``data_format`` (see :mod:`keras_efficient.layers.conv`, which holds the
conv-BN-act and data-format helpers the blocks are made of).
"""

from __future__ import annotations

from typing import Any

import keras

from keras_efficient.configs.efficientnet import BlockSpec
from keras_efficient.layers.conv import (
    batch_norm,
    channel_axis,
    pad_for_stride,
    resolve_data_format,
)
from keras_efficient.layers.initializers import CONV_KERNEL_INITIALIZER


def squeeze_excite(x: Any, filters_in: int, se_ratio: float, activation: str, name: str,
                   data_format: str | None = None) -> Any:
    """Channel attention: pool → 1x1 reduce (to ``filters_in × se_ratio``) → 1x1 expand → gate.

    Example::

        x = squeeze_excite(x, filters_in=16, se_ratio=0.25, activation="swish", name="block2a_")
    """
    data_format = resolve_data_format(data_format)
    filters = x.shape[channel_axis(data_format)]
    reduced = max(1, int(filters_in * se_ratio))
    se = keras.layers.GlobalAveragePooling2D(data_format=data_format,
                                             name=f"{name}se_squeeze")(x)
    se_shape = (filters, 1, 1) if data_format == "channels_first" else (1, 1, filters)
    se = keras.layers.Reshape(se_shape, name=f"{name}se_reshape")(se)
    se = keras.layers.Conv2D(reduced, 1, padding="same", activation=activation,
                             data_format=data_format, kernel_initializer=CONV_KERNEL_INITIALIZER,
                             name=f"{name}se_reduce")(se)
    se = keras.layers.Conv2D(filters, 1, padding="same", activation="sigmoid",
                             data_format=data_format, kernel_initializer=CONV_KERNEL_INITIALIZER,
                             name=f"{name}se_expand")(se)
    return keras.layers.Multiply(name=f"{name}se_excite")([x, se])


def mbconv_block(inputs: Any, block: BlockSpec, activation: str,
                 data_format: str | None = None) -> Any:
    """One MBConv block: expand → depthwise → squeeze-excite → project (→ drop-connect + add).

    Example::

        for block in expand_blocks(get_efficientnet_scaling("b0")):
            x = mbconv_block(x, block, "swish")
    """
    data_format = resolve_data_format(data_format)
    name = block.name
    filters = block.filters_in * block.expand_ratio
    x = inputs
    if block.expand_ratio != 1:
        x = keras.layers.Conv2D(filters, 1, padding="same", data_format=data_format,
                                use_bias=False, kernel_initializer=CONV_KERNEL_INITIALIZER,
                                name=f"{name}expand_conv")(x)
        x = batch_norm(f"{name}expand_bn", data_format)(x)
        x = keras.layers.Activation(activation, name=f"{name}expand_activation")(x)

    x, padding = pad_for_stride(x, block.kernel_size, block.strides, data_format,
                                f"{name}dwconv_pad")
    x = keras.layers.DepthwiseConv2D(block.kernel_size, strides=block.strides, padding=padding,
                                     data_format=data_format, use_bias=False,
                                     depthwise_initializer=CONV_KERNEL_INITIALIZER,
                                     name=f"{name}dwconv")(x)
    x = batch_norm(f"{name}bn", data_format)(x)
    x = keras.layers.Activation(activation, name=f"{name}activation")(x)

    if 0 < block.se_ratio <= 1:
        x = squeeze_excite(x, block.filters_in, block.se_ratio, activation, name, data_format)

    x = keras.layers.Conv2D(block.filters_out, 1, padding="same", data_format=data_format,
                            use_bias=False, kernel_initializer=CONV_KERNEL_INITIALIZER,
                            name=f"{name}project_conv")(x)
    x = batch_norm(f"{name}project_bn", data_format)(x)
    if block.has_residual:
        if block.drop_rate > 0:
            x = keras.layers.Dropout(block.drop_rate, noise_shape=(None, 1, 1, 1),
                                     name=f"{name}drop")(x)
        x = keras.layers.Add(name=f"{name}add")([x, inputs])
    return x
