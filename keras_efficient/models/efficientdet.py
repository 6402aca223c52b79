"""Public EfficientDet builders: EfficientNet backbone → BiFPN → shared class/box heads.

The model maps float RGB images in [0, 255] (preprocessed in the graph exactly like its
backbone classifier: ImageNet mean/std for D0–D7x, (x − 127)/128 for Lite) to a dict of raw
outputs in anchor order (level, row, column, anchor):

* ``class_logits``: ``[B, N, num_classes]`` (apply a sigmoid for scores),
* ``box_regression``: ``[B, N, 4]`` as (ty, tx, th, tw) against the anchors of
  ``spec.anchor_spec()`` (see :mod:`keras_efficient.detection.anchors`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras

from keras_efficient.backbones.efficientnet import efficientnet_body
from keras_efficient.configs.efficientdet import (
    FUSION_MODES,
    EfficientDetSpec,
    get_efficientdet_spec,
)
from keras_efficient.configs.efficientnet import EfficientNetScaling
from keras_efficient.detection.bifpn import bifpn
from keras_efficient.detection.heads import box_head, class_head
from keras_efficient.models.efficientnet import (
    EfficientNet,
    preprocessing_layers,
    set_imagenet_normalization,
)
from keras_efficient.weights.checkpoint import checkpoint_prefix
from keras_efficient.weights.detector_checkpoint import load_efficientdet_checkpoint
from keras_efficient.weights.loading import is_weights_source, load_weights_file
from keras_efficient.weights.pretrained import load_coco


def _require_channels_last() -> None:
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "EfficientDet builds channels_last only; call "
            "keras.config.set_image_data_format('channels_last') (the EfficientNet classifiers "
            "and EfficientNetBackbone support 'channels_first')."
        )


def _check(spec: EfficientDetSpec, num_classes: int, weights: str | None,
           backbone_weights: str | None, input_shape: tuple[int | None, ...],
           fusion: str | None) -> None:
    if (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
            or num_classes < 1):
        raise ValueError(
            "`num_classes` must be a positive integer (the number of object classes); "
            f"received num_classes={num_classes!r}."
        )
    if not (weights in (None, "coco") or is_weights_source(weights)):
        raise ValueError(
            "`weights` must be None, 'coco' (the official COCO detector) or the path to an "
            "existing weights file (a Keras '.weights.h5' saved from this detector, or an "
            f"official checkpoint); received weights={weights!r}."
        )
    if backbone_weights not in (None, "imagenet") and not is_weights_source(backbone_weights):
        raise ValueError(
            "`backbone_weights` must be None, 'imagenet' or the path to a classifier weights "
            f"file; received backbone_weights={backbone_weights!r}."
        )
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"`input_shape` must be (height, width, 3); received input_shape={input_shape}."
        )
    stride = 2 ** spec.max_level
    height, width = input_shape[0], input_shape[1]
    if height is None or width is None or min(height, width) < stride:
        raise ValueError(
            f"{spec.name} needs a static input of at least {stride}x{stride} pixels (its "
            f"coarsest level has stride {stride}); received input_shape={input_shape}."
        )
    if fusion is not None and fusion not in FUSION_MODES:
        raise ValueError(f"`fusion` must be one of {FUSION_MODES}; received {fusion!r}.")


def EfficientDet(spec: EfficientDetSpec | str, num_classes: int = 90,
                 weights: str | None = None, backbone_weights: str | None = None,
                 input_shape: Sequence[int | None] | None = None, fusion: str | None = None,
                 name: str | None = None) -> keras.Model:
    """Build an EfficientDet detector (raw outputs) from a table row or its name.

    Args:
        spec: a row of ``EFFICIENTDET_VARIANTS`` (or its name); ``row.with_(...)`` makes custom
            detectors (other width, cells, levels, activation...).
        num_classes: number of object classes (90 for COCO's id space).
        weights: None, "coco" (the official automl checkpoint, downloaded once into the Keras
            cache, converted once and cached as ``.weights.h5``), a Keras ``.weights.h5``
            file saved from the same detector, or an official checkpoint prefix/directory.
            With ``num_classes`` other than 90, everything but the class predictor loads.
        backbone_weights: None, "imagenet" (the classifier's published weights, loaded into
            the backbone layers by name) or a classifier weights file.
        input_shape: (height, width, 3); defaults to the row's square input size. Detectors
            are channels_last only: with "channels_first" set globally, a ValueError.
        fusion: override the BiFPN fusion mode ("fast", "softmax" or "sum").
        name: model name (defaults to the row name).

    Example:
        >>> detector = EfficientDet("lite0", num_classes=20)
    """
    _require_channels_last()
    if isinstance(spec, str):
        spec = get_efficientdet_spec(spec)
    shape = tuple(input_shape or (spec.input_size, spec.input_size, 3))
    _check(spec, num_classes, weights, backbone_weights, shape, fusion)
    scaling = spec.backbone_scaling

    image = keras.Input(shape=shape, name="image")
    x = image
    for layer in preprocessing_layers(scaling):
        x = layer(x)
    _, taps = efficientnet_body(x, scaling, include_head=False)
    features = {level: taps[f"P{level}"] for level in (3, 4, 5)}
    levels = bifpn(features, spec, fusion)
    outputs = {"class_logits": class_head(levels, spec, num_classes),
               "box_regression": box_head(levels, spec)}
    model = keras.Model(image, outputs, name=name or spec.name)
    if not scaling.lite:
        set_imagenet_normalization(model)
    if backbone_weights is not None:
        load_backbone_weights(model, scaling, backbone_weights)
    if weights == "coco":
        load_coco(model, spec, num_classes, fusion)
    elif weights is not None:
        prefix = checkpoint_prefix(weights)
        if prefix is not None:
            load_efficientdet_checkpoint(model, prefix, spec, fusion,
                                         skip_class_predictor=num_classes != 90)
        else:
            load_weights_file(model, weights)
    return model


def load_backbone_weights(detector: keras.Model, backbone: EfficientNetScaling | str,
                          weights: str) -> int:
    """Copy a classifier's weights into the detector's backbone layers, by layer name.

    Returns the number of layers copied; the classifier's head (``top_*``) has no counterpart.

    Example::

        detector = EfficientDet("lite0", num_classes=3)
        load_backbone_weights(detector, "lite0", "lite0_finetuned.weights.h5")
    """
    _require_channels_last()
    classifier = EfficientNet(backbone, include_top=False, weights=weights,
                              input_shape=(None, None, 3))
    copied = 0
    for layer in classifier.layers:
        if not layer.weights or layer.name.startswith("top_"):
            continue
        target = detector.get_layer(layer.name)
        target.set_weights(layer.get_weights())
        if hasattr(target, "finalize_state"):
            target.finalize_state()
        copied += 1
    return copied
