"""Quantization-aware fine-tuning: the fake-quantized twin folds BN as the converter does, trains,
saves and reloads with its spec, and converts without calibration to a fully integer graph
that computes what the fake-quantized Keras model computes."""

import keras
import numpy as np
import pytest

from keras_efficient.export.detector_tflite import PostprocessOptions, convert_detector
from keras_efficient.export.edgetpu import edgetpu_report
from keras_efficient.export.qat_tflite import float_ops
from keras_efficient.export.runtime import run
from keras_efficient.layers.fake_quant import FakeQuant, QuantConv
from keras_efficient.models.efficientdet import EfficientDet
from keras_efficient.training.detector import train_detector
from keras_efficient.training.qat import is_quantization_aware, quantization_aware
from tests.harness import randomize, tiny_spec, train_config

# The D family's blocks: swish, squeeze-excite, fast normalized fusion.
D_LIKE = {"activation": "swish", "fusion": "fast"}


def test_folded_conv_computes_conv_bn_activation():
    rng = np.random.default_rng(0)
    image = keras.Input((8, 8, 4))
    conv = keras.layers.Conv2D(6, 3, padding="same", use_bias=False)
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    float_model = keras.Model(image, keras.activations.relu6(bn(conv(image))))
    bn.set_weights([rng.uniform(0.5, 2, 6), rng.normal(0, 1, 6), rng.normal(0, 1, 6),
                    rng.uniform(0.5, 2, 6)])
    layer = QuantConv("conv", 6, 3, batch_norm=True, activation="relu6")
    x = rng.uniform(-1, 1, (16, 8, 8, 4)).astype("float32")
    layer.build(x.shape)
    layer.set_float_weights(conv, bn)
    layer(x, training=True)  # the first training batch sets the output range
    want = np.asarray(float_model(x))
    got = np.asarray(layer(x))
    step = (float(layer.output_quant.range_max) - min(float(layer.output_quant.range_min), 0)) / 255
    # int8 weights (per channel) and an int8 output: within a few output steps, on average
    # well inside one.
    assert np.abs(got - want).max() < 4 * step and np.abs(got - want).mean() < 0.5 * step


def test_fake_quant_range_is_a_moving_min_max_and_needs_a_valid_fixed_range():
    quant = FakeQuant(momentum=0.5)
    quant(np.array([-1.0, 3.0], "float32"), training=True)
    quant(np.array([-3.0, 1.0], "float32"), training=True)
    assert float(quant.range_min) == -2.0 and float(quant.range_max) == 2.0
    quant(np.array([-9.0, 9.0], "float32"))  # inference: the range stays
    assert float(quant.range_max) == 2.0
    with pytest.raises(ValueError, match="min < max"):
        FakeQuant(fixed_range=(1.0, 0.0))


@pytest.fixture(scope="module")
def qat_run(tiny_data, tmp_path_factory):
    """A D-like tiny detector 'trained' (seeded weights), then fine-tuned with qat=True."""
    folder = tmp_path_factory.mktemp("qat")
    detector = EfficientDet(tiny_spec().with_(**D_LIKE), num_classes=3)
    randomize(detector, seed=2)
    detector.save(folder / "float.keras")
    config = train_config(tiny_data, folder / "run", weights=str(folder / "float.keras"),
                          qat=True, epochs=1, steps_per_epoch=3, learning_rate=1e-4,
                          spec_overrides={**train_config(tiny_data, folder).spec_overrides,
                                          **D_LIKE})
    train_detector(config)
    return detector, keras.saving.load_model(folder / "run" / "detector.keras", safe_mode=True)


def test_qat_fine_tune_saves_a_quantization_aware_detector(qat_run):
    float_detector, qat = qat_run
    assert is_quantization_aware(qat) and not is_quantization_aware(float_detector)
    assert qat.spec == float_detector.spec and qat.get_config()["qat"] is True
    assert any(isinstance(layer, QuantConv) for layer in qat.layers)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in qat.layers)
    assert quantization_aware(qat) is qat


def test_qat_converts_fully_integer_and_matches_the_fake_quantized_model(qat_run):
    _, qat = qat_run
    payload = convert_detector(qat, "int8", options=PostprocessOptions(postprocess="none"),
                               input_type="uint8")  # no representative images
    assert float_ops(payload) == []
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=payload)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(5)
    for _ in range(3):
        image = rng.integers(0, 256, (1, 64, 64, 3)).astype("float32")
        boxes, scores = run(interpreter, image)
        raw = qat(image, training=False)
        want_boxes = np.asarray(raw["box_regression"])
        want_scores = np.asarray(keras.ops.sigmoid(raw["class_logits"]))
        # Tolerance in output quantization steps (boxes: about their range / 255; scores: the
        # LOGISTIC output step 1/256). Integer rounding (fixed-point multipliers, int32 bias)
        # differs from float fake-quant by a step here and there and the differences add up
        # over the layers: most outputs agree exactly, none by more than 8 steps (5 seen).
        box_step, score_step = float(np.ptp(want_boxes)) / 255, 1 / 256
        for got, want, step in ((boxes, want_boxes, box_step), (scores, want_scores, score_step)):
            assert np.abs(got - want).max() <= 8 * step + 1e-6
            assert np.abs(got - want).mean() <= step


@pytest.mark.slow  # a second detector conversion (30 s); the default tier converts once above
def test_qat_export_passes_the_edgetpu_report_and_refuses_other_formats(qat_run):
    _, qat = qat_run
    payload = convert_detector(qat, "int8", input_type="uint8")  # the custom post-process op
    summary = edgetpu_report(payload).summary()
    assert summary["first_cpu_op"]["op"] == "DEQUANTIZE"
    # On the CPU only what the calibrated int8 export has there too: the dequantize before the
    # post-process op, the op, and the float clip of its boxes (MINIMUM, RELU).
    assert {row["op"] for row in summary["rows"] if row["status"] != "Mapped to Edge TPU"} == {
        "DEQUANTIZE", "CUSTOM", "MINIMUM", "RELU"}, summary["rows"]
    with pytest.raises(ValueError, match="quantization-aware"):
        convert_detector(qat, "float16")
    with pytest.raises(ValueError, match="do not apply"):
        convert_detector(qat, "int8", float_worst=1)
