"""Load a weights file of any supported kind into a built model.

* Keras 3 ``.weights.h5`` / ``.keras``: loaded by layer path (our own saves, fine-tuned models).
* Legacy ``.h5`` (keras.applications files): loaded by order of the weight-owning layers, then
  the ImageNet normalization quirk is corrected (see :func:`fix_imagenet_variance`).
* A TF checkpoint prefix or directory (official EfficientNet-Lite / B checkpoints): converted by
  name with :mod:`keras_efficient.weights.checkpoint`.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from keras_efficient.configs.efficientnet import (
    IMAGENET_STD_RGB,
    EfficientNetScaling,
    get_efficientnet_scaling,
)
from keras_efficient.weights.checkpoint import checkpoint_prefix, load_efficientnet_checkpoint


class UnreadableWeightsFileError(ValueError):
    """A weights file cannot be read at all: empty, truncated, or not HDF5 / a ``.keras`` zip.

    Example::

        try:
            EfficientNetB0(weights="b0.weights.h5")
        except UnreadableWeightsFileError as error:
            print(error.path)  # download or save it again
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        kind = "Keras .keras archive" if self.path.endswith(".keras") else "HDF5 weights file"
        super().__init__(
            f"The weights file {self.path!r} is not a readable {kind} (it is empty, truncated "
            f"or not in that format: {reason}). Download it again, or save it again with "
            "model.save_weights(...) / model.save(...)."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.reason))


def check_readable(path: str | os.PathLike[str]) -> None:
    """Raise :class:`UnreadableWeightsFileError` unless ``path`` opens as HDF5 (or zip for .keras).

    Example::

        check_readable("runs/flowers/classifier.weights.h5")  # silent for a good file
    """
    name = os.fspath(path)
    if name.endswith(".keras"):
        if not zipfile.is_zipfile(name):
            raise UnreadableWeightsFileError(name, "not a zip archive")
        return
    import h5py

    try:
        size = os.path.getsize(name)
        if size == 0:
            raise UnreadableWeightsFileError(name, "0 bytes")
        with h5py.File(name, "r"):
            pass
    except OSError as error:
        raise UnreadableWeightsFileError(name, str(error)) from error


@contextmanager
def _held_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record warnings; re-emit them only if the block succeeds (a failure says it all)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    for message in caught:
        warnings.warn_explicit(message.message, message.category, message.filename,
                               message.lineno, module=_module_of(message.filename),
                               source=message.source)


def _module_of(filename: str) -> str | None:
    """The module name of a source file, so that re-emitted warnings meet the same filters."""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return None


def _weight_layer_count(model: Any) -> int:
    return sum(1 for layer in model._flatten_layers(include_self=False) if layer.weights)


def _mismatch_summary(error: Exception, model: Any) -> str:
    """One sentence out of Keras' mismatch error (which lists every layer)."""
    text = str(error)
    total = re.search(r"A total of (\d+) objects could not be loaded", text)
    parts = text.split("\n\n")
    if total is None or len(parts) < 2:
        return text.split("Target variable")[0].strip()
    return (f"{total.group(1)} of the model's {_weight_layer_count(model)} weight layers do not "
            f"match the file (first: {parts[1].strip()})")


def _load_keras_weights(model: Any, name: str) -> None:
    check_readable(name)
    try:
        with _held_warnings():
            model.load_weights(name)
    except ValueError as error:
        raise ValueError(
            f"Could not load the weights file {name!r} into {model.name!r}: "
            f"{_mismatch_summary(error, model)}. The file was probably saved from another "
            "variant or configuration: build the model with the same variant, include_top, "
            "classes, num_classes and input channels as the model that saved the file."
        ) from error
    except (OSError, zipfile.BadZipFile) as error:  # opens, but its data cannot be read
        raise UnreadableWeightsFileError(name, str(error)) from error


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
    A file that cannot be read raises :class:`UnreadableWeightsFileError`; one saved from
    another variant, a ``ValueError`` that says how many layers do not match.

    Example::

        load_weights_file(model, "runs/flowers/classifier.weights.h5")
        load_weights_file(model, "efficientnet-lite0/", get_efficientnet_scaling("lite0"))
    """
    name = os.fspath(path)
    if name.endswith((".weights.h5", ".keras")):
        _load_keras_weights(model, name)
        return
    if name.endswith(".weights.json"):
        model.load_weights(name)
        return
    if name.endswith((".h5", ".hdf5")):
        check_readable(name)
        try:
            model.load_weights(name)
        except OSError as error:
            raise UnreadableWeightsFileError(name, str(error)) from error
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
