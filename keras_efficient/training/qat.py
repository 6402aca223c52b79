"""Quantization-aware fine-tuning (QAT) in Keras 3, without tensorflow-model-optimization.

:func:`quantization_aware` turns a trained float detector into its quantization-aware twin
(``EfficientDetector(..., qat=True)``: :mod:`keras_efficient.layers.fake_quant` layers, batch
normalization folded into the convolutions as the TFLite converter folds it, BN statistics
frozen) with the trained weights; ``train_detector`` with ``qat=True`` (``keras-efficient train
--qat --weights trained.keras``) then fine-tunes it. The activation ranges are the moving
averages of the batch min/max seen in fine-tuning (the first batch sets them), so the converted
int8 model needs no representative dataset: the export reads the ranges from the fake-quant ops.
"""

from __future__ import annotations

from typing import Any

from keras_efficient.layers.quantize_graph import copy_float_weights
from keras_efficient.models.efficientdet import EfficientDetector


def is_quantization_aware(model: Any) -> bool:
    """True for a detector built with ``qat=True`` (fine-tuned with :func:`quantization_aware`).

    Example::

        is_quantization_aware(keras.saving.load_model("runs/qat/detector.keras"))  # True
    """
    return bool(getattr(model, "qat", False))


def quantization_aware(detector: EfficientDetector) -> EfficientDetector:
    """The quantization-aware twin of a trained float ``detector``: same spec, classes, label
    map and name, the float weights copied in (a QAT detector is returned as it is).

    Example::

        qat = quantization_aware(keras.saving.load_model("runs/float/detector.keras"))
        qat.qat  # True: fake-quantized, BN folded; fine-tune it, then export int8
    """
    if not isinstance(detector, EfficientDetector):
        raise ValueError(f"Quantization-aware training needs an EfficientDetector (a raw "
                         f"keras_efficient.EfficientDet); received {type(detector).__name__}.")
    if is_quantization_aware(detector):
        return detector
    twin = EfficientDetector(detector.spec, detector.num_classes,
                             image_size=detector.image_size,
                             label_map=None if detector.label_map is None else [
                                 list(pair) for pair in detector.label_map],
                             pretrained=detector.pretrained, resize=detector.resize,
                             qat=True, name=detector.name)
    copy_float_weights(twin, detector)
    return twin
