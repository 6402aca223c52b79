"""MBConv (inverted residual) blocks with squeeze-excite, built from stock Keras layers.

Layer names and the order of weight-owning layers follow keras.applications exactly: names are
API (they decide weight compatibility) and legacy ``.h5`` files load by order.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_efficient.configs.efficientnet import BlockSpec
from keras_efficient.layers.initializers import CONV_KERNEL_INITIALIZER

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def same_padding(size: tuple[int | None, int | None], kernel_size: int
                 ) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit zero padding that reproduces TF "SAME" for a stride-2 convolution.

    TF pads asymmetrically (more at the bottom/right) when the input size is even; padding
    explicitly and convolving "valid" gives the same result on every backend and in TFLite.

    Example::

        same_padding((224, 224), 3)  # ((0, 1), (0, 1)): TF pads bottom/right on even sizes
    """
    half = kernel_size // 2
    pads = []
    for dim in size:
        adjust = 1 if dim is None else 1 - dim % 2
        pads.append((half - adjust, half))
    return pads[0], pads[1]


def batch_norm(name: str) -> keras.layers.BatchNormalization:
    """BatchNormalization with the reference momentum and epsilon.

    Example::

        x = batch_norm("stem_bn")(x)
    """
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def conv_bn_act(x: Any, filters: int, kernel_size: int, *, strides: int = 1,
                activation: str | None, name: str) -> Any:
    """Conv (no bias) → BN → activation, named ``{name}conv``/``{name}bn``/``{name}activation``.

    Stride-2 convolutions pad explicitly (see :func:`same_padding`), in a ``{name}conv_pad`` layer.

    Example::

        x = conv_bn_act(image, 32, 3, strides=2, activation="swish", name="stem_")
    """
    padding = "same"
    if strides == 2:
        pads = same_padding((x.shape[1], x.shape[2]), kernel_size)
        x = keras.layers.ZeroPadding2D(padding=pads, name=f"{name}conv_pad")(x)
        padding = "valid"
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                            use_bias=False, kernel_initializer=CONV_KERNEL_INITIALIZER,
                            name=f"{name}conv")(x)
    x = batch_norm(f"{name}bn")(x)
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{name}activation")(x)
    return x


def squeeze_excite(x: Any, filters_in: int, se_ratio: float, activation: str, name: str) -> Any:
    """Channel attention: pool → 1x1 reduce (to ``filters_in × se_ratio``) → 1x1 expand → gate.

    Example::

        x = squeeze_excite(x, filters_in=16, se_ratio=0.25, activation="swish", name="block2a_")
    """
    filters = x.shape[-1]
    reduced = max(1, int(filters_in * se_ratio))
    se = keras.layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
    se = keras.layers.Reshape((1, 1, filters), name=f"{name}se_reshape")(se)
    se = keras.layers.Conv2D(reduced, 1, padding="same", activation=activation,
                             kernel_initializer=CONV_KERNEL_INITIALIZER,
                             name=f"{name}se_reduce")(se)
    se = keras.layers.Conv2D(filters, 1, padding="same", activation="sigmoid",
                             kernel_initializer=CONV_KERNEL_INITIALIZER,
                             name=f"{name}se_expand")(se)
    return keras.layers.Multiply(name=f"{name}se_excite")([x, se])


def mbconv_block(inputs: Any, block: BlockSpec, activation: str) -> Any:
    """One MBConv block: expand → depthwise → squeeze-excite → project (→ drop-connect + add).

    Example::

        for block in expand_blocks(get_efficientnet_scaling("b0")):
            x = mbconv_block(x, block, "swish")
    """
    name = block.name
    filters = block.filters_in * block.expand_ratio
    x = inputs
    if block.expand_ratio != 1:
        x = keras.layers.Conv2D(filters, 1, padding="same", use_bias=False,
                                kernel_initializer=CONV_KERNEL_INITIALIZER,
                                name=f"{name}expand_conv")(x)
        x = batch_norm(f"{name}expand_bn")(x)
        x = keras.layers.Activation(activation, name=f"{name}expand_activation")(x)

    padding = "same"
    if block.strides == 2:
        pads = same_padding((x.shape[1], x.shape[2]), block.kernel_size)
        x = keras.layers.ZeroPadding2D(padding=pads, name=f"{name}dwconv_pad")(x)
        padding = "valid"
    x = keras.layers.DepthwiseConv2D(block.kernel_size, strides=block.strides, padding=padding,
                                     use_bias=False,
                                     depthwise_initializer=CONV_KERNEL_INITIALIZER,
                                     name=f"{name}dwconv")(x)
    x = batch_norm(f"{name}bn")(x)
    x = keras.layers.Activation(activation, name=f"{name}activation")(x)

    if 0 < block.se_ratio <= 1:
        x = squeeze_excite(x, block.filters_in, block.se_ratio, activation, name)

    x = keras.layers.Conv2D(block.filters_out, 1, padding="same", use_bias=False,
                            kernel_initializer=CONV_KERNEL_INITIALIZER,
                            name=f"{name}project_conv")(x)
    x = batch_norm(f"{name}project_bn")(x)
    if block.has_residual:
        if block.drop_rate > 0:
            x = keras.layers.Dropout(block.drop_rate, noise_shape=(None, 1, 1, 1),
                                     name=f"{name}drop")(x)
        x = keras.layers.Add(name=f"{name}add")([x, inputs])
    return x
