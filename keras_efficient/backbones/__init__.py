"""Feature extractors shared by the classifiers and the detectors."""

from keras_efficient.backbones.efficientnet import efficientnet_body

__all__ = ["efficientnet_body"]
