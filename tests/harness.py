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
  model computes.
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
