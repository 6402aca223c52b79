"""Export: TFLite conversion, the LiteRT runtime, verification against Keras, manifests.

Re-exported here (imported on first use, so that importing this package costs nothing):
``debug_quantization``, ``QuantizationReport`` and ``LayerError``, the per-layer int8 error
report of :mod:`keras_efficient.export.quant_debug`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_efficient.lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
