"""Run TFLite models in the LiteRT interpreter (``ai-edge-litert``)."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from typing import Any

import numpy as np


def load_interpreter(path: str | os.PathLike[str], num_threads: int = 2) -> Any:
    """A ready LiteRT interpreter for ``path``.

    Uses ``ai_edge_litert`` (install ``keras_efficient[export]``); falls back to
    ``tf.lite.Interpreter`` with a warning only when LiteRT is not installed.

    Example::

        interpreter = load_interpreter("model_int8.tflite", num_threads=2)
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        warnings.warn("ai-edge-litert is not installed (pip install 'keras_efficient[export]'); "
                      "falling back to tf.lite.Interpreter.", stacklevel=2)
        Interpreter = tf.lite.Interpreter  # noqa: N806
    interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def _to_input(detail: dict[str, Any], image: np.ndarray) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return image.astype("float32")
    if dtype == np.uint8:
        # The bytes as they are, as Android consumers (Task Library, MediaPipe) feed them:
        # this package's exports quantize a uint8 input with scale 1 and zero point 0.
        return np.clip(np.round(image), 0, 255).astype("uint8")
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(image / scale + zero_point), info.min, info.max).astype(dtype)


def run(interpreter: Any, image: np.ndarray) -> list[np.ndarray]:
    """Invoke on one ``[1, H, W, 3]`` float image in [0, 255]; outputs in the model's order,
    dequantized to float32.

    A uint8 input gets the pixels rounded to bytes, whatever its quantization says (the way
    Android consumers feed it); an int8 input gets them quantized with its scale and zero point.

    Example::

        [probabilities] = run(interpreter, image[None])  # float32 even for an int8 model
    """
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], _to_input(detail, np.asarray(image)))
    interpreter.invoke()
    outputs = []
    for out in interpreter.get_output_details():
        value = interpreter.get_tensor(out["index"])
        scale, zero_point = out["quantization"]
        if value.dtype != np.float32 and scale:
            value = (value.astype("float32") - zero_point) * scale
        outputs.append(value)
    return outputs


def op_histogram(interpreter: Any) -> dict[str, int]:
    """How many times each op appears in the flatbuffer, by op name.

    Example::

        op_histogram(interpreter)  # {"QUANTIZE": 1, "CONV_2D": 65, ...}
    """
    return dict(Counter(op["op_name"] for op in interpreter._get_ops_details()))


def tensor_types(interpreter: Any) -> dict[str, int]:
    """How many tensors of each dtype the model holds (e.g. to find floats in an int8 model).

    Example::

        tensor_types(interpreter)  # {"int8": ..., "int32": ..., "float32": ...}
    """
    return dict(Counter(np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()))
