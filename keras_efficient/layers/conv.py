"""Convolution building blocks shared by the backbone, the BiFPN and the heads: conv-BN-act,
batch normalization with the reference constants, TF-"SAME" padding for stride 2, and the
data-format helpers (channel axis, spatial size).

Every function takes ``data_format`` ("channels_last" or "channels_first"; None reads
``keras.config.image_data_format()`` at build time, as keras.applications does) and passes it,
resolved, to every layer it creates, so a built model keeps its layout whatever the global
setting is later. Kernels have the same layout in both formats, so weights are interchangeable.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_efficient.layers.initializers import CONV_KERNEL_INITIALIZER
from keras_efficient.layers.normalization import BatchNormalization

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


def pad_for_stride(x: Any, kernel_size: int, strides: int, data_format: str, name: str
                   ) -> tuple[Any, str]:
    """The input of a convolution with TF "SAME" semantics and the ``padding`` to give it.

    On the TensorFlow backend the convolution pads itself (``"same"``): TF's "SAME" is the
    asymmetric padding of :func:`same_padding`, and a separate ``Pad`` op cost a full copy of
    the tensor for each stride-2 convolution (8 ms of Lite0's 63 ms on a 2-core CPU, 20 ms of
    D0's). Other backends, and the TFLite and weight files (the pad layer holds no weights),
    see the same numbers from an explicit ``ZeroPadding2D`` named ``name`` and ``"valid"``.

    Example::

        x, padding = pad_for_stride(x, 3, 2, "channels_last", "stem_conv_pad")
    """
    if strides == 1 or keras.backend.backend() == "tensorflow":
        return x, "same"
    pads = same_padding(spatial_size(x, data_format), kernel_size)
    return keras.layers.ZeroPadding2D(padding=pads, data_format=data_format, name=name)(x), "valid"


def batch_norm(name: str, data_format: str | None = None) -> keras.layers.BatchNormalization:
    """BatchNormalization over the channel axis, with the reference momentum and epsilon
    (:class:`~keras_efficient.layers.normalization.BatchNormalization`: Keras' layer, with
    TensorFlow's fused kernel at inference).

    Example::

        x = batch_norm("stem_bn")(x)
    """
    return BatchNormalization(axis=channel_axis(data_format), momentum=BN_MOMENTUM,
                              epsilon=BN_EPSILON, name=name)


def conv_bn_act(x: Any, filters: int, kernel_size: int, *, strides: int = 1,
                activation: str | None, name: str, data_format: str | None = None) -> Any:
    """Conv (no bias) → BN → activation, named ``{name}conv``/``{name}bn``/``{name}activation``.

    Stride-2 convolutions pad as TF "SAME" (see :func:`pad_for_stride`).

    Example::

        x = conv_bn_act(image, 32, 3, strides=2, activation="swish", name="stem_")
    """
    data_format = resolve_data_format(data_format)
    x, padding = pad_for_stride(x, kernel_size, strides, data_format, f"{name}conv_pad")
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                            data_format=data_format, use_bias=False,
                            kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}conv")(x)
    x = batch_norm(f"{name}bn", data_format)(x)
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{name}activation")(x)
    return x
