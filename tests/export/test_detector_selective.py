"""Selective int8 where detectors are exported: ``convert_detector``, recipes and the CLI keep
the worst layers float for CPU/GPU targets and refuse it for the EdgeTPU."""

import dataclasses

import keras
import numpy as np
import pytest

from keras_efficient.export.detector_tflite import PostprocessOptions, convert_detector
from keras_efficient.export.recipes import load_recipe
from keras_efficient.export.runtime import run
from keras_efficient.models.efficientdet import EfficientDet
from tests.harness import randomize, tiny_spec

RAW = PostprocessOptions(postprocess="none")


@pytest.fixture(scope="module")
def detector():
    """A tiny detector whose box predictor is hard to quantize: one output channel is offset
    by 40, so an int8 box output has steps of about 0.2 where the others need 0.001."""
    model = EfficientDet(tiny_spec(), num_classes=3)
    randomize(model, seed=3)
    predict = model.get_layer("box_net_predict")
    *kernels, bias = predict.get_weights()
    bias[0] = 40.0
    predict.set_weights([*kernels, bias])
    return model


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 255, (1, 64, 64, 3)).astype("float32") for _ in range(8)]


def _error(payload, detector, images):
    """Mean |Δ| of the box encodings and the class scores against the Keras detector."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=payload)
    interpreter.allocate_tensors()
    errors = []
    for image in images:
        raw = detector(image, training=False)
        boxes, scores = run(interpreter, image)
        want_scores = keras.ops.convert_to_numpy(keras.ops.sigmoid(raw["class_logits"]))
        errors.append(np.abs(boxes - keras.ops.convert_to_numpy(raw["box_regression"])).mean()
                      + np.abs(scores - want_scores).mean())
    return float(np.mean(errors))


def test_selective_detector_export_runs_and_beats_full_int8(detector, images):
    full = convert_detector(detector, "int8", options=RAW, representative=images)
    selective = convert_detector(detector, "int8", options=RAW, representative=images,
                                 float_layers=["box_net_predict", "box_regression"])
    full_error, selective_error = _error(full, detector, images), _error(selective, detector,
                                                                         images)
    assert selective_error < 0.5 * full_error, (selective_error, full_error)


def test_selective_is_refused_for_the_edgetpu(detector, images):
    with pytest.raises(ValueError, match="EdgeTPU runs only integer ops"):
        convert_detector(detector, "int8", options=RAW, representative=images, float_worst=1,
                         edgetpu=True)
    with pytest.raises(ValueError, match="EdgeTPU runs only integer ops"):
        dataclasses.replace(load_recipe("edgetpu"), input_type="float32", metadata=False,
                            float_worst=2)
    with pytest.raises(ValueError, match="input_type='float32'"):
        dataclasses.replace(load_recipe("android-int8"), float_layers=("head",))
    with pytest.raises(ValueError, match="int8 format"):
        dataclasses.replace(load_recipe("server"), float_worst=1)


def test_recipe_and_cli_carry_the_float_layers(tmp_path):
    from keras_efficient.cli import build_parser

    path = tmp_path / "cpu.json"
    path.write_text('{"formats": ["int8"], "float_layers": ["box_net_predict"], '
                    '"float_worst": 2, "metadata": false}')
    recipe = load_recipe(path)
    assert recipe.float_layers == ("box_net_predict",) and recipe.float_worst == 2
    args = build_parser().parse_args(["export", "--recipe", str(path), "--float-worst", "3",
                                      "--float-layers", "a", "b"])
    assert args.float_worst == 3 and args.float_layers == ["a", "b"]
