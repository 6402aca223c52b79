"""Preprocessing identical to google/automl's (issue 10): pad value, resize, geometry.

``tests/detection/golden/automl_preprocess.npz`` holds raw images and what automl's
``DetectionInputProcessor`` (normalize, ``set_scale_factors_to_output_size``,
``resize_and_crop_image``) made of them, recorded once by ``make_automl_postprocess_golden.py``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_efficient.configs.efficientdet import get_efficientdet_spec
from keras_efficient.configs.efficientnet import get_efficientnet_scaling
from keras_efficient.data.pipeline import resize_crop_pad
from keras_efficient.data.representative import representative_images
from keras_efficient.data.transforms import letterbox_geometry, resize_and_pad
from keras_efficient.detection.inference import inference_model
from keras_efficient.evaluation.predict import detector_pad_value, predict
from keras_efficient.models.efficientdet import EfficientDet

GOLDEN = Path(__file__).resolve().parents[1] / "detection" / "golden" / "automl_preprocess.npz"
CASES = ("d_shrink", "lite_tall", "d_grow", "lite_odd")
TINY = {"input_size": 64, "max_level": 5, "fpn_filters": 16, "fpn_cells": 1, "head_repeats": 1}


def tiny_detector(family: str) -> keras.Model:
    backbone = get_efficientnet_scaling("lite0" if family == "lite" else "b0").with_(
        name=f"tiny{family}", width=0.25, depth=0.25)
    base = "lite0" if family == "lite" else "d0"
    return EfficientDet(get_efficientdet_spec(base).with_(backbone=backbone, **TINY),
                        num_classes=3)


@pytest.mark.parametrize("case", CASES)
def test_resize_and_pad_reproduces_automl(case):
    golden = np.load(GOLDEN)
    image, size = golden[f"{case}_image"], tuple(int(v) for v in golden[f"{case}_size"])
    mean, std, want = golden[f"{case}_mean"], golden[f"{case}_std"], golden[f"{case}_output"]
    padded, scale = resize_and_pad(image.astype("float32"), size, pad_value=mean)
    assert np.float32(scale) == golden[f"{case}_scale"]  # automl's float32 image scale
    normalized = (padded - mean) / std  # automl normalizes first; bilinear is linear
    assert normalized.shape == want.shape
    np.testing.assert_array_equal(normalized == 0, want == 0)  # the same pad region, 0 there
    np.testing.assert_allclose(normalized, want, atol=1e-6)  # measured 4.8e-7
    # Today's antialiased resize differs where the image shrinks: the option stays explicit.
    if case == "d_shrink":
        smooth, _ = resize_and_pad(image.astype("float32"), size, pad_value=mean, antialias=True)
        assert np.abs((smooth - mean) / std - want).max() > 0.05


def test_letterbox_geometry_is_automls_float32_truncation():
    golden = np.load(GOLDEN)
    for case in CASES:
        height, width = golden[f"{case}_image"].shape[:2]
        size = tuple(int(v) for v in golden[f"{case}_size"])
        scale, new_h, new_w = letterbox_geometry(height, width, size)
        rows = int(np.sum(np.any(golden[f"{case}_output"] != 0, axis=(1, 2))))
        cols = int(np.sum(np.any(golden[f"{case}_output"] != 0, axis=(0, 2))))
        assert (new_h, new_w) == (rows, cols), case
        assert np.float32(scale) == golden[f"{case}_scale"]


@pytest.mark.parametrize("family", ["lite", "d"])
def test_detector_pad_value_normalizes_to_zero(family):
    detector = tiny_detector(family)
    assert detector.pad_value == detector.spec.pad_value == detector.spec.backbone_scaling.mean_rgb
    last = "rescaling" if family == "lite" else "normalization"
    normalize = keras.Model(detector.input, detector.get_layer(last).output)
    pixels = np.broadcast_to(np.float32(detector.pad_value), (1, 64, 64, 3))
    np.testing.assert_allclose(normalize.predict(pixels, verbose=0), 0.0, atol=1e-6)
    expected = (127.0,) * 3 if family == "lite" else (123.675, 116.28, 103.53)
    np.testing.assert_allclose(detector.pad_value, expected)


def test_training_crop_pads_with_the_pad_value():
    import tensorflow as tf

    image = np.random.default_rng(0).uniform(0, 255, (30, 50, 3)).astype("float32")
    pad = (127.0, 127.0, 127.0)
    out, _ = resize_crop_pad(tf.constant(image), tf.zeros([0, 4]), (64, 64),
                             tf.constant(0.5), tf.zeros([2], tf.int32), pad_value=pad)
    assert np.all(out.numpy()[15:] == 127.0) and np.all(out.numpy()[:, 25:] == 127.0)


def test_predict_and_calibration_pad_like_the_detector(tmp_path):
    detector = tiny_detector("d")
    image = np.random.default_rng(1).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    model = inference_model(detector, max_detections=10, score_threshold=0.0)
    assert detector_pad_value(model) == detector.pad_value
    [found] = predict(model, [tmp_path / "a.png"])
    padded, scale = resize_and_pad(image.astype("float32"), (64, 64),
                                   pad_value=detector.pad_value)
    info = np.asarray([[scale, 40, 64]], "float32")
    want = model.predict([padded[None], info], verbose=0)
    count = int(want["num_detections"][0])
    np.testing.assert_array_equal(found["scores"], want["scores"][0, :count])
    [calibration] = representative_images([str(tmp_path / "a.png")], (64, 64),
                                          pad_value=detector.pad_value)
    np.testing.assert_array_equal(calibration[0], padded)
    assert np.allclose(calibration[0, 40:], detector.pad_value)
