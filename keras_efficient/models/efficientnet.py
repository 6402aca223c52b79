"""Public EfficientNet and EfficientNet-Lite builders, keras.applications-compatible.

What the graph does to pixels (inputs are float RGB in [0, 255]):

* B0–B7: ``Rescaling(1/255)`` then ``Normalization`` holding the ImageNet mean and variance
  (std²), so the stem sees ``(x / 255 - mean) / std``. Unlike keras.applications, the graph is the
  same whatever ``weights`` is: a ``weights=None`` model already normalizes with the ImageNet
  statistics, and the published files (which store the standard deviations in the variance slot)
  are corrected on load. Outputs equal keras.applications with ``weights="imagenet"``.
  With other than 3 input channels the Normalization layer starts as the identity
  (mean 0, variance 1), as in keras.applications.
* Lite0–4: ``Rescaling(1/128, offset=-127/128)``, i.e. ``(x - 127) / 128``; no Normalization.

The layout follows ``keras.config.image_data_format()`` when the model is built, as in
keras.applications: ``(height, width, channels)`` by default, ``(channels, height, width)`` with
"channels_first" (default input ``(3, R, R)``, BN and Normalization over axis 1, padding,
pooling and squeeze-excite in that layout). Every layer stores its format, so the model keeps
working after the global setting changes, and weights load across the two layouts.
A dynamic-size input gets an ``input_size_check`` layer that refuses images under 32x32.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_efficient.backbones.efficientnet import efficientnet_body
from keras_efficient.configs.efficientnet import (
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    EfficientNetScaling,
    feature_layer_names,
    get_efficientnet_scaling,
)
from keras_efficient.layers.checks import InputSizeCheck
from keras_efficient.layers.conv import channel_axis, resolve_data_format, spatial_size
from keras_efficient.layers.initializers import DENSE_KERNEL_INITIALIZER
from keras_efficient.weights.loading import is_weights_source, load_weights_file
from keras_efficient.weights.pretrained import load_pretrained

MIN_INPUT_SIZE = 32
POOLINGS = (None, "avg", "max")


def _check_arguments(scaling: EfficientNetScaling, include_top: bool, weights: str | None,
                     pooling: str | None, classes: int, classifier_activation: Any) -> None:
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 1:
        raise ValueError("`classes` must be a positive integer (a number of classes); "
                         f"received classes={classes!r}.")
    if not (weights in (None, "imagenet") or is_weights_source(weights)):
        raise ValueError(
            "The `weights` argument should be None (random initialization), 'imagenet' "
            "(pre-training on ImageNet) or the path to an existing weights file; "
            f"received weights={weights!r}, which is not a file that exists."
        )
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "With weights='imagenet' and include_top=True, `classes` must be 1000 (the ImageNet "
            f"classifier); received classes={classes}. For another number of classes use "
            "include_top=False and add your own classifier, or weights=None."
        )
    if pooling not in POOLINGS:
        raise ValueError(
            f"`pooling` must be one of None, 'avg' or 'max'; received pooling={pooling!r}."
        )
    if pooling is not None and include_top:
        raise ValueError(
            f"`pooling` applies only with include_top=False (the classifier always averages); "
            f"received pooling={pooling!r} with include_top=True."
        )
    if include_top and weights is not None:
        activation = keras.activations.get(classifier_activation)
        allowed = (keras.activations.get("softmax"), keras.activations.get(None))
        if activation not in allowed:
            raise ValueError(
                "With pretrained weights and include_top=True, `classifier_activation` must be "
                f"None or 'softmax'; received classifier_activation={classifier_activation!r}."
            )


def _layout(data_format: str) -> str:
    if data_format == "channels_first":
        return "(channels, height, width) with image data format 'channels_first'"
    return "(height, width, channels)"


def _input_shape(scaling: EfficientNetScaling, input_shape: Sequence[int | None] | None,
                 include_top: bool, weights: str | None, data_format: str
                 ) -> tuple[int | None, ...]:
    """The keras.applications rules for the input shape, in ``data_format``'s layout."""
    first = data_format == "channels_first"
    size = scaling.resolution
    default = (3, size, size) if first else (size, size, 3)
    if input_shape is None:
        if include_top:
            return default
        return (3, None, None) if first else (None, None, 3)
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(
            f"`input_shape` must be a tuple of three integers {_layout(data_format)}; "
            f"received input_shape={input_shape!r}."
        )
    channels = shape[0] if first else shape[-1]
    spatial = shape[1:] if first else shape[:2]
    if channels is None:
        raise ValueError(
            f"`input_shape` must be {_layout(data_format)} with a known number of channels; "
            f"received input_shape={shape}."
        )
    if weights == "imagenet" and include_top and shape != default:
        raise ValueError(
            f"With weights='imagenet' and include_top=True, `input_shape` must be {default}; "
            f"received input_shape={shape}. Use include_top=False for other sizes."
        )
    if weights == "imagenet" and channels != 3:
        raise ValueError(
            f"ImageNet weights need 3 input channels (RGB); received input_shape={shape}, "
            f"read as {_layout(data_format)}."
        )
    if weights != "imagenet" and channels not in (1, 3):
        warnings.warn(
            f"This model usually expects 1 or 3 input channels; received input_shape={shape}, "
            f"read as {_layout(data_format)}.",
            stacklevel=3,
        )
    for dim in spatial:
        if dim is not None and dim < MIN_INPUT_SIZE:
            raise ValueError(
                f"Input size must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}; "
                f"received input_shape={shape}, read as {_layout(data_format)}."
            )
    if include_top and None in spatial:
        raise ValueError(
            "include_top=True needs a static input size (the classifier is fixed); received "
            f"input_shape={shape}."
        )
    return shape


def _check_image_size(image: Any, data_format: str) -> Any:
    """Refuse a static image under 32x32; guard a dynamic one with an ``InputSizeCheck``."""
    height, width = spatial_size(image, data_format)
    known = [dim for dim in (height, width) if dim is not None]
    if known and min(known) < MIN_INPUT_SIZE:
        raise ValueError(
            f"Input size must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}; received an input "
            f"tensor of shape {tuple(image.shape)} (image data format {data_format!r})."
        )
    if len(known) == 2:
        return image
    return InputSizeCheck(MIN_INPUT_SIZE, data_format, name="input_size_check")(image)


def preprocessing_layers(scaling: EfficientNetScaling, data_format: str | None = None
                         ) -> list[keras.layers.Layer]:
    """The in-graph pixel preprocessing of a variant (see the module docstring).

    ``data_format`` (None: the global Keras setting) places the Normalization axis.

    Example::

        layers = preprocessing_layers(get_efficientnet_scaling("lite0"))  # [Rescaling]
    """
    if scaling.lite:
        return [keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="rescaling")]
    return [
        keras.layers.Rescaling(1.0 / 255.0, name="rescaling"),
        keras.layers.Normalization(axis=channel_axis(data_format), name="normalization"),
    ]


def set_imagenet_normalization(model: keras.Model) -> None:
    """Put the ImageNet mean and variance (std²) into the model's Normalization layer.

    Example::

        set_imagenet_normalization(model)  # a B0-B7 or D0-D7x graph with a "normalization" layer
    """
    layer = model.get_layer("normalization")
    mean = np.asarray(IMAGENET_MEAN_RGB, dtype="float32")
    variance = np.square(np.asarray(IMAGENET_STD_RGB, dtype="float32"))
    layer.set_weights([mean, variance, np.zeros((), dtype=layer.weights[2].dtype)])
    layer.finalize_state()  # Normalization caches its statistics; refresh them.


def EfficientNet(scaling: EfficientNetScaling | str, include_top: bool = True,
                 weights: str | None = "imagenet", input_tensor: Any = None,
                 input_shape: Sequence[int | None] | None = None, pooling: str | None = None,
                 classes: int = 1000, classifier_activation: Any = "softmax",
                 name: str | None = None, *, drop_connect_rate: float | None = None
                 ) -> keras.Model:
    """Build an EfficientNet classifier (or feature extractor) from a scaling-table row.

    Args:
        scaling: a row of ``EFFICIENTNET_VARIANTS`` (or its name); ``row.with_(width=...)``
            gives custom scalings.
        include_top: add global pooling, dropout and the ``predictions`` dense layer.
        weights: None, "imagenet" (downloaded once into the Keras cache and verified) or the
            path to a weights file (keras.applications ``.h5``, Keras ``.weights.h5`` or an
            official TF checkpoint prefix for the Lite variants).
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: (height, width, channels), or (channels, height, width) when
            ``keras.config.image_data_format()`` is "channels_first"; defaults to the variant's
            resolution with top, any size with 3 channels without.
        pooling: without top, None (4D output), "avg" or "max" (2D output).
        classes: number of classes with top.
        classifier_activation: activation of the ``predictions`` layer.
        name: model name (defaults to the variant name, e.g. ``"efficientnetb0"``).
        drop_connect_rate: override the stochastic-depth rate (0.2 by default).

    Inputs are float RGB in [0, 255]; see the module docstring for the in-graph preprocessing.

    Example:
        >>> model = EfficientNet("b0", weights=None)
    """
    if isinstance(scaling, str):
        scaling = get_efficientnet_scaling(scaling)
    _check_arguments(scaling, include_top, weights, pooling, classes, classifier_activation)
    data_format = resolve_data_format(None)
    shape = _input_shape(scaling, input_shape, include_top, weights, data_format)

    if input_tensor is None:
        image = keras.Input(shape=shape, name="input_layer")
        inputs: Any = image
    elif keras.backend.is_keras_tensor(input_tensor):
        image = input_tensor
        inputs = keras.utils.get_source_inputs(input_tensor)
    else:
        image = keras.Input(tensor=input_tensor, shape=shape)
        inputs = image

    x = _check_image_size(image, data_format)
    for layer in preprocessing_layers(scaling, data_format):
        x = layer(x)
    x, _ = efficientnet_body(x, scaling, include_head=True, drop_connect_rate=drop_connect_rate,
                             data_format=data_format)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
        if scaling.dropout > 0:
            x = keras.layers.Dropout(scaling.dropout, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation,
                               kernel_initializer=DENSE_KERNEL_INITIALIZER,
                               bias_initializer="zeros", name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(data_format=data_format, name="max_pool")(x)

    model = keras.Model(inputs, x, name=name or scaling.name)
    if not scaling.lite and image.shape[channel_axis(data_format)] == 3:
        set_imagenet_normalization(model)
    if weights == "imagenet":
        load_pretrained(model, scaling.name, include_top=include_top)
    elif weights is not None:
        load_weights_file(model, weights, scaling)
    return model


def EfficientNetBackbone(scaling: EfficientNetScaling | str,
                         input_shape: Sequence[int | None] | None = None,
                         weights: str | None = None, levels: Sequence[int] = (3, 4, 5),
                         input_tensor: Any = None, name: str | None = None) -> keras.Model:
    """A multi-scale feature extractor: outputs ``{"P3": ..., "P4": ..., "P5": ...}``.

    ``levels`` picks from P1–P5 (strides 2–32): the output of the last block of stages 1, 2,
    3, 5 and 7. Built on the same graph as the classifier, so ``weights`` takes the classifier's
    ImageNet weights ("imagenet") or a classifier weights file; the unused head is dropped.
    ``input_shape`` defaults to any size with 3 channels, laid out in the global image data
    format (with "channels_first", the input and every feature map are channels first).

    Example::

        backbone = EfficientNetBackbone("b0", input_shape=(256, 256, 3))
        features = backbone(images)  # {"P3": [B, 32, 32, 40], "P4": [B, 16, 16, 112],
                                     #  "P5": [B, 8, 8, 320]}
    """
    if isinstance(scaling, str):
        scaling = get_efficientnet_scaling(scaling)
    unknown = sorted(set(levels) - {1, 2, 3, 4, 5})
    if unknown:
        raise ValueError(f"EfficientNet features exist for levels 1-5; received levels {unknown}.")
    classifier = EfficientNet(scaling, include_top=False, weights=weights,
                              input_tensor=input_tensor, input_shape=input_shape)
    taps = feature_layer_names(scaling)
    outputs = {f"P{level}": classifier.get_layer(taps[level]).output for level in levels}
    inputs = classifier.inputs[0] if len(classifier.inputs) == 1 else classifier.inputs
    return keras.Model(inputs, outputs, name=name or f"{scaling.name}_backbone")

