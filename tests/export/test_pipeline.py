"""Recipes and the export pipeline: artifacts, manifest, verification, failure leaves nothing."""

import json

import numpy as np
import pytest

from keras_efficient.export.pipeline import export_model
from keras_efficient.export.recipes import Recipe, available_recipes, load_recipe
from keras_efficient.export.tflite import ExportError
from keras_efficient.models.efficientnet import EfficientNet
from tests.export.test_tflite import TINY


@pytest.fixture(scope="module")
def classifier():
    return EfficientNet(TINY, weights=None, classes=4, input_shape=(64, 64, 3))


def samples(count=6):
    return [np.random.default_rng(i).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
            for i in range(count)]


def test_shipped_recipes_load():
    assert {"server", "android-int8", "all"} <= set(available_recipes())
    assert load_recipe("android-int8").formats == ("int8",)
    assert load_recipe("android-int8").input_type == "uint8"


def test_recipe_errors(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown export recipe 'ios'.*android-int8"):
        load_recipe("ios")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"formats": ["int4"]}))
    with pytest.raises(ValueError, match="unknown: \\['int4'\\]"):
        load_recipe(bad)
    bad.write_text(json.dumps({"formats": ["int8"], "colour": "red"}))
    with pytest.raises(ValueError, match="unknown keys \\['colour'\\]"):
        load_recipe(bad)


def test_export_writes_verified_artifacts_and_manifest(classifier, tmp_path):
    recipe = Recipe(name="t", formats=("float32", "int8"), input_type="uint8", latency_runs=2)
    manifest = export_model(classifier, recipe, tmp_path / "out", representative=samples(),
                            weights_origin="random", log=lambda *_: None)
    written = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert written == manifest
    float32, int8 = manifest["artifacts"]
    assert float32["accuracy"]["max_abs_delta"] < 1e-4
    assert int8["inputs"][0]["dtype"] == "uint8"
    assert 0.0 <= int8["accuracy"]["top1_agreement"] <= 1.0
    for artifact in manifest["artifacts"]:
        path = tmp_path / "out" / artifact["file"]
        assert path.stat().st_size == artifact["bytes"]
        assert set(artifact["latency_ms"]) == {"1_threads", "2_threads"}
    assert manifest["versions"]["tensorflow"].startswith("2.21")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_export_leaves_nothing_and_names_the_step(classifier, tmp_path, monkeypatch):
    from keras_efficient.export import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("simulated converter crash")

    monkeypatch.setattr(pipeline, "convert", broken)
    recipe = Recipe(name="t", formats=("float32",))
    with pytest.raises(ExportError, match=r"'float32: convert' failed.*simulated"):
        export_model(classifier, recipe, tmp_path / "out", representative=samples(2),
                     log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


def test_export_input_errors(classifier, tmp_path):
    recipe = Recipe(name="t", formats=("float32",))
    with pytest.raises(ValueError, match="representative dataset is empty"):
        export_model(classifier, recipe, tmp_path / "a", representative=[])
    (tmp_path / "exists").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        export_model(classifier, recipe, tmp_path / "exists", representative=samples(1))
    with pytest.raises(ValueError, match="Cannot write into"):
        export_model(classifier, recipe, tmp_path / "no" / "such", representative=samples(1))
    trained_only = Recipe(name="t", formats=("int8",), requires_trained_weights=True)
    with pytest.raises(ValueError, match="needs trained weights"):
        export_model(classifier, trained_only, tmp_path / "b", representative=samples(1),
                     weights_origin="random")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]
