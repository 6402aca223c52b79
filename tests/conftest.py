"""Shared fixtures for every test package: a tiny detector spec and a tiny COCO-format set, so
that model, training and export tests take seconds, not minutes."""

import pytest

from keras_efficient.configs.efficientdet import get_efficientdet_spec
from keras_efficient.configs.efficientnet import get_efficientnet_scaling
from keras_efficient.data.synthetic import make_detection_dataset

TINY_BACKBONE = get_efficientnet_scaling("lite0").with_(name="tinylite", width=0.25, depth=0.25)
TINY_OVERRIDES = {"backbone": TINY_BACKBONE, "input_size": 64, "max_level": 5,
                  "fpn_filters": 16, "fpn_cells": 1, "head_repeats": 1}


def tiny_spec():
    return get_efficientdet_spec("lite0").with_(**TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return make_detection_dataset(root / "data", num_train=8, num_val=4, image_size=(64, 64),
                                  max_objects=2, seed=3)
