"""Run TFLite models in LiteRT (``ai-edge-litert``): its ``Interpreter``, or its newer
``CompiledModel`` entry point (:func:`load_runtime`).

``CompiledModel`` (ai-edge-litert 2.x, CPU accelerator = XNNPACK) runs this package's networks
and classifiers; it cannot run the ``TFLite_Detection_PostProcess`` custom op (allocating the
op's outputs fails with "Custom allocation is too small for tensor", and the process can then
abort with a corrupted heap), so such files are refused before LiteRT sees them.
"""

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


RUNTIMES = ("interpreter", "compiled_model")
"""LiteRT entry points :func:`load_runtime` offers."""


def load_runtime(path: str | os.PathLike[str], runtime: str = "interpreter",
                 num_threads: int = 2) -> Any:
    """A ready LiteRT runner for ``path`` with the interpreter's calling surface
    (``get_input_details``, ``set_tensor``, ``invoke``, ``get_output_details``,
    ``get_tensor``), so :func:`run` takes either: ``"interpreter"`` (:func:`load_interpreter`)
    or ``"compiled_model"`` (:class:`CompiledModelRunner`).

    Example::

        runner = load_runtime("lite0_network_int8.tflite", "compiled_model")
        outputs = run(runner, image[None])
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}; received {runtime!r}.")
    if runtime == "interpreter":
        return load_interpreter(path, num_threads=num_threads)
    return CompiledModelRunner(path, num_threads=num_threads)


class CompiledModelRunner:
    """LiteRT's ``CompiledModel`` (CPU, ``num_threads`` threads) behind the interpreter's calling
    surface; input and output buffers are created once and reused.

    Example::

        runner = CompiledModelRunner("b0_int8.tflite", num_threads=2)
        [probabilities] = run(runner, image[None])
    """

    def __init__(self, path: str | os.PathLike[str], num_threads: int = 2) -> None:
        try:
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.options import Options
        except ImportError as error:
            raise ImportError("runtime='compiled_model' needs ai-edge-litert 2.x with "
                              "CompiledModel (pip install 'keras_efficient[export]').") from error
        custom = custom_ops(path)
        if custom:
            raise ValueError(
                f"{os.fspath(path)} holds the custom op(s) {custom}, which LiteRT's "
                "CompiledModel cannot run (allocating their outputs fails with 'Custom "
                "allocation is too small for tensor' and can corrupt the heap); use "
                "runtime='interpreter' for it, or time the network-only export.")
        options = Options.create()
        options.cpu_options.num_threads = num_threads
        self.model = CompiledModel.from_file(os.fspath(path), options=options)
        key = next(iter(self.model.get_signature_list()))
        self._inputs = list(self.model.get_input_tensor_details(key).values())
        self._outputs = list(self.model.get_output_tensor_details(key).values())
        self._in_buffers = self.model.create_input_buffers(0)
        self._out_buffers = self.model.create_output_buffers(0)

    @staticmethod
    def _details(tensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"index": position, "name": t["name"], "dtype": np.dtype(t["dtype"]).type,
                 "shape": np.asarray(t["shape"]), "quantization": (0.0, 0)}
                for position, t in enumerate(tensors)]

    def get_input_details(self) -> list[dict[str, Any]]:
        """The inputs as the interpreter lists them (``index`` = position; no quantization:
        this package's integer inputs take bytes, :func:`run`)."""
        return self._details(self._inputs)

    def get_output_details(self) -> list[dict[str, Any]]:
        """The outputs as the interpreter lists them (float32 in this package's exports)."""
        return self._details(self._outputs)

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        """Write input ``index`` (its position)."""
        self._in_buffers[index].write(np.ascontiguousarray(value))

    def invoke(self) -> None:
        """Run once on the current inputs."""
        self.model.run_by_index(0, self._in_buffers, self._out_buffers)

    def get_tensor(self, index: int) -> np.ndarray:
        """Output ``index`` (its position) as an array of its shape."""
        tensor = self._outputs[index]
        shape = [int(d) for d in tensor["shape"]]
        flat = self._out_buffers[index].read(int(np.prod(shape)), np.dtype(tensor["dtype"]))
        return np.asarray(flat).reshape(shape)


def custom_ops(path: str | os.PathLike[str]) -> list[str]:
    """The custom op names a ``.tflite`` file declares.

    Example::

        custom_ops("lite0_int8.tflite")  # ["TFLite_Detection_PostProcess"]
    """
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as handle:
        model = schema.Model.GetRootAs(handle.read())
    codes = (model.OperatorCodes(i).CustomCode() for i in range(model.OperatorCodesLength()))
    return sorted({code.decode() for code in codes if code})


def _to_input(detail: dict[str, Any], image: np.ndarray) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return image.astype("float32")
    # The bytes as they are, as Android consumers (Task Library, MediaPipe) feed them: in this
    # package's exports byte q is pixel q (int8: q + 128), whatever scaling the input
    # quantization folds in (keras_efficient.export.tflite.fold_pixel_scaling).
    pixels = np.clip(np.round(image), 0, 255)
    if dtype == np.uint8:
        return pixels.astype("uint8")
    if dtype == np.int8:
        return (pixels - 128).astype("int8")
    raise ValueError(f"Unsupported input dtype {np.dtype(dtype).name}: this package's exports "
                     "take float32, uint8 or int8 images.")


def run(interpreter: Any, image: np.ndarray) -> list[np.ndarray]:
    """Invoke on one ``[1, H, W, 3]`` float image in [0, 255]; outputs in the model's order,
    dequantized to float32.

    An integer input gets the pixels rounded to bytes (int8: less 128), whatever its
    quantization says (the way Android consumers feed it).

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
