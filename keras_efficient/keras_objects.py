"""Registering this package's Keras objects, so that ``keras.saving.load_model`` finds them.

Keras resolves the classes of a ``.keras`` file (the detector, its layers, schedules,
optimizers) in its registry of custom objects, filled as their modules are imported; for
packages other than its own it imports nothing itself. ``import keras_efficient`` must stay
free of TensorFlow (``keras_efficient.configs`` is imported by tools that never build a model),
so it cannot import the model modules eagerly. Instead :func:`register_when_keras_loads` (run
by ``import keras_efficient``) registers them at once when Keras is already imported, and
otherwise right after Keras' own import: ``import keras_efficient; import keras;
keras.saving.load_model("detector.keras")`` works, as it does for keras-hub.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

#: Every module that registers a Keras serializable object.
MODULES = (
    "keras_efficient.layers.checks",
    "keras_efficient.layers.normalization",
    "keras_efficient.layers.fusion",
    "keras_efficient.layers.resample",
    "keras_efficient.layers.fake_quant",
    "keras_efficient.detection.losses",
    "keras_efficient.detection.postprocess",
    "keras_efficient.detection.inference",
    "keras_efficient.models.efficientdet",
    "keras_efficient.training.schedules",
    "keras_efficient.training.optimizers",
)


def register() -> None:
    """Import every module of :data:`MODULES` (their decorators register the objects)."""
    for module in MODULES:
        importlib.import_module(module)


class _RegisteringLoader(importlib.abc.Loader):
    """Keras' own loader, followed by :func:`register` once Keras is fully imported."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        _remove_finder()
        register()


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Finds Keras where the standard path finder does, with a loader that registers after
    it; finds nothing else. Stays until Keras is imported (a mere ``find_spec("keras")``, as
    TensorFlow does to probe for Keras, does not use it up)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "keras":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AfterKerasImport)]


def register_when_keras_loads() -> None:
    """Register now if Keras is imported, else as soon as it is (see the module docstring)."""
    if "keras" in sys.modules:
        register()
    elif not any(isinstance(finder, _AfterKerasImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport())
