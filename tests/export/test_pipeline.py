"""Recipes and the export pipeline: artifacts, manifest, verification, failure leaves nothing."""

import json

import numpy as np
import pytest

from keras_efficient.export.pipeline import export_model
from keras_efficient.export.recipes import Recipe, available_recipes, load_recipe
from keras_efficient.export.tflite import ExportError
from keras_efficient.models.efficientnet import EfficientNet
from tests.harness import TINY_BACKBONE as TINY


@pytest.fixture(scope="module")
def classifier():
    return EfficientNet(TINY, weights=None, classes=4, input_shape=(64, 64, 3))


def samples(count=6):
    return [np.random.default_rng(i).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
            for i in range(count)]


def test_export_debugs_quantization_into_the_folder_and_manifest(classifier, tmp_path):
    recipe = Recipe(name="t", formats=("int8",), latency_runs=1)
    manifest = export_model(classifier, recipe, tmp_path / "out", representative=samples(),
                            weights_origin="random", debug_quantization=3,
                            log=lambda *_: None)
    debug = manifest["quantization_debug"]
    assert debug["tool"] == "tf.lite.experimental.QuantizationDebugger"
    assert len(debug["worst"]) == 3 and debug["layers_debugged"] > 3
    scores = [row["rmse/scale"] for row in debug["worst"]]
    assert scores == sorted(scores, reverse=True)
    names = {layer.name for layer in classifier.layers}
    assert all(set(row["layers"]) <= names for row in debug["worst"])
    for name in debug["files"]:
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert sorted(debug["files"]) == ["quantization_debug.csv", "quantization_debug.md",
                                      "quantization_debug.png"]


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


# --------------------------------------------------------------------------- detectors


@pytest.fixture(scope="module")
def detector_export(tmp_path_factory):
    from keras_efficient.data.representative import representative_images
    from keras_efficient.data.synthetic import make_detection_dataset
    from keras_efficient.export.verify import HeldOutSet
    from keras_efficient.models.efficientdet import EfficientDet
    from tests.harness import tiny_spec

    root = tmp_path_factory.mktemp("detector_export")
    data = make_detection_dataset(root / "data", num_train=4, num_val=3, image_size=(80, 96),
                                  max_objects=2, seed=5)
    val = data.coco("val")
    detector = EfficientDet(tiny_spec(), num_classes=val.num_classes, name="tinydet")
    images = list(representative_images(data.val_json, (64, 64), count=3,
                                        pad_value=detector.pad_value))
    recipe = Recipe(name="t", formats=("saved_model", "float32", "int8"), input_type="uint8",
                    latency_runs=2, score_threshold=0.0, edgetpu=True, eval_images=3,
                    consumer_resize="stretch")
    held_out = HeldOutSet(data.val_json, data.val_images_dir, val.category_ids, max_images=3)
    manifest = export_model(detector, recipe, root / "out", representative=images,
                            weights_origin="random", labels=val.class_names,
                            category_ids=val.category_ids,
                            held_out=held_out, log=lambda *_: None)
    return root / "out", manifest, val


def test_detector_export_manifest_ap_metadata_and_edgetpu(detector_export):
    from keras_efficient.batch_inference import tflite_detector
    from keras_efficient.export.metadata import read_metadata

    out, manifest, val = detector_export
    assert manifest["task"] == "detection"
    assert manifest["preprocessing"]["pad_value"] == [127.0, 127.0, 127.0]  # Lite's mean colour
    assert manifest["preprocessing"]["resize"] == "letterbox"
    saved, float32, int8 = manifest["artifacts"]
    assert saved["format"] == "saved_model" and saved["accuracy"]["raw_max_abs_delta"] < 1e-3
    assert (out / saved["file"] / "saved_model.pb").is_file()
    for artifact in (float32, int8):
        accuracy = artifact["accuracy"]
        assert set(accuracy) == {"keras", "resize", "tflite", "AP_delta", "AP50_delta",
                                 "consumer"}
        assert accuracy["AP_delta"] == pytest.approx(
            accuracy["tflite"]["AP"] - accuracy["keras"]["AP"], abs=1e-4)
        # Also measured as the Task Library / MediaPipe feed it: stretched raw bytes.
        consumer = accuracy["consumer"]
        assert consumer["resize"] == "stretch" and set(consumer["tflite"]) == {"AP", "AP50",
                                                                               "AP75"}
        assert consumer["AP_delta"] == pytest.approx(
            consumer["tflite"]["AP"] - accuracy["keras"]["AP"], abs=1e-4)
        assert [o["name"] for o in artifact["outputs"]] == [
            "detection_boxes", "detection_classes", "detection_scores", "num_detections"]
        info = read_metadata(out / artifact["file"])
        assert list(info.labels) == list(val.class_names)
        assert list(info.output_roles) == ["location", "category", "score", "number of detections"]
    # Float conversion costs nothing: float rounding may swap near-tied scores of a random
    # detector on 3 images (a 0.00106 difference was seen once), hence 2e-3.
    assert abs(float32["accuracy"]["AP_delta"]) < 2e-3
    # A consumer of the folder letterboxes with the recorded pad value, found beside the file.
    assert tflite_detector(out / float32["file"]).predict_fn([np.zeros((40, 64, 3))])
    offline = int8["edgetpu"]["offline"]
    assert offline["first_cpu_op"]["op"] == "DEQUANTIZE"
    # The nearest upsampling stays RESIZE_NEAREST_NEIGHBOR (mapped) in an EdgeTPU export;
    # CPU exports lower it (tests/export/test_detector_tflite.py).
    assert any(row["op"] == "RESIZE_NEAREST_NEIGHBOR" and row["status"] == "Mapped to Edge TPU"
               for row in offline["rows"])
    # On the CPU: the dequantize before the post-process op, the op, and the float clip of its
    # boxes to [0, 1] after it (MINIMUM, RELU).
    assert {row["op"] for row in offline["rows"] if row["status"] != "Mapped to Edge TPU"} == {
        "DEQUANTIZE", "CUSTOM", "MINIMUM", "RELU"}
    assert (out / "tinydet_int8_edgetpu_report.txt").read_text().startswith("Number of")
    assert (out / "labels.txt").read_text().split() == list(val.class_names)
    # A letterbox-trained detector for stretching consumers: warned, with the measured AP.
    warnings = manifest["warnings"]
    assert len(warnings) == 2 and all("resize='letterbox'" in w and "--resize stretch" in w
                                      for w in warnings)
    assert f"{100 * int8['accuracy']['consumer']['tflite']['AP']:.1f} as they feed" in warnings[1]


def test_stretch_trained_detector_is_verified_as_consumers_feed_it(tmp_path):
    """A detector trained with ``resize="stretch"``: fed stretched everywhere, no warning, and
    the manifest tells ``tflite_detector`` to stretch."""
    from keras_efficient.batch_inference import tflite_detector
    from keras_efficient.data.representative import representative_images
    from keras_efficient.data.synthetic import make_detection_dataset
    from keras_efficient.export.verify import HeldOutSet
    from keras_efficient.models.efficientdet import EfficientDet
    from tests.harness import tiny_spec

    data = make_detection_dataset(tmp_path / "data", num_train=2, num_val=2,
                                  image_size=(48, 96), max_objects=2, seed=2)
    val = data.coco("val")
    detector = EfficientDet(tiny_spec(), num_classes=val.num_classes, resize="stretch")
    images = list(representative_images(data.val_json, (64, 64), count=2, resize="stretch"))
    assert images[0].shape == (1, 64, 64, 3) and images[0].max() > 0  # stretched: no pad
    recipe = Recipe(name="t", formats=("float32",), latency_runs=1, score_threshold=0.0,
                    eval_images=2, metadata=False, consumer_resize="stretch")
    manifest = export_model(detector, recipe, tmp_path / "out", representative=images,
                            held_out=HeldOutSet(data.val_json, data.val_images_dir,
                                                val.category_ids, max_images=2),
                            log=lambda *_: None)
    accuracy = manifest["artifacts"][0]["accuracy"]
    assert manifest["preprocessing"]["resize"] == accuracy["resize"] == "stretch"
    assert accuracy["consumer"]["tflite"] == accuracy["tflite"] and "warnings" not in manifest
    file = tmp_path / "out" / manifest["artifacts"][0]["file"]
    as_recorded = tflite_detector(file).predict_fn([np.full((48, 96, 3), 90.0)])
    stretched = tflite_detector(file, resize="stretch").predict_fn([np.full((48, 96, 3), 90.0)])
    np.testing.assert_array_equal(as_recorded[0]["boxes"], stretched[0]["boxes"])


def test_detector_export_without_held_out_set_says_so(tmp_path):
    from keras_efficient.models.efficientdet import EfficientDet
    from tests.harness import tiny_spec

    recipe = Recipe(name="t", formats=("float32",), latency_runs=1, postprocess="none",
                    metadata=False)
    manifest = export_model(EfficientDet(tiny_spec(), num_classes=2), recipe, tmp_path / "o",
                            representative=samples(1), log=lambda *_: None)
    assert "not measured" in manifest["artifacts"][0]["accuracy"]["note"]
    assert (tmp_path / "o" / "anchors.csv").read_text().startswith("yc,xc,h,w")


def test_recipe_detector_settings_are_checked():
    with pytest.raises(ValueError, match="Recipe 'x': postprocess must be one of"):
        Recipe(name="x", formats=("int8",), postprocess="fancy")
    with pytest.raises(ValueError, match="edgetpu needs the int8 format"):
        Recipe(name="x", formats=("float32",), edgetpu=True)
    with pytest.raises(ValueError, match="metadata needs uint8 or float32"):
        Recipe(name="x", formats=("int8",), input_type="int8")
    with pytest.raises(ValueError, match="Recipe 'x': consumer_resize must be one of"):
        Recipe(name="x", formats=("int8",), consumer_resize="crop")
    assert load_recipe("android-int8").consumer_resize == "stretch"


def test_cli_export_passes_debug_quantization(classifier, tmp_path, monkeypatch, capsys):
    import keras_efficient.cli as cli
    from keras_efficient.export import pipeline

    monkeypatch.setattr(cli, "_export_job", lambda args, count: pipeline.ExportJob(
        classifier, samples(), weights_origin="random"))
    recipe = tmp_path / "fp32.json"
    recipe.write_text(json.dumps({"formats": ["float32"], "latency_runs": 1}))
    out = tmp_path / "out"
    assert cli.main(["export", "--recipe", str(recipe), "--output", str(out),
                     "--debug-quantization", "2"]) == 0
    worst = json.loads((out / "manifest.json").read_text())["quantization_debug"]["worst"]
    assert len(worst) == 2
    assert capsys.readouterr().out.count(" x scale ") == 2
    assert cli.build_parser().parse_args(["export", "--debug-quantization"]).debug_quantization \
        == 10
    assert cli.build_parser().parse_args(["export"]).debug_quantization == 0
