"""Lazy re-exports for package namespaces: a name is imported from its module on first use, so
importing a package stays cheap (and ``import keras_efficient.configs`` free of TensorFlow)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package`` that import each name of
    ``exports`` (name → module) on first access and cache it in ``namespace`` (the package's
    ``globals()``).

    Example::

        __getattr__, __dir__ = lazy_exports(__name__, {"train": "keras_efficient.training.api"},
                                            globals())
    """
    def get_attribute(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def names() -> list[str]:
        return sorted([*namespace, *exports])

    return get_attribute, names
