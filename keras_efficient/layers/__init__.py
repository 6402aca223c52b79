"""Small Keras layers and functional blocks shared by the classifiers and detectors."""

from keras_efficient.layers.checks import InputSizeCheck
from keras_efficient.layers.conv import (
    batch_norm,
    channel_axis,
    conv_bn_act,
    pad_for_stride,
    resolve_data_format,
    same_padding,
    spatial_size,
)
from keras_efficient.layers.initializers import CONV_KERNEL_INITIALIZER, DENSE_KERNEL_INITIALIZER
from keras_efficient.layers.mbconv import mbconv_block, squeeze_excite

__all__ = [
    "CONV_KERNEL_INITIALIZER",
    "DENSE_KERNEL_INITIALIZER",
    "InputSizeCheck",
    "batch_norm",
    "channel_axis",
    "conv_bn_act",
    "mbconv_block",
    "pad_for_stride",
    "resolve_data_format",
    "same_padding",
    "spatial_size",
    "squeeze_excite",
]
