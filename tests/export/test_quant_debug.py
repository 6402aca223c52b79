"""The per-layer int8 error report (TensorFlow's QuantizationDebugger), int16x8 and selective int8.

Two tiny functional models, each with one layer made hard to quantize on purpose:

* ``toy_hard``: the ``hard`` dense layer computes a small difference of huge terms
  (``50 * g0 - 49.9 * g1`` with ``g0 == g1``): int8 weights cannot resolve it, so the op itself is
  wrong by many output steps (high rmse/scale), whatever the activation precision;
* ``toy_wide``: one output channel of the ``wide`` convolution is 1000x the others, so its
  activation range is huge and one int8 step is larger than the other channels' values (the range
  ranking finds it; 16-bit activations fix it). The pooling after it has no weights, so no weight
  error hides the activation error.

Weights are seeded: the comparisons are deterministic.
"""

import keras
import matplotlib
import numpy as np
import pytest

import keras_efficient.export as export_package
from keras_efficient.export.quant_debug import ROUNDING_ONLY, debug_quantization
from keras_efficient.export.recipes import load_recipe
from keras_efficient.export.runtime import load_interpreter, run
from keras_efficient.export.tflite import convert, export_tflite

SIZE = 16


def _seeded(seed):
    return {"kernel_initializer": keras.initializers.GlorotUniform(seed=seed),
            "bias_initializer": keras.initializers.RandomUniform(-0.1, 0.1, seed=seed)}


def _base():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 128, offset=-1, name="scale")(inputs)
    return inputs, keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a",
                                       **_seeded(1))(x)


@pytest.fixture(scope="module")
def toy_hard():
    inputs, x = _base()
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(4, name="hard", **_seeded(2))(x)
    model = keras.Model(inputs, keras.layers.Softmax(name="probs")(x), name="toy_hard")
    kernel, bias = model.get_layer("conv_a").get_weights()
    kernel[..., 1], bias[1] = kernel[..., 0], bias[0]  # channels 0 and 1 equal
    model.get_layer("conv_a").set_weights([kernel, bias])
    kernel, bias = model.get_layer("hard").get_weights()
    kernel[0], kernel[1] = 50.0, -49.9
    model.get_layer("hard").set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def toy_wide():
    inputs, x = _base()
    x = keras.layers.Conv2D(8, 1, name="wide", **_seeded(3))(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x),
                        name="toy_wide")
    kernel, bias = model.get_layer("wide").get_weights()
    kernel[..., 0] *= 1000.0
    model.get_layer("wide").set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32") for _ in range(8)]


@pytest.fixture(scope="module")
def hard_report(toy_hard, images):
    return debug_quantization(toy_hard, images)


def _errors(model, payload, images, tmp_path, name):
    """max and mean |TFLite in LiteRT - Keras| over the images, and the interpreter."""
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(payload)
    interpreter = load_interpreter(path)
    diffs = np.stack([np.abs(run(interpreter, image)[0] - model.predict(image, verbose=0))
                      for image in images])
    return float(diffs.max()), float(diffs.mean()), interpreter


def _output_dtypes(interpreter):
    """{op name: set of its output dtypes}."""
    dtypes = {}
    for op in interpreter._get_ops_details():
        for index in op["outputs"]:
            dtype = np.dtype(interpreter._get_tensor_details(index, 0)["dtype"]).name
            dtypes.setdefault(op["op_name"], set()).add(dtype)
    return dtypes


def test_report_names_the_layer_int8_cannot_compute(hard_report, tmp_path):
    worst = hard_report.worst(1)[0]
    assert worst.layers == ("hard",) and worst.op == "FULLY_CONNECTED"
    assert worst.rmse_over_scale > 10 * ROUNDING_ONLY, hard_report.markdown()
    others = hard_report.layers[1:]
    assert others and all(layer.rmse_over_scale < 2 * ROUNDING_ONLY for layer in others)
    assert {layer.op for layer in others} >= {"CONV_2D", "MEAN", "SOFTMAX"}
    # The output op is named after the signature; the report names its layer.
    [softmax] = [layer for layer in others if layer.op == "SOFTMAX"]
    assert softmax.layers == ("probs",) and softmax.tensor.startswith("StatefulPartitionedCall")
    assert worst.range_min < 0 < worst.range_max
    assert worst.range == pytest.approx(255 * worst.scale)
    summary = hard_report.summary(2)
    assert summary["images"] == 8 and summary["layers_debugged"] == len(hard_report.layers)
    assert summary["worst"][0]["layers"] == ["hard"]
    assert hard_report.float_layers(1) == [worst.tensor]

    backend = matplotlib.get_backend()
    files = hard_report.write(tmp_path / "debug")
    assert matplotlib.get_backend() == backend
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_lines = files["csv"].read_text().splitlines()
    assert len(csv_lines) == 1 + len(hard_report.layers) and "hard" in csv_lines[1]
    table = files["md"].read_text()
    assert "| 1 | hard | FULLY_CONNECTED |" in table


def test_range_ranking_names_the_layer_with_outliers(toy_wide, images):
    report = debug_quantization(toy_wide, images, sort_by="range")
    assert report.worst(1)[0].layers == ("wide",), report.markdown()
    assert report.worst(1)[0].range > 100 * report.sorted_by("range").layers[-1].range
    assert report.summary(1)["widest_range"][0]["layers"] == ["wide"]
    # Its own rounding error is still about half a step: rmse/scale does not single it out.
    assert report.sorted_by("rmse/scale").worst(1)[0].layers != ("wide",)
    with pytest.raises(ValueError, match="sort_by must be one of"):
        debug_quantization(toy_wide, images, sort_by="loss")


def test_int16x8_runs_in_litert_and_beats_int8(toy_wide, images, tmp_path):
    int8 = _errors(toy_wide, convert(toy_wide, "int8", representative=images), images,
                   tmp_path, "int8")
    int16 = _errors(toy_wide, convert(toy_wide, "int16x8", representative=images), images,
                    tmp_path, "int16x8")
    interpreter = int16[2]
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    dtypes = _output_dtypes(interpreter)
    assert dtypes["CONV_2D"] == {"int16"} and dtypes["MEAN"] == {"int16"}
    assert int16[0] < int8[0] and int16[1] < 0.8 * int8[1], (int16[:2], int8[:2])
    with pytest.raises(ValueError, match="needs a representative dataset"):
        convert(toy_wide, "int16x8")
    with pytest.raises(ValueError, match="needs quantization='int8'"):
        convert(toy_wide, "int16x8", representative=images, input_type="uint8")


def test_selective_int8_keeps_the_worst_layer_float(toy_hard, images, hard_report, tmp_path):
    int8 = _errors(toy_hard, convert(toy_hard, "int8", representative=images), images,
                   tmp_path, "int8")
    assert _output_dtypes(int8[2])["FULLY_CONNECTED"] == {"int8"}
    by_name = _errors(toy_hard, convert(toy_hard, "int8", representative=images,
                                        float_layers=["hard"]), images, tmp_path, "name")
    by_report = _errors(toy_hard, convert(toy_hard, "int8", representative=images,
                                          float_layers=hard_report.float_layers(1)),
                        images, tmp_path, "tensor")
    worst = _errors(toy_hard, convert(toy_hard, "int8", representative=images, float_worst=1),
                    images, tmp_path, "worst")
    for max_error, mean_error, interpreter in (by_name, by_report, worst):
        dtypes = _output_dtypes(interpreter)
        assert dtypes["FULLY_CONNECTED"] == {"float32"}
        assert dtypes["CONV_2D"] == {"int8"} and dtypes["SOFTMAX"] == {"int8"}
        assert interpreter.get_input_details()[0]["dtype"] == np.float32
        assert max_error < 0.5 * int8[0] and mean_error < 0.5 * int8[1], (max_error, int8)


def test_float_layers_must_name_quantized_ops(toy_hard, images):
    with pytest.raises(ValueError, match=r"'nope' names no quantized op.*conv_a, gap, hard"):
        convert(toy_hard, "int8", representative=images, float_layers=["nope"])
    with pytest.raises(ValueError, match="list of names"):
        convert(toy_hard, "int8", representative=images, float_layers="hard")


def test_selective_and_int16x8_are_refused_for_the_edgetpu(toy_hard, images, tmp_path):
    edgetpu = load_recipe("edgetpu").edgetpu  # how recipes mark the EdgeTPU target
    assert edgetpu
    for kwargs in ({"float_layers": ["hard"]}, {"float_worst": 2}):
        with pytest.raises(ValueError, match="EdgeTPU runs only integer ops"):
            export_tflite(toy_hard, tmp_path / "m.tflite", "int8", representative=images,
                          edgetpu=edgetpu, **kwargs)
    with pytest.raises(ValueError, match="int16x8' is for CPU targets"):
        export_tflite(toy_hard, tmp_path / "m.tflite", "int16x8", representative=images,
                      edgetpu=edgetpu)
    with pytest.raises(ValueError, match="keep float input and output"):
        convert(toy_hard, "int8", representative=images, input_type="uint8",
                float_layers=["hard"])
    with pytest.raises(ValueError, match="has none to select"):
        convert(toy_hard, "float16", float_worst=1)
    assert list(tmp_path.iterdir()) == []


def test_exposed_from_the_export_package():
    assert export_package.debug_quantization is debug_quantization
    assert "QuantizationReport" in dir(export_package)
    with pytest.raises(AttributeError):
        export_package.no_such_name  # noqa: B018
