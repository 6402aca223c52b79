"""Scaling tables and architecture specs: pure Python data, no TensorFlow import."""

from keras_efficient.configs.efficientnet import (
    B0_STAGES,
    EFFICIENTNET_VARIANTS,
    FEATURE_LEVEL_STAGES,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    BlockSpec,
    EfficientNetScaling,
    StageSpec,
    expand_blocks,
    feature_blocks,
    feature_layer_names,
    get_efficientnet_scaling,
    round_filters,
    round_repeats,
    scaled_stages,
)
from keras_efficient.configs.names import is_detector, known_variants, resolve_variant

__all__ = [
    "B0_STAGES",
    "EFFICIENTNET_VARIANTS",
    "FEATURE_LEVEL_STAGES",
    "IMAGENET_MEAN_RGB",
    "IMAGENET_STD_RGB",
    "BlockSpec",
    "EfficientNetScaling",
    "StageSpec",
    "expand_blocks",
    "feature_blocks",
    "feature_layer_names",
    "get_efficientnet_scaling",
    "is_detector",
    "known_variants",
    "resolve_variant",
    "round_filters",
    "round_repeats",
    "scaled_stages",
]
