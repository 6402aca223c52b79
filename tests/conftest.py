"""Shared fixtures for every test package: a tiny COCO-format set and one finished training
run on it (the tiny models and the shared checks are in :mod:`tests.harness`), so that model,
training and export tests take seconds, not minutes."""

import pytest

from keras_efficient.data.synthetic import make_detection_dataset
from tests.harness import TINY_BACKBONE, TINY_OVERRIDES, tiny_spec, train_config

__all__ = ["TINY_BACKBONE", "TINY_OVERRIDES", "tiny_spec"]  # tests import them from tests.harness


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return make_detection_dataset(root / "data", num_train=8, num_val=4, image_size=(64, 64),
                                  max_objects=2, seed=3)


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    """One finished ``train_detector`` run of the tiny detector on ``tiny_data`` (4 epochs of 4
    steps, ``resize="stretch"``: the mode that is not the default, so that the tests reading
    the run also see it recorded; every other training test trains the default letterbox),
    shared by every test that only reads what training leaves (its ``TrainResult``; the run
    folder is ``tiny_run.weights_path.parent``). One training costs 17-26 CPU-seconds, nearly
    all of it tracing, so tests that need a trained detector but do not test training itself
    start from this one. Treat the folder as read-only: copy it first to change anything."""
    from keras_efficient.training.detector import train_detector

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    return train_detector(train_config(tiny_data, out, epochs=4, steps_per_epoch=4,
                                       resize="stretch"))
