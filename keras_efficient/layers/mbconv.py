"""MBConv (inverted residual) blocks with squeeze-excite, built from stock Keras layers.

Layer names and the order of weight-owning layers follow keras.applications exactly: names are
API (they decide weight compatibility) and legacy ``.h5`` files load by order.

Every block takes ``data_format`` ("channels_last" or "channels_first"; None reads
``keras.config.image_data_format()`` at build time, as keras.applications does) and passes it,
resolved, to every layer it creates, so a built model keeps its layout whatever the global
setting is later. Kernels have the same layout in both formats, so weights are interchangeable.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_efficient.configs.efficientnet import BlockSpec
from keras_efficient.layers.initializers import CONV_KERNEL_INITIALIZER

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
DATA_FORMATS = ("channels_last", "channels_first")


def resolve_data_format(data_format: str | None = None) -> str:
    """``data_format``, or the global Keras image data format when None; checked.

    Example::

        resolve_data_format(None)  # "channels_last" unless keras.config says otherwise
    """
    resolved = keras.config.image_data_format() if data_format is None else data_format
    if resolved not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be 'channels_last' or 'channels_first'; received {resolved!r}."
        )
    return resolved


def channel_axis(data_format: str | None = None) -> int:
    """The channel axis of a 4D image tensor: -1 (channels_last) or 1 (channels_first).

    Example::

        channel_axis("channels_first")  # 1
    """
    return 1 if resolve_data_format(data_format) == "channels_first" else -1


def spatial_size(x: Any, data_format: str | None = None) -> tuple[int | None, int | None]:
    """(height, width) of a 4D image tensor (static dimensions, None where unknown).

    Example::

        spatial_size(keras.Input((3, 64, 48)), "channels_first")  # (64, 48)
    """
    shape = tuple(x.shape)
    if resolve_data_format(data_format) == "channels_first":
        return shape[2], shape[3]
    return shape[1], shape[2]


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


def batch_norm(name: str, data_format: str | None = None) -> keras.layers.BatchNormalization:
    """BatchNormalization over the channel axis, with the reference momentum and epsilon.

    Example::

        x = batch_norm("stem_bn")(x)
    """
    return keras.layers.BatchNormalization(axis=channel_axis(data_format), momentum=BN_MOMENTUM,
                                           epsilon=BN_EPSILON, name=name)


def conv_bn_act(x: Any, filters: int, kernel_size: int, *, strides: int = 1,
                activation: str | None, name: str, data_format: str | None = None) -> Any:
    """Conv (no bias) → BN → activation, named ``{name}conv``/``{name}bn``/``{name}activation``.

    Stride-2 convolutions pad explicitly (see :func:`same_padding`), in a ``{name}conv_pad`` layer.

    Example::

        x = conv_bn_act(image, 32, 3, strides=2, activation="swish", name="stem_")
    """
    data_format = resolve_data_format(data_format)
    padding = "same"
    if strides == 2:
        pads = same_padding(spatial_size(x, data_format), kernel_size)
        x = keras.layers.ZeroPadding2D(padding=pads, data_format=data_format,
                                       name=f"{name}conv_pad")(x)
        padding = "valid"
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                            data_format=data_format, use_bias=False,
                            kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}conv")(x)
    x = batch_norm(f"{name}bn", data_format)(x)
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{name}activation")(x)
    return x


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

    padding = "same"
    if block.strides == 2:
        pads = same_padding(spatial_size(x, data_format), block.kernel_size)
        x = keras.layers.ZeroPadding2D(padding=pads, data_format=data_format,
                                       name=f"{name}dwconv_pad")(x)
        padding = "valid"
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
