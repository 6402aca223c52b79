"""Small Keras layers and functional blocks shared by the classifiers and detectors."""

from keras_efficient.layers.initializers import CONV_KERNEL_INITIALIZER, DENSE_KERNEL_INITIALIZER
from keras_efficient.layers.mbconv import conv_bn_act, mbconv_block, same_padding, squeeze_excite

__all__ = [
    "CONV_KERNEL_INITIALIZER",
    "DENSE_KERNEL_INITIALIZER",
    "conv_bn_act",
    "mbconv_block",
    "same_padding",
    "squeeze_excite",
]
