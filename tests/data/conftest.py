"""Shared fixtures: small synthetic datasets, generated once per session."""

from __future__ import annotations

import pytest

from keras_efficient.data.synthetic import (
    SyntheticDataset,
    SyntheticImageFolder,
    make_classification_dataset,
    make_detection_dataset,
)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    root = tmp_path_factory.mktemp("synthetic") / "shapes"
    return make_detection_dataset(root, num_train=6, num_val=2, image_size=(96, 128),
                                  max_objects=4, seed=3, difficulty="medium")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> SyntheticImageFolder:
    root = tmp_path_factory.mktemp("folder") / "classes"
    return make_classification_dataset(root, per_class=4, image_size=(32, 40), seed=1)

