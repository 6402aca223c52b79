"""One builder per published variant: each is a one-liner over the scaling table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from keras_efficient.configs.efficientnet import EFFICIENTNET_VARIANTS
from keras_efficient.models.efficientnet import EfficientNet


def EfficientNetB0(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B0 (224 px). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetb0"], include_top, weights, **kwargs)


def EfficientNetB1(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B1 (240 px). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetb1"], include_top, weights, **kwargs)


def EfficientNetB2(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B2 (260 px). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetb2"], include_top, weights, **kwargs)


def EfficientNetB3(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B3 (300 px). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetb3"], include_top, weights, **kwargs)


def EfficientNetB4(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B4 (380 px). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetb4"], include_top, weights, **kwargs)


def EfficientNetB5(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B5 (456 px). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetb5"], include_top, weights, **kwargs)


def EfficientNetB6(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B6 (528 px). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetb6"], include_top, weights, **kwargs)


def EfficientNetB7(include_top: bool = True, weights: str | None = "imagenet",
                   **kwargs: Any) -> keras.Model:
    """EfficientNet-B7 (600 px). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetb7"], include_top, weights, **kwargs)


def EfficientNetLite0(include_top: bool = True, weights: str | None = "imagenet",
                      **kwargs: Any) -> keras.Model:
    """EfficientNet-Lite0 (224 px, ReLU6, no SE). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetlite0"], include_top, weights,
                        **kwargs)


def EfficientNetLite1(include_top: bool = True, weights: str | None = "imagenet",
                      **kwargs: Any) -> keras.Model:
    """EfficientNet-Lite1 (240 px, ReLU6, no SE). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetlite1"], include_top, weights,
                        **kwargs)


def EfficientNetLite2(include_top: bool = True, weights: str | None = "imagenet",
                      **kwargs: Any) -> keras.Model:
    """EfficientNet-Lite2 (260 px, ReLU6, no SE). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetlite2"], include_top, weights,
                        **kwargs)


def EfficientNetLite3(include_top: bool = True, weights: str | None = "imagenet",
                      **kwargs: Any) -> keras.Model:
    """EfficientNet-Lite3 (280 px, ReLU6, no SE). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetlite3"], include_top, weights,
                        **kwargs)


def EfficientNetLite4(include_top: bool = True, weights: str | None = "imagenet",
                      **kwargs: Any) -> keras.Model:
    """EfficientNet-Lite4 (300 px, ReLU6, no SE). Arguments as :func:`EfficientNet`."""
    return EfficientNet(EFFICIENTNET_VARIANTS["efficientnetlite4"], include_top, weights,
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
}


def get_model(name: str, **kwargs: Any) -> keras.Model:
    """Build a registered model by name (``"efficientnetb0"``, ``"b0"``, ``"lite0"``, ...)."""
    key = name.lower().replace("-", "").replace("_", "")
    for candidate in (key, f"efficientnet{key}"):
        if candidate in MODEL_BUILDERS:
            return MODEL_BUILDERS[candidate](**kwargs)
    raise ValueError(f"Unknown model {name!r}; known: {', '.join(MODEL_BUILDERS)}.")
