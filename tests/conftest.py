"""Shared fixtures for every test package: a tiny COCO-format set (the tiny models and the
shared checks are in :mod:`tests.harness`), so that model, training and export tests take
seconds, not minutes."""

import pytest

from keras_efficient.data.synthetic import make_detection_dataset
from tests.harness import TINY_BACKBONE, TINY_OVERRIDES, tiny_spec

__all__ = ["TINY_BACKBONE", "TINY_OVERRIDES", "tiny_spec"]  # tests import them from tests.harness


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return make_detection_dataset(root / "data", num_train=8, num_val=4, image_size=(64, 64),
                                  max_objects=2, seed=3)
