"""``EfficientDetector.for_inference``: the batch-norm-folded detector inference runs."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from keras_efficient.detection.inference import inference_model
from keras_efficient.detection.postprocess import (
    flatten_network_outputs,
    per_level_network,
    per_level_outputs,
)
from keras_efficient.evaluation.predict import wrapped_detector
from keras_efficient.models.efficientdet import EfficientDet, EfficientDetector
from tests.harness import assert_same_outputs, keras_file_round_trip, randomize, tiny_spec


def test_folded_detector_keeps_outputs_spec_and_round_trips(tmp_path: Path) -> None:
    detector = EfficientDet(tiny_spec(), num_classes=3, label_map=[(5, "a"), (7, "b"), (9, "c")],
                            resize="stretch")
    randomize(detector, seed=11)
    folded = detector.for_inference()
    assert folded.fold_batch_norm and not detector.fold_batch_norm
    assert not [layer for layer in folded.layers
                if isinstance(layer, keras.layers.BatchNormalization)]
    assert (folded.spec, folded.label_map, folded.resize) == (
        detector.spec, detector.label_map, detector.resize)
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    assert_same_outputs(detector, folded, images, atol=2e-5)
    assert folded.for_inference() is folded
    # Its per-level head outputs (the TFLite "network" ending) are its own graph's.
    levels = per_level_network(folded)(images, training=False)
    logits, regressions = flatten_network_outputs([np.asarray(levels[name])
                                                   for name in per_level_outputs(folded)])
    outputs = folded(images)
    np.testing.assert_allclose(logits, np.asarray(outputs["class_logits"]), atol=1e-6)
    np.testing.assert_allclose(regressions, np.asarray(outputs["box_regression"]), atol=1e-6)
    reloaded = keras_file_round_trip(folded, tmp_path)
    assert isinstance(reloaded, EfficientDetector) and reloaded.fold_batch_norm
    assert_same_outputs(folded, reloaded, images, atol=0.0)


def test_inference_model_runs_the_folded_detector_unless_asked_not_to() -> None:
    detector = EfficientDet(tiny_spec(), num_classes=2)
    randomize(detector, seed=2)
    fast = inference_model(detector, class_aware=False, max_detections=5)
    follows = inference_model(detector, class_aware=False, max_detections=5,
                              fold_batch_norm=False)
    assert wrapped_detector(fast).fold_batch_norm and wrapped_detector(follows) is detector
    images = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    info = np.array([[64, 64, 1.0]], "float32")
    expected, got = follows([images, info]), fast([images, info])
    np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-5)
    np.testing.assert_allclose(got["boxes"], expected["boxes"], atol=1e-3)


def test_quantization_aware_detectors_are_not_folded_again() -> None:
    with pytest.raises(ValueError, match="fold_batch_norm=False"):
        EfficientDetector(tiny_spec(), num_classes=2, qat=True, fold_batch_norm=True)
