"""The shared test harness: tiny model definitions and the checks every model test repeats.

Test modules import from here (never from each other); ``tests/conftest.py`` turns the tiny
definitions into session fixtures.

* :data:`TINY_BACKBONE`, :data:`TINY_OVERRIDES`, :func:`tiny_spec`: a 64 px detector that builds
  in about a second;
* :func:`randomize`, :func:`transfer_by_order`: seeded non-trivial weights, and a legacy
  ``.h5``-style copy by layer order;
* :func:`train_config`: a ``DetectorTrainConfig`` for the tiny detector on a tiny data set;
* :func:`config_round_trip`: ``get_config`` → ``from_config`` → the same config;
* :func:`keras_file_round_trip`: save to ``.keras``, load with ``safe_mode=True``;
* :func:`assert_same_outputs`: two models compute the same thing (dict or tensor outputs);
* :func:`assert_tflite_matches_keras`: a ``.tflite`` file, run in LiteRT, computes what the Keras
  model computes;
* :func:`consumer_detector_export`, :func:`consumer_classifier_export`,
  :func:`our_stretched_detections`, :func:`assert_same_detections`: tiny int8 exports with Task
  Library metadata, and the check that a real consumer (MediaPipe, the Task Library) returns
  what LiteRT and our decoding return.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_efficient.configs.efficientdet import EfficientDetSpec, get_efficientdet_spec
from keras_efficient.configs.efficientnet import get_efficientnet_scaling

TINY_BACKBONE = get_efficientnet_scaling("lite0").with_(name="tinylite", width=0.25, depth=0.25)
TINY_OVERRIDES: dict[str, Any] = {"backbone": TINY_BACKBONE, "input_size": 64, "max_level": 5,
                                  "fpn_filters": 16, "fpn_cells": 1, "head_repeats": 1}


def tiny_spec() -> EfficientDetSpec:
    """A Lite0-shaped detector at 64 px with P3–P5, one 16-wide BiFPN cell and one head repeat."""
    return get_efficientdet_spec("lite0").with_(**TINY_OVERRIDES)


def randomize(model: keras.Model, seed: int) -> None:
    """Non-trivial seeded weights everywhere but the input normalization, BN statistics
    included (variances and gammas kept positive)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization) or not layer.weights:
            continue
        values = []
        for weight in layer.weights:
            value = rng.normal(0, 0.1, weight.shape).astype("float32")
            if "variance" in weight.path or "gamma" in weight.path:
                value = 1 + np.abs(value)
            values.append(value)
        layer.set_weights(values)


def transfer_by_order(source: keras.Model, target: keras.Model) -> None:
    """Copy weights pairing the weight-owning layers in order, as a legacy .h5 load does."""
    src = [layer for layer in source.layers if layer.weights]
    dst = [layer for layer in target.layers if layer.weights]
    assert len(src) == len(dst)
    for a, b in zip(src, dst, strict=True):
        if not a.name.startswith("normalization"):
            assert a.name == b.name
        b.set_weights(a.get_weights())
        if hasattr(b, "finalize_state"):
            b.finalize_state()


def train_config(data: Any, out: Any, **changes: Any) -> Any:
    """A few seconds of training of the tiny detector on ``data`` (a synthetic data set) into
    ``out``; ``changes`` override any field."""
    from keras_efficient.training.detector import DetectorTrainConfig

    values = {"train_json": str(data.train_json), "train_images": str(data.train_images_dir),
              "output_dir": str(out), "spec_overrides": dict(TINY_OVERRIDES), "batch_size": 4,
              "epochs": 2, "steps_per_epoch": 3, "learning_rate": 0.003, "optimizer": "adamw",
              "ema_decay": None, "scale_range": (0.8, 1.25), "verbose": 0}
    values.update(changes)
    return DetectorTrainConfig(**values)


def as_json(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists), for comparing configs."""
    return json.loads(json.dumps(value))


def config_round_trip(obj: Any) -> Any:
    """Rebuild ``obj`` (a layer or model) with ``type(obj).from_config(obj.get_config())``,
    assert the clone reports the same config (as JSON) and return it."""
    config = obj.get_config()
    clone = type(obj).from_config(copy.deepcopy(config))  # from_config may consume its argument
    assert as_json(clone.get_config()) == as_json(config)
    return clone


def keras_file_round_trip(model: keras.Model, folder: Path, name: str = "model") -> keras.Model:
    """Save ``model`` to ``folder/name.keras`` and load it back with ``safe_mode=True``."""
    path = Path(folder) / f"{name}.keras"
    model.save(path)
    return keras.saving.load_model(path, safe_mode=True)


def _outputs(model: Any, inputs: Any) -> dict[str, np.ndarray]:
    out = model(inputs, training=False)
    if isinstance(out, dict):
        return {key: keras.ops.convert_to_numpy(value) for key, value in out.items()}
    if isinstance(out, list | tuple):
        return {str(i): keras.ops.convert_to_numpy(value) for i, value in enumerate(out)}
    return {"output": keras.ops.convert_to_numpy(out)}


def assert_same_outputs(model: Any, other: Any, inputs: Any, *, atol: float = 1e-6) -> None:
    """``model`` and ``other`` give the same outputs (every key of a dict output) on ``inputs``."""
    expected, got = _outputs(model, inputs), _outputs(other, inputs)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, atol=atol, err_msg=key)


def assert_tflite_matches_keras(path: Path, model: keras.Model, images: Sequence[np.ndarray],
                                *, atol: float) -> None:
    """The TFLite file, run in LiteRT through :func:`keras_efficient.export.runtime.run`, gives
    the Keras model's outputs on each ``[1, H, W, 3]`` image (dict outputs matched by their last
    dimension, which differs between a detector's class and box outputs)."""
    from keras_efficient.export.runtime import load_interpreter, run

    interpreter = load_interpreter(path)
    for image in images:
        expected = _outputs(model, image)
        got = run(interpreter, image)
        if len(expected) == 1:
            np.testing.assert_allclose(got[0], next(iter(expected.values())), atol=atol)
            continue
        by_width = {out.shape[-1]: out for out in got}
        assert len(by_width) == len(expected), "outputs must differ in their last dimension"
        for key, value in expected.items():
            np.testing.assert_allclose(by_width[value.shape[-1]], value, atol=atol, err_msg=key)


CONSUMER_SIZE = 64
CONSUMER_LABELS = ("circle", "square", "triangle")
CONSUMER_CLASS_NAMES = ("a", "b", "c", "d", "e")


def _dark_calibration_images() -> list[np.ndarray]:
    """Dark images (pixels up to 60): a uint8 input quantized from their range would make a
    consumer that feeds raw bytes and one that applies the input scale disagree."""
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 60, (1, CONSUMER_SIZE, CONSUMER_SIZE, 3)).astype("float32")
            for _ in range(4)]


def consumer_detector_export() -> bytes:
    """The tiny detector (seed 0, :data:`CONSUMER_LABELS`) as Android consumers get it: int8,
    uint8 input, the post-processing custom op, Task Library metadata (mean 0, std 1). The
    default head bias puts every score near 0.01 and the score threshold is 0: it returns 100
    detections whose boxes cross every edge of the image."""
    from keras_efficient.export.detector_tflite import PostprocessOptions, convert_detector
    from keras_efficient.export.metadata import write_detector_metadata
    from keras_efficient.models.efficientdet import EfficientDet

    keras.utils.set_random_seed(0)
    detector = EfficientDet(tiny_spec(), num_classes=len(CONSUMER_LABELS))
    options = PostprocessOptions("custom_op", score_threshold=0.0)
    payload = convert_detector(detector, "int8", options=options,
                               representative=_dark_calibration_images(), input_type="uint8")
    return write_detector_metadata(payload, labels=CONSUMER_LABELS, mean=[0.0], std=[1.0],
                                   name="tiny")


def consumer_classifier_export() -> bytes:
    """A tiny classifier (seed 0, :data:`CONSUMER_CLASS_NAMES`) at 64 px as Android consumers
    get it: int8, uint8 input, Task Library metadata (mean 0, std 1)."""
    from keras_efficient.export.metadata import write_classifier_metadata
    from keras_efficient.export.tflite import convert
    from keras_efficient.models.efficientnet import EfficientNet

    keras.utils.set_random_seed(0)
    model = EfficientNet(TINY_BACKBONE, weights=None, classes=len(CONSUMER_CLASS_NAMES),
                         input_shape=(CONSUMER_SIZE, CONSUMER_SIZE, 3))
    payload = convert(model, "int8", representative=_dark_calibration_images(),
                      input_type="uint8")
    return write_classifier_metadata(payload, labels=CONSUMER_CLASS_NAMES, mean=[0.0],
                                     std=[1.0], name="tiny")


def our_stretched_detections(path: Path, pixels: np.ndarray,
                             labels: Sequence[str]) -> np.ndarray:
    """LiteRT and our decoding, the image stretched and fed as raw bytes (as the Android
    consumers do): rows ``(x0, y0, width, height, class index, score)`` in pixels of the
    image."""
    from keras_efficient.batch_inference import tflite_detector

    [found] = tflite_detector(path, labels=labels, resize="stretch").predict_fn(
        [pixels.astype("float32")])
    y0, x0, y1, x1 = np.asarray(found["boxes"], dtype="float64").T
    return np.stack([x0, y0, x1 - x0, y1 - y0, found["classes"], found["scores"]], axis=1)


def assert_same_detections(theirs: np.ndarray, ours: np.ndarray, *, low: Sequence[float],
                           high: Sequence[float]) -> None:
    """One to one, each consumer row ``(x0, y0, width, height, class, score)`` has a row of
    ours (as :func:`our_stretched_detections` gives them) with its class, its score (within
    1e-6) and a box with ``low <= ours - theirs <= high`` per coordinate (the consumer's
    rounding to whole pixels); ties of score are common in int8, so among the rows of equal
    class and score the closest box is taken."""
    assert theirs.shape == ours.shape, (theirs.shape, ours.shape)
    lower, upper = np.asarray(low, "float64"), np.asarray(high, "float64")
    centre, half = (lower + upper) / 2, (upper - lower) / 2

    def excess(i: int, row: np.ndarray) -> float:
        return float((np.abs(ours[i, :4] - row[:4] - centre) - half).max())

    unused = list(range(len(ours)))
    for row in theirs:
        same = [i for i in unused if ours[i, 4] == row[4] and abs(ours[i, 5] - row[5]) < 1e-6]
        assert same, f"no detection of ours with class {row[4]} and score {row[5]}"
        best = min(same, key=lambda i: excess(i, row))
        assert excess(best, row) <= 1e-3, (row, ours[best], (low, high))
        unused.remove(best)
