"""The detector carries its spec: fusion, input size, classes and label map live in the model
(``get_config``), survive ``.keras`` with ``safe_mode=True``, and the consumers take the model
alone."""

import json

import keras
import numpy as np
import pytest

from keras_efficient.configs.efficientdet import spec_from_config, spec_to_config
from keras_efficient.detection.inference import inference_model
from keras_efficient.models.efficientdet import EfficientDet, EfficientDetector
from tests.harness import assert_same_outputs, config_round_trip, keras_file_round_trip, tiny_spec

LABELS = [(3, "circle"), (7, "square"), (9, "star")]


@pytest.fixture(scope="module")
def detector():
    return EfficientDet(tiny_spec(), num_classes=3, fusion="softmax", label_map=LABELS,
                        name="tiny_det", resize="stretch")


def test_the_spec_records_fusion_input_size_and_labels(detector):
    assert isinstance(detector, EfficientDetector) and isinstance(detector, keras.Model)
    assert detector.spec.fusion == "softmax" != tiny_spec().fusion  # the override is recorded
    assert detector.spec.input_size == 64 and detector.image_size == (64, 64)
    assert detector.labels == ["circle", "square", "star"]
    assert detector.category_ids == [3, 7, 9]
    assert detector.anchor_spec() == tiny_spec().anchor_spec((64, 64))
    wide = EfficientDet(tiny_spec(), num_classes=2, input_shape=(64, 96, 3))
    assert wide.image_size == (64, 96) and wide.anchor_spec().image_size == (64, 96)
    assert wide.labels == ["class 0", "class 1"] and wide.category_ids == [1, 2]
    assert detector.resize == "stretch" and wide.resize == "letterbox"  # the default, automl's
    with pytest.raises(ValueError, match=r"resize must be one of \('letterbox', 'stretch'\)"):
        EfficientDet(tiny_spec(), num_classes=2, resize="crop")


def test_spec_config_round_trip_through_json():
    for spec in (tiny_spec(), tiny_spec().with_(backbone="efficientnetb0", fusion="fast")):
        assert spec_from_config(json.loads(json.dumps(spec_to_config(spec)))) == spec


def test_keras_file_reloads_the_whole_detector_with_safe_mode(detector, tmp_path):
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    loaded = keras_file_round_trip(detector, tmp_path, "detector")
    assert isinstance(loaded, EfficientDetector) and loaded.name == "tiny_det"
    assert loaded.spec == detector.spec and loaded.label_map == detector.label_map
    assert loaded.resize == "stretch"
    assert_same_outputs(detector, loaded, image, atol=1e-5)
    clone = config_round_trip(detector)
    assert clone.spec == detector.spec and clone.count_params() == detector.count_params()
    assert clone.resize == "stretch"


def test_consumers_take_the_detector_alone(detector):
    model = inference_model(detector, class_aware=False, max_detections=5)
    image = np.zeros((1, 64, 64, 3), "float32")
    out = model.predict([image, np.asarray([[1.0, 64, 64]], "float32")], verbose=0)
    assert out["boxes"].shape == (1, 5, 4)


def test_a_label_map_must_name_every_class():
    with pytest.raises(ValueError, match="label_map names 2 classes but num_classes=3"):
        EfficientDet(tiny_spec(), num_classes=3, label_map=[(1, "a"), (2, "b")])


def test_training_saves_one_keras_file_that_reloads(tiny_data, tiny_run):
    from keras_efficient.training.run_folder import load_trained_detector

    folder_path = tiny_run.weights_path.parent  # the shared run of tests/conftest.py
    run = load_trained_detector(folder_path / "detector.keras")
    assert run.config is None and run.spec == tiny_run.detector.spec
    assert run.model.resize == tiny_run.detector.resize == "stretch"  # trained so, recorded
    assert run.labels == ["circle", "square", "triangle"]
    assert run.category_ids == tiny_data.coco("train").category_ids
    folder = load_trained_detector(folder_path)  # rebuilt from train_config.json + weights
    assert folder.model.resize == "stretch"
    image = np.zeros((1, 64, 64, 3), "float32")
    np.testing.assert_allclose(run.model.predict(image, verbose=0)["class_logits"],
                               folder.model.predict(image, verbose=0)["class_logits"],
                               atol=1e-5)
