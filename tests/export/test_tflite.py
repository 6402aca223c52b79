"""TFLite conversion in every format, run in LiteRT and compared with Keras."""

import os

import keras
import numpy as np
import pytest

from keras_efficient.export.runtime import load_interpreter, op_histogram, run
from keras_efficient.export.tflite import (
    ExportError,
    check_pixel_input,
    convert,
    export_tflite,
    make_converter,
    write_saved_model,
)
from keras_efficient.models.efficientdet import EfficientDet
from keras_efficient.models.efficientnet import EfficientNet
from tests.harness import TINY_BACKBONE as TINY
from tests.harness import assert_tflite_matches_keras, tiny_spec


@pytest.fixture(scope="module")
def classifier():
    return EfficientNet(TINY, weights=None, classes=5, input_shape=(64, 64, 3))


@pytest.fixture(scope="module")
def images():
    return [np.random.default_rng(i).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
            for i in range(8)]


# float16 conversion is exercised on the detector by default (test_detector_tflite.py).
@pytest.mark.parametrize(("quantization", "atol"), [
    ("float32", 1e-5), pytest.param("float16", 5e-3, marks=pytest.mark.slow)])
def test_float_exports_match_keras(classifier, images, tmp_path, quantization, atol):
    path = export_tflite(classifier, tmp_path / f"{quantization}.tflite", quantization)
    assert_tflite_matches_keras(path, classifier, images[:3], atol=atol)
    assert not any(name.startswith("Flex") for name in op_histogram(load_interpreter(path)))


def test_dynamic_export_agrees_on_top1(classifier, images, tmp_path):
    """The int8 classifier's outputs are checked value by value in
    ``test_integer_input_takes_the_bytes_as_they_are``."""
    expected = [int(np.argmax(classifier.predict(image, verbose=0))) for image in images]
    path = export_tflite(classifier, tmp_path / "dynamic.tflite", "dynamic")
    interpreter = load_interpreter(path)
    got = [int(np.argmax(run(interpreter, image)[0])) for image in images]
    assert np.mean(np.equal(got, expected)) >= 0.75, (got, expected)


def dark_images(count=8, size=64):
    """Calibration and test images no brighter than 60: their own range would quantize the
    input with scale 60/255, i.e. byte q read as pixel q / 4.25."""
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 60, (1, size, size, 3)).astype("float32") for _ in range(count)]


def feed_bytes(interpreter, pixels):
    """Invoke on the bytes as an Android consumer feeds them (no scale applied)."""
    detail = interpreter.get_input_details()[0]
    assert detail["dtype"] == np.uint8
    interpreter.set_tensor(detail["index"], pixels.astype("uint8"))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def test_integer_input_takes_the_bytes_as_they_are(tmp_path):
    keras.utils.set_random_seed(0)
    model = EfficientNet(TINY, weights=None, classes=5, input_shape=(64, 64, 3),
                         classifier_activation=None)
    images = dark_images()
    # Lite's (x - 127) / 128 is folded into the input quantization: byte q means (q - 127) / 128,
    # exactly what the Keras model computes from pixel q, and no MUL/ADD runs on the image.
    for input_type, want in (("uint8", (1 / 128, 127)), ("int8", (1 / 128, -1))):
        path = export_tflite(model, tmp_path / f"{input_type}.tflite", "int8",
                             representative=images, input_type=input_type)
        assert load_interpreter(path).get_input_details()[0]["quantization"] == want
    interpreter = load_interpreter(tmp_path / "uint8.tflite")
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    ops = op_histogram(interpreter)
    assert "CONV_2D" in ops and not any(name.startswith("Flex") for name in ops)
    assert ops["QUANTIZE"] == 1 and "DEQUANTIZE" in ops  # no requantizing pair after the input
    assert "MUL" not in ops and "ADD" not in ops  # the tiny model has no residual adds
    for pixels in np.round(dark_images(3)):
        [got] = feed_bytes(interpreter, pixels)
        np.testing.assert_allclose(got, model(pixels).numpy(), atol=0.08)
        np.testing.assert_allclose(run(interpreter, pixels)[0], got)


def test_converter_output_with_a_calibrated_input_range_is_refused(tmp_path):
    keras.utils.set_random_seed(0)
    model = EfficientNet(TINY, weights=None, classes=5, input_shape=(64, 64, 3))
    write_saved_model(model, tmp_path / "sm")
    plain = make_converter(tmp_path / "sm", "int8", shape=(1, 64, 64, 3),
                           representative=dark_images(), input_type="uint8").convert()
    with pytest.raises(ExportError, match=r"not \(1.0, 0\)"):
        check_pixel_input(plain, "uint8", name=model.name)


def test_raw_detector_float_export_matches_keras(tmp_path):
    detector = EfficientDet(tiny_spec(), num_classes=3)
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    assert_tflite_matches_keras(export_tflite(detector, tmp_path / "det.tflite"), detector,
                                [image], atol=1e-4)


def test_bad_inputs_are_clear_errors_and_write_nothing(classifier, tmp_path):
    with pytest.raises(ValueError, match="representative dataset is empty"):
        convert(classifier, "int8", representative=[])
    with pytest.raises(ValueError, match="needs a representative dataset"):
        convert(classifier, "int8")
    with pytest.raises(ValueError, match="quantization must be one of"):
        convert(classifier, "int4")
    with pytest.raises(ValueError, match="needs quantization='int8'"):
        convert(classifier, "float32", input_type="uint8")
    with pytest.raises(ValueError, match="does not exist"):
        export_tflite(classifier, tmp_path / "missing" / "m.tflite")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(PermissionError, match="not writable"):
            export_tflite(classifier, locked / "m.tflite")
    finally:
        locked.chmod(0o700)
    assert list(tmp_path.rglob("*.tflite")) == []


def test_dynamic_input_size_is_refused():
    model = EfficientNet(TINY, weights=None, include_top=False, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="static input size"):
        convert(model)


def test_b_family_folds_only_its_scalar_scaling(tmp_path):
    """x / 255 folds into the uint8 input (scale 1/255, zero point 0); the per-channel mean/std
    cannot (an input quantization holds one scalar pair) and stays one SUB and one MUL."""
    from keras_efficient.configs import get_efficientnet_scaling

    keras.utils.set_random_seed(0)
    tiny_b = get_efficientnet_scaling("b0").with_(name="tinyb0", width=0.25, depth=0.25)
    model = EfficientNet(tiny_b, weights=None, classes=5, input_shape=(64, 64, 3),
                         classifier_activation=None)
    path = export_tflite(model, tmp_path / "b.tflite", "int8", representative=dark_images(),
                         input_type="uint8")
    interpreter = load_interpreter(path)
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    assert zero_point == 0 and scale == pytest.approx(1 / 255, rel=1e-6)
    first = [op["op_name"] for op in interpreter._get_ops_details()[:3]]
    assert first == ["QUANTIZE", "SUB", "MUL"]
    pixels = np.round(dark_images(3)[-1])
    [got] = feed_bytes(interpreter, pixels)
    np.testing.assert_allclose(got, model(pixels).numpy(), atol=0.08)


def test_compiled_model_runs_like_the_interpreter_and_refuses_custom_ops(tmp_path):
    from keras_efficient.export.runtime import load_runtime

    model = EfficientNet(TINY, weights=None, classes=5, input_shape=(64, 64, 3))
    path = export_tflite(model, tmp_path / "int8.tflite", "int8", representative=dark_images(),
                         input_type="uint8")
    pixels = np.round(dark_images(3)[-1])
    [compiled] = run(load_runtime(path, "compiled_model"), pixels)
    np.testing.assert_array_equal(compiled, run(load_interpreter(path), pixels)[0])
    with pytest.raises(ValueError, match="runtime must be one of"):
        load_runtime(path, "gpu")
