"""Where int8 loses accuracy, layer by layer, and selective int8 that keeps those layers float.

Both run TensorFlow's own ``tf.lite.experimental.QuantizationDebugger`` on the converter our int8
export uses (:func:`keras_efficient.export.tflite.make_converter`: same SavedModel, same
calibration on the representative images, per-channel weights). The debugger inserts a
``NumericVerify`` op after every quantized op: that op's quantized output is compared with the
float op run on the same (dequantized) input, the input the quantized model gives it. Its
statistics (mean squared error, max |error|, mean error, standard deviation, element count,
output scale and zero point) become a :class:`QuantizationReport`:

* ``rmse/scale`` (TensorFlow's suggested figure) is the error in output quantization steps. Pure
  rounding gives about ``1/sqrt(12) = 0.29``; much more means the op's int8 arithmetic (e.g.
  int8 weights, fixed-point rescaling) cannot resolve what the float op computes.
* ``range`` is the calibrated activation range ``[(-128 - zp) * scale, (127 - zp) * scale]``.
  A huge range (outliers) does not raise the layer's own ``rmse/scale`` (its rounding error is
  still half a step) but makes each step coarse for every consumer: sort by ``range`` to find it.

A row is the error an op adds given what reaches it, so the culprit shows as itself; but an
error large enough to push the values downstream outside the ranges calibrated on the float model
makes the ops there clip, and they show a high rmse/scale too: in graph order (the plot), the
first op of a run of bad ones is the one to look at.

Selective quantization (:func:`quantize_selectively`, reached through ``float_layers`` /
``float_worst`` of :func:`keras_efficient.export.tflite.convert`) passes the chosen tensors as
the debugger's ``denylisted_nodes`` and takes ``get_nondebug_quantized_model()``: those ops stay
float between a DEQUANTIZE and a QUANTIZE; input and output stay float.

The debugger drives ``tf.lite.Interpreter`` (its deprecation warning is silenced here); the
models it returns run in LiteRT like every other export.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_efficient.export.tflite import (
    ExportError,
    _representative,
    check_images,
    make_converter,
    static_input_shape,
    write_saved_model,
)
from keras_efficient.files import atomic_path, write_text_atomic

SORT_KEYS = ("rmse/scale", "rmse", "range", "max_abs_error")
"""How a report may rank its layers, worst first."""

ROUNDING_ONLY = 1.0 / math.sqrt(12.0)
"""``rmse/scale`` of pure rounding to the nearest step (uniform error over one step)."""

_INT8_MIN, _INT8_MAX = -128, 127
_SIGNATURE_OUTPUT = re.compile(r"StatefulPartitionedCall(_\d+)?:0")


@dataclasses.dataclass(frozen=True)
class LayerError:
    """The quantization error of one quantized op output, from the debugger's statistics.

    ``tensor`` is the TFLite tensor name (the name ``float_layers`` and the debugger's
    ``denylisted_nodes`` take); ``layers`` are the Keras layers folded into it (a convolution
    with its batch normalization and activation is one op).

    Example::

        row = report.worst(1)[0]
        print(row.layers, row.op, row.rmse_over_scale, row.range_min, row.range_max)
    """

    tensor: str
    op: str
    layers: tuple[str, ...]
    index: int
    rmse: float
    rmse_over_scale: float
    max_abs_error: float
    mean_error: float
    stddev: float
    num_elements: int
    scale: float
    zero_point: int

    @property
    def range_min(self) -> float:
        return (_INT8_MIN - self.zero_point) * self.scale

    @property
    def range_max(self) -> float:
        return (_INT8_MAX - self.zero_point) * self.scale

    @property
    def range(self) -> float:
        """Width of the calibrated activation range (``255 * scale``)."""
        return self.range_max - self.range_min

    @property
    def label(self) -> str:
        """The Keras layers if the name has any, else the tensor name."""
        return "+".join(self.layers) or self.tensor

    def key(self, sort_by: str) -> float:
        return {"rmse/scale": self.rmse_over_scale, "rmse": self.rmse, "range": self.range,
                "max_abs_error": self.max_abs_error}[sort_by]

    def row(self) -> dict[str, Any]:
        """The row as plain values (CSV, JSON)."""
        return {"tensor": self.tensor, "layers": " ".join(self.layers), "op": self.op,
                "tensor_index": self.index, "rmse/scale": self.rmse_over_scale,
                "rmse": self.rmse, "range_min": self.range_min, "range_max": self.range_max,
                "max_abs_error": self.max_abs_error, "mean_error": self.mean_error,
                "stddev": self.stddev, "num_elements": self.num_elements, "scale": self.scale,
                "zero_point": self.zero_point}


@dataclasses.dataclass(frozen=True)
class QuantizationReport:
    """Per-layer int8 error of one model on its representative images, worst first.

    Example::

        report = debug_quantization(model, images)
        print(report.markdown(10))
        report.write("runs/export/d0-debug")        # .csv, .md and .png
        manifest["quantization_debug"] = report.summary(5)
        payload = convert(model, "int8", representative=images,
                          float_layers=report.float_layers(3))
    """

    model: str
    images: int
    sort_by: str
    layers: tuple[LayerError, ...]

    def worst(self, count: int = 5) -> tuple[LayerError, ...]:
        return self.layers[:count]

    def sorted_by(self, sort_by: str) -> QuantizationReport:
        """The same report ranked by another of :data:`SORT_KEYS`."""
        return dataclasses.replace(self, sort_by=sort_by,
                                   layers=_ranked(self.layers, sort_by))

    def float_layers(self, count: int) -> list[str]:
        """Tensor names of the ``count`` worst layers, for ``convert(..., float_layers=...)``."""
        return [layer.tensor for layer in self.worst(count)]

    def rows(self) -> list[dict[str, Any]]:
        return [{"rank": rank, **layer.row()} for rank, layer in enumerate(self.layers, 1)]

    def csv(self) -> str:
        """Every layer, worst first, one CSV row each."""
        rows = self.rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["rank"])
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def markdown(self, count: int | None = None) -> str:
        """A Markdown table of the ``count`` worst layers (all by default)."""
        lines = [f"Int8 error per layer of {self.model} (TensorFlow QuantizationDebugger, "
                 f"{self.images} representative images), worst by {self.sort_by}; rounding "
                 f"alone gives rmse/scale {ROUNDING_ONLY:.2f}.", "",
                 "| # | layers | op | rmse/scale | rmse | activation range | max abs err | "
                 "mean err | elements | tensor |",
                 "|---:|---|---|---:|---:|---|---:|---:|---:|---|"]
        for rank, layer in enumerate(self.layers[:count], 1):
            lines.append(
                f"| {rank} | {' '.join(layer.layers) or '-'} | {layer.op} | "
                f"{layer.rmse_over_scale:.3f} | {layer.rmse:.4g} | "
                f"[{layer.range_min:.4g}, {layer.range_max:.4g}] | {layer.max_abs_error:.4g} | "
                f"{layer.mean_error:.3g} | {layer.num_elements} | "
                f"`{layer.tensor.replace('|', '/')}` |")
        return "\n".join(lines) + "\n"

    def summary(self, count: int = 5) -> dict[str, Any]:
        """For an export manifest: the ``count`` worst layers, and the widest ranges."""
        def brief(layer: LayerError) -> dict[str, Any]:
            return {"layers": list(layer.layers), "op": layer.op, "tensor": layer.tensor,
                    "rmse/scale": round(layer.rmse_over_scale, 4),
                    "range": [round(layer.range_min, 4), round(layer.range_max, 4)]}

        widest = _ranked(self.layers, "range")[:count]
        return {"tool": "tf.lite.experimental.QuantizationDebugger", "images": self.images,
                "layers_debugged": len(self.layers), "sort_by": self.sort_by,
                "worst": [brief(layer) for layer in self.worst(count)],
                "widest_range": [brief(layer) for layer in widest]}

    def plot(self, path: str | os.PathLike[str], *, count: int = 5) -> Path:
        """A PNG: rmse/scale and activation range per op in graph order, the ``count`` worst
        (by this report's ranking) in red and named.

        Example::

            report.plot("d0_quantization.png")
        """
        from matplotlib.figure import Figure  # no pyplot: leaves the session's backend alone

        in_order = sorted(self.layers, key=lambda layer: layer.index)
        worst = {layer.tensor for layer in self.worst(count)}
        colors = ["tab:red" if layer.tensor in worst else "tab:blue" for layer in in_order]
        positions = np.arange(len(in_order))
        figure = Figure(figsize=(max(8.0, 0.12 * len(in_order)), 7))
        top, bottom = figure.subplots(2, 1, sharex=True)
        top.bar(positions, [layer.rmse_over_scale for layer in in_order], color=colors)
        top.axhline(ROUNDING_ONLY, color="gray", linestyle="--", linewidth=1)
        top.set_ylabel("rmse / scale (quantization steps)")
        bottom.bar(positions, [layer.range for layer in in_order], color=colors)
        bottom.set_yscale("log")
        bottom.set_ylabel("activation range (255 * scale)")
        bottom.set_xlabel("quantized op, graph order")
        for position, layer in zip(positions, in_order, strict=True):
            if layer.tensor in worst:
                top.annotate(layer.label[:40], (position, layer.rmse_over_scale), fontsize=7,
                             rotation=60, ha="left", va="bottom")
        figure.suptitle(f"{self.model}: int8 error per op ({self.images} images; red: worst "
                        f"{len(worst)} by {self.sort_by})")
        figure.tight_layout()
        target = Path(path)
        with atomic_path(target) as temporary:
            figure.savefig(temporary, dpi=100, format="png")
        return target

    def write(self, folder: str | os.PathLike[str], stem: str = "quantization_debug", *,
              count: int = 5) -> dict[str, Path]:
        """``<stem>.csv`` (every layer), ``<stem>.md`` (the table) and ``<stem>.png`` (the plot)
        in ``folder`` (created if missing), each written atomically.

        Example::

            files = report.write("runs/export/d0-debug")  # {"csv": ..., "md": ..., "png": ...}
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        return {"csv": write_text_atomic(out / f"{stem}.csv", self.csv()),
                "md": write_text_atomic(out / f"{stem}.md", self.markdown()),
                "png": self.plot(out / f"{stem}.png", count=count)}


def debug_quantization(model: Any, representative: Iterable[np.ndarray], *,
                       sort_by: str = "rmse/scale",
                       work_dir: str | os.PathLike[str] | None = None) -> QuantizationReport:
    """Convert ``model`` as the int8 export does and report each quantized op's int8 error on
    the ``representative`` images (``[1, H, W, 3]`` raw pixels in [0, 255]), worst first.

    ``sort_by``: one of :data:`SORT_KEYS`. The error is per op: each op gets the same quantized
    input in both paths, so a row is the error that op adds (see the module docstring). A raw
    detector (``keras_efficient.EfficientDet``) is debugged up to its class and box outputs.

    Example::

        report = debug_quantization(EfficientNetLite0(weights="imagenet"), images)
        print(report.markdown(10))
    """
    if sort_by not in SORT_KEYS:
        raise ValueError(f"sort_by must be one of {SORT_KEYS}; received {sort_by!r}.")
    shape = static_input_shape(model)
    samples = check_images(representative, shape)
    with tempfile.TemporaryDirectory(prefix=".saved_model-", dir=work_dir) as folder:
        write_saved_model(model, folder)
        converter = make_converter(folder, "int8", shape=shape, representative=samples)
        debugger = _debugger(converter, _representative(samples, shape), model.name)
    with _quiet():
        debugger.run()
    layers = _layer_errors(debugger, _keras_layer_names(model) - {model.name},
                           _output_layer(model))
    return QuantizationReport(model=model.name, images=len(samples), sort_by=sort_by,
                              layers=_ranked(layers, sort_by))


def quantize_selectively(converter: Any, dataset: Callable[[], Iterable[list[np.ndarray]]], *,
                         float_layers: Sequence[str] = (), float_worst: int = 0,
                         name: str = "model") -> bytes:
    """An int8 model from ``converter`` (set up by
    :func:`~keras_efficient.export.tflite.make_converter`) with chosen ops left float.

    ``float_layers``: tensor names (from a :class:`QuantizationReport`) or Keras layer names
    (every op whose name carries the layer, e.g. ``block6a_se_reduce`` in
    ``model_1/block6a_se_reduce_1/convolution``); ``float_worst``: also the N worst ops by
    rmse/scale on ``dataset``. They become the debugger's ``denylisted_nodes``; a name that
    matches no quantized op is a ``ValueError`` that lists the names there are.

    Example::

        converter = make_converter("tmp/sm", "int8", shape=(1, 224, 224, 3),
                                   representative=images)
        payload = quantize_selectively(converter, lambda: ([i] for i in images),
                                       float_layers=["head"], float_worst=2)
    """
    debugger = _debugger(converter, dataset, name)
    nodes = _resolve(float_layers, _op_outputs(debugger.calibrated_model))
    if float_worst:
        with _quiet():
            debugger.run()
        worst = _ranked(_layer_errors(debugger, set()), "rmse/scale")[:float_worst]
        nodes += [layer.tensor for layer in worst if layer.tensor not in nodes]
    import tensorflow as tf

    try:
        with _quiet():
            debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=nodes)
            return bytes(debugger.get_nondebug_quantized_model())
    except Exception as error:  # the quantizer raises several unrelated types
        raise ExportError(f"Selective int8 quantization of {name} (float: {nodes}) failed: "
                          f"{error}") from error


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the deprecation warning of the ``tf.lite.Interpreter`` the debugger drives."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        yield


def _debugger(converter: Any, dataset: Callable[[], Iterable[list[np.ndarray]]],
              name: str) -> Any:
    """TensorFlow's debugger on ``converter``: calibrates, then builds the debug model."""
    import tensorflow as tf

    try:
        with _quiet():
            return tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                             debug_dataset=dataset)
    except Exception as error:  # the converter raises several unrelated types
        raise ExportError(f"TFLite conversion (int8, quantization debugger) of {name} failed: "
                          f"{error}") from error


def _layer_errors(debugger: Any, keras_layers: set[str],
                  output_layer: str | None = None) -> list[LayerError]:
    """The debugger's layer statistics, read through its own CSV dump (which names each op and
    its output tensor and adds the output scale and zero point).

    The model's output tensor is named after the SavedModel signature
    (``StatefulPartitionedCall:0``), not its layer: ``output_layer`` names it for a
    single-output model."""
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    buffer.seek(0)
    layers = []
    for row in csv.DictReader(buffer):
        scale = float(row["scale"])
        rmse = math.sqrt(float(row["mean_squared_error"]))
        names = _layers_in(row["tensor_name"], keras_layers)
        if not names and output_layer and _SIGNATURE_OUTPUT.fullmatch(row["tensor_name"]):
            names = (output_layer,)
        layers.append(LayerError(
            tensor=row["tensor_name"], op=row["op_name"], layers=names,
            index=int(row["tensor_idx"]),
            rmse=rmse, rmse_over_scale=rmse / scale if scale > 0 else math.inf,
            max_abs_error=float(row["max_abs_error"]), mean_error=float(row["mean_error"]),
            stddev=float(row["stddev"]), num_elements=int(float(row["num_elements"])),
            scale=scale, zero_point=int(row["zero_point"])))
    return layers


def _ranked(layers: Iterable[LayerError], sort_by: str) -> tuple[LayerError, ...]:
    # NaN (an op the images never reached) ranks last.
    return tuple(sorted(layers, key=lambda layer: (math.isnan(layer.key(sort_by)),
                                                   -np.nan_to_num(layer.key(sort_by)))))


def _output_layer(model: Any) -> str | None:
    """The layer that computes a single-output model's output."""
    outputs = getattr(model, "outputs", None) or []
    history = getattr(outputs[0], "_keras_history", None) if len(outputs) == 1 else None
    return str(history[0].name) if history else None


def _keras_layer_names(model: Any) -> set[str]:
    names = set()
    pending = [model]
    while pending:
        layer = pending.pop()
        names.add(layer.name)
        pending.extend(getattr(layer, "layers", []))
    return names


def _scopes(tensor: str) -> Iterator[str]:
    """The name scopes of a (possibly fused, ``;``-joined) TFLite tensor name."""
    for part in tensor.split(";"):
        yield from part.split("/")


def _layers_in(tensor: str, keras_layers: set[str]) -> tuple[str, ...]:
    """The Keras layers named in ``tensor``: Keras 3 scopes ops as ``<layer>_<n>``."""
    found: list[str] = []
    for scope in _scopes(tensor):
        for candidate in (scope, re.sub(r"_\d+$", "", scope)):
            if candidate in keras_layers and candidate not in found:
                found.append(candidate)
                break
    return tuple(found)


def _op_outputs(calibrated_model: bytes) -> list[str]:
    """Output tensor names of the ops of the calibrated model: the names the quantizer's
    ``denylisted_nodes`` are matched against."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=calibrated_model)
    names = {detail["index"]: detail["name"] for detail in interpreter.get_tensor_details()}
    return [names[index] for op in interpreter._get_ops_details() for index in op["outputs"]
            if index in names]


def _resolve(float_layers: Sequence[str], nodes: list[str]) -> list[str]:
    """The op outputs that ``float_layers`` (tensor or Keras layer names) name."""
    chosen: list[str] = []
    for wanted in float_layers:
        scope = re.compile(rf"{re.escape(wanted)}(_\d+)?")
        matches = [node for node in nodes if node == wanted
                   or any(scope.fullmatch(part) for part in _scopes(node))]
        if not matches:
            # Scopes between the model's and the op's: the layers that have ops.
            layers = sorted({re.sub(r"_\d+$", "", scope) for node in nodes
                             for part in node.split(";") for scope in part.split("/")[1:-1]})
            raise ValueError(
                f"float_layers: {wanted!r} names no quantized op of the model (a layer folded "
                f"into its neighbour, such as a batch normalization, has no op of its own: name "
                f"that op's layer). Layers with ops: {', '.join(layers[:60])}"
                f"{' ...' if len(layers) > 60 else ''}; or pass tensor names from "
                "debug_quantization(...).float_layers(n) (the output op is named after the "
                "signature, e.g. StatefulPartitionedCall:0).")
        chosen += [node for node in matches if node not in chosen]
    return chosen
