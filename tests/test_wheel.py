"""A non-editable install from a built wheel works away from the source tree.

The wheel is built from a copy of the project's packaging files, installed with ``pip install
--target`` into a fresh folder, and used from another working directory with only that folder
(and the environment's dependencies, not this checkout) on the import path: the built-in
recipes load, a tiny model exports with one of them, a tiny detector's inference model runs
(batch normalization folded), and the console script runs.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.harness import TINY_OVERRIDES

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ("setup.cfg", "pyproject.toml", "README.md")

USE_FROM_WHEEL = textwrap.dedent("""
    import dataclasses, json, os, sys
    from pathlib import Path

    import keras_efficient
    where = Path(keras_efficient.__file__).resolve()
    assert where.is_relative_to(Path(sys.argv[1]).resolve()), where

    import numpy as np
    from keras_efficient.configs.efficientnet import get_efficientnet_scaling
    from keras_efficient.export.pipeline import export_model
    from keras_efficient.export.recipes import available_recipes, load_recipe
    from keras_efficient.models.efficientnet import EfficientNet

    assert set(available_recipes()) == {"all", "android-int8", "edgetpu", "server"}
    recipe = load_recipe("android-int8")
    assert recipe.formats == ("int8",) and recipe.metadata
    tiny = get_efficientnet_scaling("lite0").with_(name="tinylite", width=0.25, depth=0.25)
    model = EfficientNet(tiny, weights=None, classes=3, input_shape=(32, 32, 3))
    images = [np.random.default_rng(i).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
              for i in range(4)]
    recipe = dataclasses.replace(recipe, representative_count=4, latency_runs=1)
    manifest = export_model(model, recipe, "out", representative=images,
                            weights_origin="fine-tuned (test)", labels=["a", "b", "c"],
                            log=lambda *_: None)
    [artifact] = manifest["artifacts"]
    assert artifact["format"] == "tflite-int8" and artifact["metadata"], artifact
    assert Path("out", artifact["file"]).is_file()

    # Detector inference runs the batch-norm-folded network (layers.fold_batch_norm).
    from keras_efficient.configs.efficientdet import get_efficientdet_spec
    from keras_efficient.detection.inference import inference_model
    from keras_efficient.evaluation.predict import wrapped_detector
    from keras_efficient.models.efficientdet import EfficientDet

    spec = get_efficientdet_spec("lite0").with_(backbone=tiny, **json.loads(sys.argv[2]))
    serving = inference_model(EfficientDet(spec, num_classes=2), max_detections=3)
    assert wrapped_detector(serving).fold_batch_norm
    out = serving([np.zeros((1, 64, 64, 3), "float32"), np.array([[1.0, 64, 64]], "float32")])
    assert tuple(out["boxes"].shape) == (1, 3, 4)
    print("wheel ok", where.parent)
""")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in PACKAGING:
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "keras_efficient", source / "keras_efficient",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(dist), str(source)],
                   check=True, capture_output=True, timeout=300)
    [built] = dist.glob("keras_efficient-*.whl")
    return built


def test_wheel_ships_the_recipes(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for recipe in ("server", "android-int8", "edgetpu", "all"):
        assert f"keras_efficient/export/recipes/{recipe}.json" in names
    assert not any(name.startswith(("tests/", "export/", "notebooks/")) for name in names)


def test_installed_wheel_loads_recipes_and_exports_elsewhere(wheel, tmp_path):
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", USE_FROM_WHEEL, str(target),
                           json.dumps({key: value for key, value in TINY_OVERRIDES.items()
                                       if key != "backbone"})], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "wheel ok" in done.stdout
    script = target / "bin" / "keras-efficient"
    assert script.is_file()
    summary = subprocess.run([sys.executable, str(script), "summary", "lite0"], cwd=elsewhere,
                             env=env, capture_output=True, text=True, timeout=300)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "efficientnet" in summary.stdout.lower() and "parameters" in summary.stdout
