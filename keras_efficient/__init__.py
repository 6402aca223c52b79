"""keras_efficient: EfficientNet and EfficientDet for Keras 3, ready for TFLite and EdgeTPU.

The public API is what this namespace re-exports (builders, the detector model, inference,
training, evaluation and export entry points), imported on first use so that
``import keras_efficient.configs`` stays free of TensorFlow. The names each subpackage page in
docs/ lists are public too (the lower-level building blocks: tables, layers, anchors, NMS,
converters); everything else, module paths included, is implementation and may change between
releases. Argument names follow the family each model comes from: ``classes`` for the
classifiers (keras.applications), ``num_classes`` for the detectors (automl, keras-hub).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_efficient.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "EFFICIENTNET_VARIANTS": "keras_efficient.configs",
    "EfficientNetScaling": "keras_efficient.configs",
    "EfficientNet": "keras_efficient.models",
    "EfficientNetBackbone": "keras_efficient.models",
    **{f"EfficientNetB{i}": "keras_efficient.models" for i in range(8)},
    **{f"EfficientNetLite{i}": "keras_efficient.models" for i in range(5)},
    "get_model": "keras_efficient.models",
    "EfficientDet": "keras_efficient.models",
    "EfficientDetector": "keras_efficient.models.efficientdet",
    "EFFICIENTDET_VARIANTS": "keras_efficient.configs.efficientdet",
    **{f"EfficientDetD{i}": "keras_efficient.models" for i in (*range(8), "7X")},
    **{f"EfficientDetLite{i}": "keras_efficient.models" for i in (0, 1, 2, 3, "3X", 4)},
    "decode_predictions": "keras_efficient.models.imagenet",
    "preprocess_input": "keras_efficient.models.imagenet",
    "inference_model": "keras_efficient.detection.inference",
    "NonMaxSuppression": "keras_efficient.detection.postprocess",
    "train": "keras_efficient.training.api",
    "DetectorTrainConfig": "keras_efficient.training.api",
    "ClassifierTrainConfig": "keras_efficient.training.api",
    "load_trained_detector": "keras_efficient.training.run_folder",
    "evaluate_detector": "keras_efficient.evaluation.detector",
    "export_model": "keras_efficient.export.pipeline",
    "load_recipe": "keras_efficient.export.recipes",
}

__all__ = [
    "EFFICIENTDET_VARIANTS",
    "EFFICIENTNET_VARIANTS",
    "ClassifierTrainConfig",
    "DetectorTrainConfig",
    "EfficientDet",
    "EfficientDetD0",
    "EfficientDetD1",
    "EfficientDetD2",
    "EfficientDetD3",
    "EfficientDetD4",
    "EfficientDetD5",
    "EfficientDetD6",
    "EfficientDetD7",
    "EfficientDetD7X",
    "EfficientDetLite0",
    "EfficientDetLite1",
    "EfficientDetLite2",
    "EfficientDetLite3",
    "EfficientDetLite3X",
    "EfficientDetLite4",
    "EfficientDetector",
    "EfficientNet",
    "EfficientNetB0",
    "EfficientNetB1",
    "EfficientNetB2",
    "EfficientNetB3",
    "EfficientNetB4",
    "EfficientNetB5",
    "EfficientNetB6",
    "EfficientNetB7",
    "EfficientNetBackbone",
    "EfficientNetLite0",
    "EfficientNetLite1",
    "EfficientNetLite2",
    "EfficientNetLite3",
    "EfficientNetLite4",
    "EfficientNetScaling",
    "NonMaxSuppression",
    "decode_predictions",
    "evaluate_detector",
    "export_model",
    "get_model",
    "inference_model",
    "load_recipe",
    "load_trained_detector",
    "preprocess_input",
    "train",
]

if TYPE_CHECKING:
    from keras_efficient.configs import EFFICIENTNET_VARIANTS, EfficientNetScaling
    from keras_efficient.configs.efficientdet import EFFICIENTDET_VARIANTS
    from keras_efficient.detection.inference import inference_model
    from keras_efficient.detection.postprocess import NonMaxSuppression
    from keras_efficient.evaluation.detector import evaluate_detector
    from keras_efficient.export.pipeline import export_model
    from keras_efficient.export.recipes import load_recipe
    from keras_efficient.models import (
        EfficientDet,
        EfficientDetD0,
        EfficientDetD1,
        EfficientDetD2,
        EfficientDetD3,
        EfficientDetD4,
        EfficientDetD5,
        EfficientDetD6,
        EfficientDetD7,
        EfficientDetD7X,
        EfficientDetLite0,
        EfficientDetLite1,
        EfficientDetLite2,
        EfficientDetLite3,
        EfficientDetLite3X,
        EfficientDetLite4,
        EfficientNet,
        EfficientNetB0,
        EfficientNetB1,
        EfficientNetB2,
        EfficientNetB3,
        EfficientNetB4,
        EfficientNetB5,
        EfficientNetB6,
        EfficientNetB7,
        EfficientNetBackbone,
        EfficientNetLite0,
        EfficientNetLite1,
        EfficientNetLite2,
        EfficientNetLite3,
        EfficientNetLite4,
        get_model,
    )
    from keras_efficient.models.efficientdet import EfficientDetector
    from keras_efficient.models.imagenet import decode_predictions, preprocess_input
    from keras_efficient.training.api import ClassifierTrainConfig, DetectorTrainConfig, train
    from keras_efficient.training.run_folder import load_trained_detector


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

from keras_efficient.keras_objects import register_when_keras_loads  # noqa: E402

register_when_keras_loads()
