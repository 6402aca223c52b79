"""``keras-efficient detect`` / ``classify`` over one's own images: image expansion, a trained
run, an exported ``.tflite`` (letterboxed and stretched), the COCO-results JSON, drawings."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from keras_efficient.batch_inference import (
    check_readable,
    classify_images,
    detect_images,
    expand_images,
    keras_detector,
    tflite_detector,
)
from keras_efficient.cli import main
from keras_efficient.configs.coco import COCO_CATEGORIES, coco_label_map
from keras_efficient.data.transforms import load_image
from keras_efficient.export.detector_tflite import PostprocessOptions, convert_detector
from keras_efficient.models.efficientdet import EfficientDet
from keras_efficient.training.classifier import ClassifierTrainConfig, build_classifier
from keras_efficient.training.detector import DetectorTrainConfig
from keras_efficient.training.run_folder import load_trained_classifier, load_trained_detector
from tests.harness import TINY_BACKBONE, TINY_OVERRIDES, tiny_spec

LABELS = [{"id": 3, "name": "circle"}, {"id": 7, "name": "square"}, {"id": 9, "name": "star"}]


def shapes_image(height, width, seed):
    """Smooth shapes on a plain background (PNG-exact, no noise)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), rng.integers(0, 255, 3), "uint8")
    for _ in range(3):
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        image[y:y + height // 3, x:x + width // 3] = rng.integers(0, 255, 3)
    return image


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A training run folder as ``train_detector`` leaves it, with a tiny detector whose class
    bias is raised so that random weights give scores well above the thresholds."""
    folder = tmp_path_factory.mktemp("run")
    spec = tiny_spec()
    model = EfficientDet(spec, num_classes=len(LABELS))
    predictor = model.get_layer("class_net_predict")
    *kernels, bias = predictor.get_weights()
    predictor.set_weights([k * 3 for k in kernels]
                          + [np.linspace(-1.0, 1.5, bias.size).astype("float32")])
    model.save_weights(folder / "detector.weights.h5")
    config = DetectorTrainConfig(train_json="unused.json", train_images="unused/",
                                 output_dir=str(folder), spec_overrides=dict(TINY_OVERRIDES))
    values = dataclasses.asdict(config)
    values["spec_overrides"]["backbone"] = dataclasses.asdict(TINY_BACKBONE)
    (folder / "train_config.json").write_text(json.dumps(values))
    (folder / "labels.json").write_text(json.dumps(LABELS))
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    (folder / "nested").mkdir()
    Image.fromarray(shapes_image(48, 90, 0)).save(folder / "wide.png")
    Image.fromarray(shapes_image(80, 40, 1)).save(folder / "nested" / "tall.jpg", quality=95)
    Image.fromarray(shapes_image(64, 64, 2)).save(folder / "square.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    run = load_trained_detector(run_dir)
    folder = tmp_path_factory.mktemp("export")
    path = folder / "detector_float32.tflite"
    path.write_bytes(convert_detector(run.model, "float32",
                                      options=PostprocessOptions(max_detections=20)))
    (folder / "labels.txt").write_text("circle\nsquare\nstar\n")
    return path


def test_expand_images_files_folders_globs(photos):
    found = expand_images([photos, photos / "square.png", str(photos / "*.png")])
    assert [p.name for p in found] == ["tall.jpg", "square.png", "wide.png"]  # no duplicates
    assert [p.name for p in expand_images([str(photos / "**" / "*.jpg")])] == ["tall.jpg"]
    with pytest.raises(ValueError, match=r"No such image file or folder: .*missing\.png"):
        expand_images([photos / "missing.png"])
    with pytest.raises(ValueError, match="matches no file"):
        expand_images([str(photos / "*.gif")])
    empty = photos / "nested" / "empty"
    empty.mkdir(exist_ok=True)
    with pytest.raises(ValueError, match="No image files"):
        expand_images([empty])


def test_a_bad_image_fails_before_anything_is_written(run_dir, photos, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    truncated = tmp_path / "cut.jpg"
    Image.fromarray(shapes_image(64, 64, 3)).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[:300])  # the header reads, the pixels do not
    for broken in (bad, truncated):
        with pytest.raises(ValueError, match=rf"{broken.name}: cannot decode the image"):
            check_readable([photos / "square.png", broken])
    run = load_trained_detector(run_dir)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"cut\.jpg"):
        detect_images(keras_detector(run.model),
                      [photos, truncated], out, progress=False)
    assert not out.exists()


def test_the_cli_skips_unreadable_images_and_says_so(run_dir, photos, tmp_path, capsys):
    folder = tmp_path / "mixed"
    shutil.copytree(photos, folder)
    (folder / "cut.jpg").write_bytes((photos / "nested" / "tall.jpg").read_bytes()[:300])
    out = tmp_path / "found"
    assert main(["detect", str(folder), "--train-dir", str(run_dir), "--output", str(out),
                 "--no-draw"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable image" in captured.err and "cut.jpg" in captured.err
    assert len(json.loads((out / "images.json").read_text())) == 3
    assert "cut.jpg" in json.loads((out / "skipped.json").read_text())[0]
    assert main(["detect", str(folder), "--train-dir", str(run_dir), "--output",
                 str(tmp_path / "strict"), "--on-error", "raise"]) == 2
    assert "cut.jpg: cannot decode" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists()


def test_detect_with_a_training_run_writes_coco_results_and_drawings(run_dir, photos, tmp_path,
                                                                     capsys):
    from pycocotools.coco import COCO

    out = tmp_path / "found"
    assert main(["detect", str(photos), "--train-dir", str(run_dir), "--output", str(out),
                 "--score-threshold", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "3 images" in printed and "detections.json" in printed
    images = json.loads((out / "images.json").read_text())
    results = json.loads((out / "detections.json").read_text())
    assert len(images) == 3 and results
    assert {r["category_name"] for r in results} <= {"circle", "square", "star"}
    assert {r["category_id"] for r in results} <= {3, 7, 9}  # the dataset's own ids
    by_id = {image["id"]: image for image in images}
    for r in results:
        x, y, w, h = r["bbox"]
        size = by_id[r["image_id"]]
        assert x >= 0 and y >= 0 and w >= 0 and h >= 0  # each image's own pixels
        assert x + w <= size["width"] + 0.01 and y + h <= size["height"] + 0.01
        assert r["score"] >= 0.2
    # The same detections as the library's Keras path, mapped the same way.
    run = load_trained_detector(run_dir)
    wide = next(i for i in images if i["file_name"].endswith("wide.png"))
    [expected] = keras_detector(run.model).predict_fn([load_image(wide["file_name"])])
    mine = [r for r in results if r["image_id"] == wide["id"]]
    keep = expected["scores"] >= 0.2
    assert len(mine) == int(keep.sum())
    ymin, xmin, ymax, xmax = expected["boxes"][0]
    np.testing.assert_allclose(mine[0]["bbox"], [xmin, ymin, xmax - xmin, ymax - ymin],
                               atol=0.01)
    # pycocotools reads it as results against a ground truth of the same images.
    gt = COCO()
    gt.dataset = {"images": [{"id": i["id"], "height": i["height"], "width": i["width"]}
                             for i in images],
                  "annotations": [], "categories": [{"id": e["id"], "name": e["name"]}
                                                    for e in LABELS]}
    gt.createIndex()
    assert len(gt.loadRes(str(out / "detections.json")).getAnnIds()) == len(results)
    # Drawings: one per image, small images upscaled to a legible size.
    for image in images:
        drawn = Image.open(out / image["drawn"])
        assert max(drawn.size) == 640
        assert drawn.size[0] / drawn.size[1] == pytest.approx(image["width"] / image["height"],
                                                              rel=0.02)


def test_detect_with_the_exported_tflite_matches_keras(run_dir, exported, photos, tmp_path):
    run = load_trained_detector(run_dir)
    keras_found = keras_detector(run.model, score_threshold=0.05, max_detections=20)
    lite = tflite_detector(exported, resize=run.model.resize, pad_value=run.model.pad_value)
    assert lite.labels == ["circle", "square", "star"]  # from labels.txt beside the file
    for name in ("wide.png", "square.png"):
        image = load_image(photos / name)
        [want] = keras_found.predict_fn([image])
        [have] = lite.predict_fn([image])
        assert len(have["scores"]) > 0
        np.testing.assert_allclose(have["scores"][0], want["scores"][0], atol=1e-4)
        np.testing.assert_allclose(have["boxes"][0], want["boxes"][0], atol=0.05)
        assert int(have["classes"][0]) == int(want["classes"][0])
    out = tmp_path / "lite"
    assert main(["detect", str(photos / "wide.png"), "--tflite", str(exported),
                 "--train-dir", str(run_dir), "--output", str(out), "--score-threshold",
                 "0.05", "--no-draw"]) == 0
    results = json.loads((out / "detections.json").read_text())
    assert results and {r["category_id"] for r in results} <= {3, 7, 9}
    assert not list(out.glob("*.png"))


def test_stretch_feeds_the_whole_image_as_the_task_library_does(exported, tmp_path):
    """A 64x64 image and the same image stretched to 64x128 (each column doubled): fed
    stretched, both give the same detections, with x doubled for the wide one."""
    square = shapes_image(64, 64, 5)
    wide = np.repeat(square, 2, axis=1)
    lite = tflite_detector(exported, resize="stretch")
    [small] = lite.predict_fn([square.astype("float32")])
    [big] = lite.predict_fn([wide.astype("float32")])
    assert len(small["scores"]) > 0
    np.testing.assert_allclose(big["scores"][:3], small["scores"][:3], atol=0.02)
    np.testing.assert_allclose(big["boxes"][0], small["boxes"][0] * [1, 2, 1, 2], atol=1.5)
    with pytest.raises(ValueError, match="needs the detector's resize mode and pad"):
        tflite_detector(exported, resize="letterbox")  # no manifest.json beside this file
    letterboxed = tflite_detector(exported, resize="letterbox", pad_value=127.0)
    [padded] = letterboxed.predict_fn([wide.astype("float32")])
    # Another input: the detections differ (scores of this random detector can nearly tie, so
    # the boxes are compared too).
    same_scores = np.allclose(padded["scores"][:3], big["scores"][:3], atol=1e-3)
    same_boxes = np.allclose(padded["boxes"][:3], big["boxes"][:3], atol=1.5)
    assert not (same_scores and same_boxes)
    with pytest.raises(ValueError, match="resize must be one of"):
        tflite_detector(exported, resize="crop")


def test_detect_refuses_unusable_sources(run_dir, photos, tmp_path, capsys):
    weights = str(run_dir / "detector.weights.h5")
    assert main(["detect", str(photos), "--weights", weights]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["detect", str(photos)]) == 2
    assert "--train-dir" in capsys.readouterr().err
    assert main(["detect", str(photos), "--tflite", str(tmp_path / "none.tflite")]) == 2
    assert "No such .tflite" in capsys.readouterr().err
    assert main(["detect", str(photos), "--train-dir", str(tmp_path)]) == 2
    assert "No trained detector" in capsys.readouterr().err
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(LABELS))
    out = tmp_path / "named"
    assert main(["detect", str(photos / "square.png"), "--model", "efficientdet-lite0",
                 "--weights", weights, "--labels", str(labels), "--output", str(out)]) == 2
    assert "weight" in capsys.readouterr().err  # a tiny run's weights do not fit Lite0


def test_coco_label_map():
    names, ids = coco_label_map()
    assert len(names) == len(ids) == 90 and len(COCO_CATEGORIES) == 80
    assert (names[0], ids[0], names[89], ids[89]) == ("person", 1, "toothbrush", 90)
    assert names[11] == "id 12"  # ids without a COCO 2017 category keep their slot


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    config = ClassifierTrainConfig(train_images="unused/", output_dir=str(folder),
                                   model="efficientnetlite0", image_size=32)
    values = dataclasses.asdict(config)
    model = build_classifier(config, 2)
    dense = model.get_layer("predictions")
    kernel, _ = dense.get_weights()
    dense.set_weights([kernel, np.asarray([-3.0, 3.0], "float32")])  # always "dog"
    model.save_weights(folder / "classifier.weights.h5")
    (folder / "train_config.json").write_text(json.dumps(values))
    (folder / "labels.txt").write_text("cat\ndog\n")
    return folder


def test_classify_many_images_with_a_training_run(classifier_run, photos, capsys):
    run = load_trained_classifier(classifier_run)
    rows = classify_images(run.model, [photos], labels=run.labels, top=2, progress=False)
    assert [row["file"].split("/")[-1] for row in rows] == ["tall.jpg", "square.png",
                                                            "wide.png"]
    assert all(row["top"][0][1] == "dog" and len(row["top"]) == 2 for row in rows)
    assert main(["classify", str(photos), str(photos / "wide.png"), "--train-dir",
                 str(classifier_run), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("top-1 for") == 3 and out.count("dog") == 3
    with pytest.raises(ValueError, match="holds a trained classifier"):
        load_trained_detector(classifier_run)


def test_classify_prints_imagenet_names_when_the_index_is_cached(photos, tmp_path, monkeypatch,
                                                                 capsys):
    import keras_efficient.models.imagenet as imagenet

    names = [f"name{i}" for i in range(1000)]
    monkeypatch.setattr(imagenet, "cached_imagenet_class_names", lambda: names)
    monkeypatch.setattr("keras_efficient.models.get_model",
                        lambda *a, **k: _fixed_classifier(7))
    assert main(["classify", str(photos / "square.png"), "--weights", "imagenet",
                 "--output", str(tmp_path / "top.json")]) == 0
    assert "1. name7" in capsys.readouterr().out
    [row] = json.loads((tmp_path / "top.json").read_text())
    assert row["top"][0][:2] == [7, "name7"]


def _fixed_classifier(best):
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(1000, activation="softmax", kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant(
                                     np.eye(1000)[best] * 5), name="fixed")(x)
    return keras.Model(inputs, outputs, name="fixed_imagenet")


def test_detect_with_a_named_variant_and_a_weights_file(photos, tmp_path, capsys):
    detector = EfficientDet("efficientdet-lite0", num_classes=len(LABELS))
    weights = tmp_path / "lite0.weights.h5"
    detector.save_weights(weights)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(LABELS))
    out = tmp_path / "named"
    assert main(["detect", str(photos / "wide.png"), "--model", "efficientdet-lite0",
                 "--weights", str(weights), "--labels", str(labels), "--output", str(out),
                 "--score-threshold", "0", "--no-draw"]) == 0
    results = json.loads((out / "detections.json").read_text())
    [image] = json.loads((out / "images.json").read_text())
    assert results and {r["category_id"] for r in results} <= {3, 7, 9}
    width, height = image["width"], image["height"]
    for result in results:  # COCO [x, y, w, h] inside the image's own pixels
        x, y, w, h = result["bbox"]
        assert x >= 0 and y >= 0 and x + w <= width + 1e-3 and y + h <= height + 1e-3


def test_classify_skips_unreadable_images_and_says_so(classifier_run, photos, tmp_path, capsys):
    folder = tmp_path / "mixed"
    shutil.copytree(photos, folder)
    (folder / "cut.jpg").write_bytes((photos / "nested" / "tall.jpg").read_bytes()[:300])
    assert main(["classify", str(folder), "--train-dir", str(classifier_run), "--top", "1"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable image" in captured.err and "cut.jpg" in captured.err
    assert captured.out.count("top-1 for") == 3
    assert main(["classify", str(folder), "--train-dir", str(classifier_run),
                 "--on-error", "raise"]) == 2
    assert "cut.jpg: cannot decode" in capsys.readouterr().err
