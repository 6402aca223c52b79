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
    """A tiny detector whose box predictor int8 cannot compute (as ``toy_hard`` in
    test_quant_debug): its input channels 0 and 1 are equal at every level, and every output
    channel weighs them 50 and −49.9, a small difference of large terms that int8 weights
    (per-channel step 50/127) cannot resolve."""
    model = EfficientDet(tiny_spec(), num_classes=3)
    randomize(model, seed=3)
    conv = model.get_layer("box_net_conv0")
    depthwise, pointwise, bias = conv.get_weights()
    pointwise[..., 1], bias[1] = pointwise[..., 0], bias[0]
    conv.set_weights([depthwise, pointwise, bias])
    for level in (3, 4, 5):
        bn = model.get_layer(f"box_net_bn0_p{level}")
        values = bn.get_weights()
        for value in values:
            value[1] = value[0]
        bn.set_weights(values)
    predict = model.get_layer("box_net_predict")
    depthwise, pointwise, bias = predict.get_weights()
    depthwise[:, :, 1], pointwise[0, 0, 0], pointwise[0, 0, 1] = depthwise[:, :, 0], 50.0, -49.9
    predict.set_weights([depthwise, pointwise, bias])
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
                                 float_layers=["box_net_predict"])
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
