"""Serving SavedModels: signatures, in-graph preprocessing vs the Keras path, atomic writes."""

import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.data.transforms import fit_to_input, image_info, resize_and_pad
from keras_efficient.detection.inference import inference_model
from keras_efficient.export import saved_model as saved_model_module
from keras_efficient.export.saved_model import (
    export_classifier_saved_model,
    export_detector_saved_model,
)
from keras_efficient.export.tflite import ExportError
from keras_efficient.models.efficientdet import EfficientDet
from keras_efficient.models.efficientnet import EfficientNet
from tests.harness import TINY_BACKBONE as TINY
from tests.harness import tiny_spec

CATEGORY_IDS = [1, 7, 42]
LABELS = ["ant", "bee", "cat", "dog", "eel"]
MAX_DETECTIONS = 20


def _images(shape, count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *shape, 3)).astype("uint8")


@pytest.fixture(scope="module")
def spec():
    return tiny_spec()


@pytest.fixture(scope="module")
def detector(spec):
    return EfficientDet(spec, num_classes=3)


@pytest.fixture(scope="module")
def detector_export(detector, spec, tmp_path_factory):
    folder = tmp_path_factory.mktemp("detector")
    path = export_detector_saved_model(detector, folder / "det",
                                       category_ids=CATEGORY_IDS, max_detections=MAX_DETECTIONS)
    return path, tf.saved_model.load(str(path))


@pytest.fixture(scope="module")
def classifier():
    return EfficientNet(TINY, weights=None, classes=5, input_shape=(64, 64, 3))


@pytest.fixture(scope="module")
def classifier_export(classifier, tmp_path_factory):
    path = export_classifier_saved_model(classifier, tmp_path_factory.mktemp("cls") / "cls",
                                         labels=LABELS, top_k=3)
    return path, tf.saved_model.load(str(path))


def _specs(signature):
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    return ({k: (v.dtype, tuple(v.shape)) for k, v in inputs.items()},
            {k: (v.dtype, tuple(v.shape)) for k, v in outputs.items()})


def test_detector_signatures(detector_export):
    path, loaded = detector_export
    assert sorted(os.listdir(path.parent)) == ["det"]  # no staging folder left behind
    assert set(loaded.signatures) == {"serving_default", "serving_image_bytes", "raw"}
    outputs = {"detection_boxes": (tf.float32, (None, MAX_DETECTIONS, 4)),
               "detection_scores": (tf.float32, (None, MAX_DETECTIONS)),
               "detection_classes": (tf.int32, (None, MAX_DETECTIONS)),
               "num_detections": (tf.int32, (None,))}
    assert _specs(loaded.signatures["serving_default"]) == (
        {"images": (tf.uint8, (None, None, None, 3))}, outputs)
    assert _specs(loaded.signatures["serving_image_bytes"]) == (
        {"image_bytes": (tf.string, (None,))}, outputs)
    assert _specs(loaded.signatures["raw"]) == (
        {"images": (tf.float32, (None, 64, 64, 3))},
        {"class_logits": (tf.float32, (None, 756, 3)),
         "box_regression": (tf.float32, (None, 756, 4))})


def test_in_graph_preprocessing_matches_resize_and_pad():
    pad = (123.675, 116.28, 103.53)
    for shape in [(50, 90), (90, 50), (30, 20), (1, 300)]:
        image = _images(shape, 1, seed=sum(shape))
        padded, info = saved_model_module._fit_to_input(tf.constant(image), (64, 64), pad)
        expected, scale = resize_and_pad(image[0].astype("float32"), (64, 64), pad_value=pad)
        np.testing.assert_array_equal(padded.numpy()[0], expected)  # the same pixels
        np.testing.assert_array_equal(info.numpy()[0], image_info(image[0], scale))
    graph = tf.function(lambda x: saved_model_module._fit_to_input(x, (64, 64)), autograph=False,
                        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-zero size"):
        graph(tf.zeros([1, 0, 5, 3], tf.uint8))


def test_in_graph_stretch_matches_fit_to_input():
    """A stretch-trained detector's serving resizes the whole image to the input, as
    ``fit_to_input`` (and the Task Library) do; the info's scale is 1.0 (boxes map per axis)."""
    image = _images((50, 90), 1, seed=3)
    fed, info = saved_model_module._fit_to_input(tf.constant(image), (64, 64), 0.0, False,
                                                 "stretch")
    expected, scale = fit_to_input(image[0].astype("float32"), (64, 64), resize="stretch")
    np.testing.assert_array_equal(fed.numpy()[0], expected)
    np.testing.assert_array_equal(info.numpy()[0], image_info(image[0], scale))
    assert scale == 1.0


def test_detector_serving_matches_keras_path(detector_export, detector, spec):
    _, loaded = detector_export
    images = _images((50, 90), 2)
    got = {k: v.numpy() for k, v in
           loaded.signatures["serving_default"](images=tf.constant(images)).items()}
    infer = inference_model(detector, max_detections=MAX_DETECTIONS, class_aware=False)
    for i, image in enumerate(images):
        padded, scale = resize_and_pad(image.astype("float32"), (64, 64),
                                       pad_value=detector.pad_value)
        want = infer.predict([padded[None], image_info(image, scale)[None]], verbose=0)
        count = int(want["num_detections"][0])
        assert count > 0 and int(got["num_detections"][i]) == count
        np.testing.assert_allclose(got["detection_scores"][i], want["scores"][0], atol=1e-5)
        np.testing.assert_allclose(got["detection_boxes"][i], want["boxes"][0], atol=1e-2)
        assert got["detection_boxes"][i, :count, 3].max() <= 90  # original pixels
        mapped = np.asarray(CATEGORY_IDS)[want["classes"][0, :count]]
        np.testing.assert_array_equal(got["detection_classes"][i, :count], mapped)
        assert np.all(got["detection_classes"][i, count:] == -1)


def test_detector_image_bytes_match_uint8(detector_export):
    _, loaded = detector_export
    images = [_images((50, 90), 1, seed=1), _images((70, 40), 1, seed=2)]
    encoded = tf.stack([tf.io.encode_png(image[0]) for image in images])
    got = loaded.signatures["serving_image_bytes"](image_bytes=encoded)
    for i, image in enumerate(images):
        want = loaded.signatures["serving_default"](images=tf.constant(image))
        for key, value in want.items():
            np.testing.assert_allclose(got[key].numpy()[i], value.numpy()[0], atol=1e-5)


def test_detector_raw_matches_predict(detector_export, detector):
    _, loaded = detector_export
    images = np.random.default_rng(3).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    got = loaded.signatures["raw"](images=tf.constant(images))
    want = detector.predict(images, verbose=0)
    for key in ("class_logits", "box_regression"):
        np.testing.assert_allclose(got[key].numpy(), want[key], atol=1e-4)


def test_classifier_signatures_and_outputs(classifier_export, classifier):
    _, loaded = classifier_export
    assert set(loaded.signatures) == {"serving_default", "serving_image_bytes", "raw"}
    outputs = {"probabilities": (tf.float32, (None, 5)),
               "top_k_classes": (tf.int32, (None, 3)), "top_k_scores": (tf.float32, (None, 3)),
               "top_k_labels": (tf.string, (None, 3))}
    assert _specs(loaded.signatures["serving_default"]) == (
        {"images": (tf.uint8, (None, None, None, 3))}, outputs)
    assert _specs(loaded.signatures["raw"]) == (
        {"images": (tf.float32, (None, 64, 64, 3))}, {"predictions": (tf.float32, (None, 5))})

    images = _images((50, 90), 2, seed=4)
    got = loaded.signatures["serving_default"](images=tf.constant(images))
    resized = tf.image.resize(images.astype("float32"), (64, 64), method="bilinear").numpy()
    want = classifier.predict(resized, verbose=0)
    np.testing.assert_allclose(got["probabilities"].numpy(), want, atol=1e-5)
    order = np.argsort(-want, axis=-1)[:, :3]
    np.testing.assert_array_equal(got["top_k_classes"].numpy(), order)
    np.testing.assert_allclose(got["top_k_scores"].numpy(),
                               np.take_along_axis(want, order, axis=-1), atol=1e-5)
    assert got["top_k_labels"].numpy().astype(str).tolist() == (
        np.asarray(LABELS)[order].tolist())
    raw = loaded.signatures["raw"](images=tf.constant(resized))["predictions"].numpy()
    np.testing.assert_allclose(raw, want, atol=1e-5)
    encoded = tf.stack([tf.io.encode_png(image) for image in images])
    from_bytes = loaded.signatures["serving_image_bytes"](image_bytes=encoded)
    np.testing.assert_allclose(from_bytes["probabilities"].numpy(), want, atol=1e-5)


def test_softmax_detection(classifier):
    assert saved_model_module._outputs_probabilities(classifier)
    logits = EfficientNet(TINY, weights=None, classes=5, input_shape=(32, 32, 3),
                          classifier_activation=None)
    assert not saved_model_module._outputs_probabilities(logits)


def test_existing_destination_is_refused(classifier, detector, spec, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        export_classifier_saved_model(classifier, tmp_path / "taken")
    with pytest.raises(FileExistsError, match="already exists"):
        export_detector_saved_model(detector, tmp_path / "taken")
    with pytest.raises(ValueError, match="does not exist"):
        export_classifier_saved_model(classifier, tmp_path / "missing" / "cls")


def test_invalid_arguments(classifier, detector, spec, tmp_path):
    with pytest.raises(ValueError, match=r"2 entries.*3 classes"):
        export_detector_saved_model(detector, tmp_path / "det", category_ids=[1, 2])
    with pytest.raises(ValueError, match="distinct"):
        export_detector_saved_model(detector, tmp_path / "det", category_ids=[1, 1, 2])
    with pytest.raises(ValueError, match=r"4 entries.*5 classes"):
        export_classifier_saved_model(classifier, tmp_path / "cls", labels=LABELS[:4])
    inputs = keras.Input((None, None, 3))
    dynamic = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs), name="dyn")
    with pytest.raises(ValueError, match="static input size"):
        export_classifier_saved_model(dynamic, tmp_path / "cls")
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_nothing(classifier, tmp_path, monkeypatch):
    def save_then_fail(obj, export_dir, **kwargs):
        (Path(export_dir) / "saved_model.pb").write_bytes(b"half")  # a partial write on disk
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", save_then_fail)
    with pytest.raises(ExportError, match=r"write the SavedModel.*disk full"):
        export_classifier_saved_model(classifier, tmp_path / "cls")
    assert os.listdir(tmp_path) == []
