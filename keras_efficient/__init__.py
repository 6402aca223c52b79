"""keras_efficient: EfficientNet and EfficientDet for Keras 3, ready for TFLite and EdgeTPU."""

from keras_efficient.configs import EFFICIENTNET_VARIANTS, EfficientNetScaling
from keras_efficient.models import (
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
from keras_efficient.models.imagenet import decode_predictions, preprocess_input

__version__ = "0.1.0"

__all__ = [
    "EFFICIENTNET_VARIANTS",
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
    "__version__",
    "decode_predictions",
    "get_model",
    "preprocess_input",
]
