"""Files saved by earlier releases still load: the weights' addresses in Keras files are fixed.

Keras 3 stores a functional model's weights (``.keras``, ``.weights.h5``) under paths built from
each layer's snake-cased class name and position (``layers/batch_normalization_7/vars/0``), not
from layer names. Renaming or adding a layer class, or reordering layers, silently moves those
paths and every file saved before no longer loads ("expected 4 variables, but received 0"). The
goldens are the paths the last release with Keras' own batch normalization wrote
(``golden/make_weight_paths.py`` says how to regenerate them from a release).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import keras
import pytest

import keras_efficient as ke

GOLDEN = Path(__file__).parent / "golden"

MODELS: dict[str, Callable[[], keras.Model]] = {
    "efficientnetb0": lambda: ke.EfficientNetB0(weights=None),
    "efficientdet-d0": lambda: ke.EfficientDet("efficientdet-d0", num_classes=3,
                                               input_shape=(128, 128, 3)),
}


def golden_path(name: str) -> Path:
    return GOLDEN / f"weight_paths_{name}.txt"


def weight_paths(model: keras.Model) -> list[str]:
    """Every weight of ``model.save_weights`` as ``path (shape)``, in file order."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.weights.h5"
        model.save_weights(path)
        rows: list[str] = []
        with h5py.File(path, "r") as file:
            file.visititems(lambda name, obj: rows.append(f"{name} {obj.shape}")
                            if isinstance(obj, h5py.Dataset) else None)
    return rows


@pytest.mark.parametrize("name", sorted(MODELS))
def test_weight_file_paths_are_those_earlier_releases_wrote(name):
    expected = golden_path(name).read_text().splitlines()
    got = weight_paths(MODELS[name]())
    moved = sorted(set(expected) - set(got))
    assert got == expected, (
        f"{name}: {len(moved)} weight paths moved (first: {moved[:3]}); files saved by earlier "
        "releases would no longer load. Keep Keras' class names for layers that hold weights.")
