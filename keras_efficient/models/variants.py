"""One builder per published variant: each is a one-liner over the scaling table."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import keras

from keras_efficient.configs.efficientdet import EFFICIENTDET_VARIANTS
from keras_efficient.configs.efficientnet import EFFICIENTNET_VARIANTS
from keras_efficient.configs.names import resolve_variant
from keras_efficient.models.efficientdet import EfficientDet
from keras_efficient.models.efficientnet import EfficientNet


def _check_class_count(name: str, value: Any) -> int:
    """``value`` as an int if it is a positive integer (not a bool), else a ValueError.

    Example::

        _check_class_count("classes", 10)  # 10; True, 2.5 or "3" raise ValueError
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer (a number of classes); "
                         f"received {name}={value!r}.")
    return int(value)


def _classifier(variant: str, include_top: bool, weights: str | None,
                kwargs: dict[str, Any]) -> keras.Model:
    if "classes" in kwargs:
        kwargs["classes"] = _check_class_count("classes", kwargs["classes"])
    return EfficientNet(EFFICIENTNET_VARIANTS[variant], include_top, weights, **kwargs)


def EfficientNetB0(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B0 (224 px). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetB0(weights=None)  # 5,330,571 parameters
        features = EfficientNetB0(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetb0", include_top, weights, kwargs)


def EfficientNetB1(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B1 (240 px). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetB1(weights=None)  # 7,856,239 parameters
        features = EfficientNetB1(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetb1", include_top, weights, kwargs)


def EfficientNetB2(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B2 (260 px). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetB2(weights=None)  # 9,177,569 parameters
        features = EfficientNetB2(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetb2", include_top, weights, kwargs)


def EfficientNetB3(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B3 (300 px). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetB3(weights=None)  # 12,320,535 parameters
        features = EfficientNetB3(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetb3", include_top, weights, kwargs)


def EfficientNetB4(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B4 (380 px). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetB4(weights=None)  # 19,466,823 parameters
        features = EfficientNetB4(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetb4", include_top, weights, kwargs)


def EfficientNetB5(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B5 (456 px). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetB5(weights=None)  # 30,562,527 parameters
        features = EfficientNetB5(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetb5", include_top, weights, kwargs)


def EfficientNetB6(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B6 (528 px). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetB6(weights=None)  # 43,265,143 parameters
        features = EfficientNetB6(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetb6", include_top, weights, kwargs)


def EfficientNetB7(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B7 (600 px). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetB7(weights=None)  # 66,658,687 parameters
        features = EfficientNetB7(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetb7", include_top, weights, kwargs)


def EfficientNetLite0(include_top: bool = True, weights: str | None = "imagenet",
                      **kwargs: Any) -> keras.Model:
    """EfficientNet-Lite0 (224 px, ReLU6, no SE). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetLite0(weights=None)  # 4,694,024 parameters
        features = EfficientNetLite0(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetlite0", include_top, weights, kwargs)


def EfficientNetLite1(include_top: bool = True, weights: str | None = "imagenet",
                      **kwargs: Any) -> keras.Model:
    """EfficientNet-Lite1 (240 px, ReLU6, no SE). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetLite1(weights=None)  # 5,470,344 parameters
        features = EfficientNetLite1(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetlite1", include_top, weights, kwargs)


def EfficientNetLite2(include_top: bool = True, weights: str | None = "imagenet",
                      **kwargs: Any) -> keras.Model:
    """EfficientNet-Lite2 (260 px, ReLU6, no SE). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetLite2(weights=None)  # 6,150,168 parameters
        features = EfficientNetLite2(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetlite2", include_top, weights, kwargs)


def EfficientNetLite3(include_top: bool = True, weights: str | None = "imagenet",
                      **kwargs: Any) -> keras.Model:
    """EfficientNet-Lite3 (280 px, ReLU6, no SE). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetLite3(weights=None)  # 8,273,768 parameters
        features = EfficientNetLite3(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetlite3", include_top, weights, kwargs)


def EfficientNetLite4(include_top: bool = True, weights: str | None = "imagenet",
                      **kwargs: Any) -> keras.Model:
    """EfficientNet-Lite4 (300 px, ReLU6, no SE). Arguments as :func:`EfficientNet`.

    Example::

        model = EfficientNetLite4(weights=None)  # 13,118,936 parameters
        features = EfficientNetLite4(include_top=False, weights=None, pooling="avg")
    """
    return _classifier("efficientnetlite4", include_top, weights, kwargs)


def EfficientDetD0(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-D0 (512 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetD0(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 49104, 20], box_regression [B, 49104, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-d0"], num_classes, weights,
                        **kwargs)


def EfficientDetD1(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-D1 (640 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetD1(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 76725, 20], box_regression [B, 76725, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-d1"], num_classes, weights,
                        **kwargs)


def EfficientDetD2(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-D2 (768 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetD2(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 110484, 20], box_regression [B, 110484, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-d2"], num_classes, weights,
                        **kwargs)


def EfficientDetD3(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-D3 (896 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetD3(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 150381, 20], box_regression [B, 150381, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-d3"], num_classes, weights,
                        **kwargs)


def EfficientDetD4(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-D4 (1024 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetD4(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 196416, 20], box_regression [B, 196416, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-d4"], num_classes, weights,
                        **kwargs)


def EfficientDetD5(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-D5 (1280 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetD5(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 306900, 20], box_regression [B, 306900, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-d5"], num_classes, weights,
                        **kwargs)


def EfficientDetD6(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-D6 (1280 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetD6(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 306900, 20], box_regression [B, 306900, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-d6"], num_classes, weights,
                        **kwargs)


def EfficientDetD7(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-D7 (1536 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetD7(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 441936, 20], box_regression [B, 441936, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-d7"], num_classes, weights,
                        **kwargs)


def EfficientDetD7X(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-D7X (1536 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetD7X(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 442260, 20], box_regression [B, 442260, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-d7x"], num_classes, weights,
                        **kwargs)


def EfficientDetLite0(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-Lite0 (320 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetLite0(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 19206, 20], box_regression [B, 19206, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-lite0"], num_classes, weights,
                        **kwargs)


def EfficientDetLite1(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-Lite1 (384 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetLite1(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 27621, 20], box_regression [B, 27621, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-lite1"], num_classes, weights,
                        **kwargs)


def EfficientDetLite2(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-Lite2 (448 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetLite2(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 37629, 20], box_regression [B, 37629, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-lite2"], num_classes, weights,
                        **kwargs)


def EfficientDetLite3(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-Lite3 (512 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetLite3(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 49104, 20], box_regression [B, 49104, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-lite3"], num_classes, weights,
                        **kwargs)


def EfficientDetLite3X(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-Lite3X (640 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetLite3X(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 76725, 20], box_regression [B, 76725, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-lite3x"], num_classes, weights,
                        **kwargs)


def EfficientDetLite4(num_classes: int = 90, weights: str | None = None, **kwargs: Any
                  ) -> keras.Model:
    """EfficientDet-Lite4 (640 px, raw outputs). Arguments as :func:`EfficientDet`.

    Example::

        detector = EfficientDetLite4(num_classes=20)  # or weights="coco"
        # detector.output: class_logits [B, 76725, 20], box_regression [B, 76725, 4]
    """
    return EfficientDet(EFFICIENTDET_VARIANTS["efficientdet-lite4"], num_classes, weights,
                        **kwargs)


MODEL_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "efficientnetb0": EfficientNetB0,
    "efficientnetb1": EfficientNetB1,
    "efficientnetb2": EfficientNetB2,
    "efficientnetb3": EfficientNetB3,
    "efficientnetb4": EfficientNetB4,
    "efficientnetb5": EfficientNetB5,
    "efficientnetb6": EfficientNetB6,
    "efficientnetb7": EfficientNetB7,
    "efficientnetlite0": EfficientNetLite0,
    "efficientnetlite1": EfficientNetLite1,
    "efficientnetlite2": EfficientNetLite2,
    "efficientnetlite3": EfficientNetLite3,
    "efficientnetlite4": EfficientNetLite4,
    "efficientdet-d0": EfficientDetD0,
    "efficientdet-d1": EfficientDetD1,
    "efficientdet-d2": EfficientDetD2,
    "efficientdet-d3": EfficientDetD3,
    "efficientdet-d4": EfficientDetD4,
    "efficientdet-d5": EfficientDetD5,
    "efficientdet-d6": EfficientDetD6,
    "efficientdet-d7": EfficientDetD7,
    "efficientdet-d7x": EfficientDetD7X,
    "efficientdet-lite0": EfficientDetLite0,
    "efficientdet-lite1": EfficientDetLite1,
    "efficientdet-lite2": EfficientDetLite2,
    "efficientdet-lite3": EfficientDetLite3,
    "efficientdet-lite3x": EfficientDetLite3X,
    "efficientdet-lite4": EfficientDetLite4,
}


def get_model(name: str, **kwargs: Any) -> keras.Model:
    """Build a registered model by name (``"efficientnetb0"``, ``"b0"``, ``"lite0"``,
    ``"efficientdet-d0"``, ``"efficientdet-lite3x"`` ...).

    Names resolve by :func:`keras_efficient.configs.names.resolve_variant`: classifiers first,
    so ``"lite0"`` is EfficientNet-Lite0 (``"efficientdet-lite0"`` the detector) and ``"d0"`` is
    EfficientDet-D0. ``kwargs`` go to the builder (see :data:`MODEL_BUILDERS`).

    Example::

        classifier = get_model("b0", weights=None)
        detector = get_model("efficientdet-lite0", num_classes=3)
    """
    _, canonical = resolve_variant(name)
    return MODEL_BUILDERS[canonical](**kwargs)
