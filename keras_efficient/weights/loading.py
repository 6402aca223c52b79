"""Load a weights file of any supported kind into a built model.

* Keras 3 ``.weights.h5`` / ``.keras``: loaded by layer path (our own saves, fine-tuned models).
* Legacy ``.h5`` (keras.applications files): loaded by order of the weight-owning layers, then
  the ImageNet normalization quirk is corrected (see :func:`fix_imagenet_variance`).
* A TF checkpoint prefix or directory (official EfficientNet-Lite / B checkpoints): converted by
  name with :mod:`keras_efficient.weights.checkpoint`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from keras_efficient.configs.efficientnet import (
    IMAGENET_STD_RGB,
    EfficientNetScaling,
    get_efficientnet_scaling,
)
from keras_efficient.weights.checkpoint import checkpoint_prefix, load_efficientnet_checkpoint


def is_weights_source(path: Any) -> bool:
    """True if ``path`` names an existing weights file or TF checkpoint.

    Example::

        is_weights_source("b0.weights.h5"), is_weights_source("imagenet")  # (True, False)
    """
    if not isinstance(path, str | os.PathLike):
        return False
    return os.path.isfile(path) or checkpoint_prefix(path) is not None


def fix_imagenet_variance(model: Any) -> bool:
    """Correct the keras.applications normalization quirk after loading a legacy file.

    The published files store the ImageNet *standard deviations* in the Normalization layer's
    variance slot (keras then adds a hidden extra rescaling). Our graph has no such rescaling,
    so a variance equal to the standard deviations is squared here; the model then computes
    exactly ``(x / 255 - mean) / std``, as keras.applications' ImageNet model does.

    Example::

        model.load_weights("efficientnetb0.h5")  # a keras.applications file
        fix_imagenet_variance(model)  # True: the variance slot held standard deviations
    """
    try:
        layer = model.get_layer("normalization")
    except ValueError:
        return False
    mean, variance, count = layer.get_weights()
    std = np.asarray(IMAGENET_STD_RGB, dtype=variance.dtype)
    if variance.shape != std.shape or not np.allclose(variance, std, rtol=0, atol=1e-6):
        return False
    layer.set_weights([mean, np.square(std), count])
    layer.finalize_state()  # Normalization caches its statistics; refresh them.
    return True


def load_weights_file(model: Any, path: str | os.PathLike[str],
                      scaling: EfficientNetScaling | None = None) -> None:
    """Load ``path`` into ``model`` (see the module docstring for the supported kinds).

    ``scaling`` is needed for TF checkpoints when the model's name is not a variant name.

    Example::

        load_weights_file(model, "runs/flowers/classifier.weights.h5")
        load_weights_file(model, "efficientnet-lite0/", get_efficientnet_scaling("lite0"))
    """
    name = os.fspath(path)
    if name.endswith((".weights.h5", ".keras", ".weights.json")):
        try:
            model.load_weights(name)
        except ValueError as error:
            first_line = str(error).split("Target variable")[0].strip()
            raise ValueError(
                f"Could not load the weights file {name!r} into {model.name!r}: {first_line} "
                "Build the model with the same variant, include_top, classes and input "
                "channels as the model that saved the file."
            ) from error
        return
    if name.endswith((".h5", ".hdf5")):
        try:
            model.load_weights(name)
        except ValueError as error:
            raise ValueError(
                f"Could not load the legacy weights file {name!r} into {model.name!r}: {error} "
                "Legacy .h5 files load by layer order, so the file must come from the same "
                "variant built with the same include_top."
            ) from error
        fix_imagenet_variance(model)
        return
    prefix = checkpoint_prefix(name)
    if prefix is not None:
        scaling = scaling or get_efficientnet_scaling(model.name)
        include_top = any(layer.name == "predictions" for layer in model.layers)
        load_efficientnet_checkpoint(model, prefix, scaling, include_top)
        return
    raise ValueError(
        f"Unrecognised weights file {name!r}: expected a Keras '.weights.h5' or '.keras' file, "
        "a keras.applications '.h5' file, or a TF checkpoint prefix/directory."
    )
