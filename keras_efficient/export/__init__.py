"""Export: TFLite conversion, the LiteRT runtime, verification against Keras, manifests.

Re-exported here (imported on first use, so that importing this package costs nothing):
``debug_quantization``, ``QuantizationReport`` and ``LayerError``, the per-layer int8 error
report of :mod:`keras_efficient.export.quant_debug`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "debug_quantization": "keras_efficient.export.quant_debug",
    "QuantizationReport": "keras_efficient.export.quant_debug",
    "LayerError": "keras_efficient.export.quant_debug",
}

__all__ = ["LayerError", "QuantizationReport", "debug_quantization"]

if TYPE_CHECKING:
    from keras_efficient.export.quant_debug import (
        LayerError,
        QuantizationReport,
        debug_quantization,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_efficient.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
