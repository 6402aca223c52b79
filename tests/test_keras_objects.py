"""``import keras_efficient`` is enough for ``keras.saving.load_model`` to find our classes,
whether Keras is imported before or after it, and without importing TensorFlow itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras

import keras_efficient
from keras_efficient.keras_objects import MODULES, register_when_keras_loads
from keras_efficient.models.efficientdet import EfficientDet
from tests.harness import tiny_spec

PACKAGE = Path(keras_efficient.__file__).parent


def test_every_module_that_registers_objects_is_listed():
    registering = {
        "keras_efficient." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for path in PACKAGE.rglob("*.py")
        if "register_keras_serializable" in path.read_text() and path.name != "keras_objects.py"}
    assert registering == set(MODULES)


def test_keras_imported_after_the_package_loads_a_detector_file(tmp_path):
    path = tmp_path / "tiny.keras"
    EfficientDet(tiny_spec(), num_classes=3, resize="stretch").save(path)
    code = ("import sys, keras_efficient; assert 'tensorflow' not in sys.modules; "
            "import keras; "
            f"model = keras.saving.load_model({str(path)!r}, safe_mode=True); "
            "print(type(model).__name__, model.resize)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["EfficientDetector", "stretch"]


def test_keras_imported_first_registers_at_once():
    register_when_keras_loads()  # this process: Keras is imported already
    assert keras.saving.get_registered_object(
        "keras_efficient>EfficientDetector") is keras_efficient.EfficientDetector
