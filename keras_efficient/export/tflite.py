"""Keras model -> TFLite flatbuffer: float32, float16, dynamic-range, full-integer int8, int16x8.

Conversion goes through a SavedModel written by ``keras.export.ExportArchive`` with a static batch
of 1 and the model's static
input size (no dynamic-shape ops such as SHAPE/PACK/STRIDED_SLICE; REFERENCE §1.4). Only
TFLite builtin ops are allowed: a graph that would need TF Select (Flex) ops fails with the
converter's message instead of silently growing a Flex dependency. The temporary SavedModel goes
into ``work_dir`` (the export's staging folder) rather than the system temp folder, so that a
killed run leaves nothing there.

``int16x8`` (16-bit activations, 8-bit weights) is for CPU targets: the EdgeTPU and the GPU
delegate run no int16 kernels. The converter accepts float input and output for it (as for int8,
a QUANTIZE after the input and a DEQUANTIZE before the output), so it keeps float I/O. Selective
int8 (``float_layers``/``float_worst``: named layers stay float) goes through TensorFlow's
``QuantizationDebugger`` (:mod:`keras_efficient.export.quant_debug`) and is refused for the
EdgeTPU, which needs every op integer.

An int8 model's uint8 input takes the bytes as Android consumers (Task Library, MediaPipe) feed
them (byte q is pixel q; int8: q + 128), whatever the representative images hold
(:func:`pin_pixel_ranges`); the export fails with :class:`ExportError` if the converter
quantizes the input any other way
(:func:`check_pixel_input`). A per-tensor scaling right after the input is folded into the
input quantization where that is exact (:func:`fold_pixel_scaling`): Lite's (x − 127)/128 makes
the uint8 input scale 1/128 / zero point 127 (int8: −1) with no MUL or ADD left, as automl's
exports have it; the B family's x/255 makes it scale 1/255 / zero point 0 before the per-channel
mean/std, which stays in the graph (one scalar per tensor is all an input quantization holds).
Byte q still means pixel q either way.

Representative images must follow the models' input contract: float RGB pixels in [0, 255],
NHWC ``[1, H, W, 3]`` at the model's size. Channels-first images, images scaled to [0, 1] and
other ranges are refused (:func:`check_images`): calibrating on them quantizes silently wrong.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from keras_efficient.export.shared_bias import unshare_biases
from keras_efficient.files import check_output_parent, staging_folder, write_bytes_atomic

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8", "int16x8")
CALIBRATED = ("int8", "int16x8")
"""The quantizations calibrated on representative images."""
INPUT_TYPES = ("float32", "uint8", "int8")
# Pixels may overshoot [0, 255] this much (bicubic resampling); more means another convention.
PIXEL_SLACK = 16.0


class ExportError(RuntimeError):
    """An export step failed; the message names the step and the reason.

    Example::

        try:
            export_tflite(model, "model.tflite", "int8", representative=images)
        except ExportError as error:
            print(error)  # "TFLite conversion (int8) of ... failed: ..."
    """


def static_input_shape(model: Any) -> tuple[int, ...]:
    """``(1, H, W, C)``: batch 1 and the model's static size, or a clear error.

    Example::

        static_input_shape(EfficientNetB0(weights=None))  # (1, 224, 224, 3)
    """
    shape = model.input_shape
    if isinstance(shape, list | dict) or len(shape) != 4:
        raise ValueError(f"Export needs a model with one image input [B, H, W, C]; "
                         f"{model.name} has input shape {shape}.")
    dims = tuple(shape[1:])
    if any(d is None for d in dims):
        raise ValueError(
            f"Export needs a static input size; {model.name} has input shape "
            f"{shape}. Build the model with a fixed input_shape.")
    return (1, *(int(d) for d in dims))


def static_image_size(model: Any) -> tuple[int, int]:
    """``(height, width)`` of the model's static input (see :func:`static_input_shape`).

    Example::

        static_image_size(EfficientNetB0(weights=None))  # (224, 224)
    """
    _, height, width, _ = static_input_shape(model)
    return height, width


def write_saved_model(model: Any, directory: str | os.PathLike[str], *,
                      edgetpu: bool = False) -> None:
    """A SavedModel with one ``serve`` endpoint taking a batch-1 float image.

    Nearest upsampling is traced as XNNPACK-friendly repeats for CPU targets and as
    ``RESIZE_NEAREST_NEIGHBOR`` (which the EdgeTPU maps) for ``edgetpu``
    (:func:`keras_efficient.layers.resample.upsample_lowering`).

    Example::

        write_saved_model(model, "tmp/saved_model")  # then convert_saved_model(...)
    """
    import keras

    from keras_efficient.layers.resample import upsample_lowering

    spec = tf.TensorSpec(static_input_shape(model), tf.float32, name="image")
    archive = keras.export.ExportArchive()
    archive.track(model)
    with upsample_lowering(lowering_for(edgetpu)):
        archive.add_endpoint("serve", lambda image: model(image, training=False),
                             input_signature=[spec])
        archive.write_out(os.fspath(directory), verbose=False)


def lowering_for(edgetpu: bool) -> str:
    """The nearest-upsampling lowering of an export: ``resize`` for the EdgeTPU (it maps
    ``RESIZE_NEAREST_NEIGHBOR``), ``repeat`` for CPU targets (XNNPACK delegates it).

    Example::

        lowering_for(edgetpu=False)  # "repeat"
    """
    return "resize" if edgetpu else "repeat"


def _layout_problem(index: int, shape: tuple[int, ...], want: tuple[int, ...]) -> str:
    height, width, channels = want[1:]
    if len(shape) in (3, 4) and shape[-3:] == (channels, height, width):
        axes = "(0, 2, 3, 1)" if len(shape) == 4 else "(1, 2, 0)"
        return (f"Representative image {index} has shape {shape}: channels first; pass "
                f"[1, H, W, {channels}] = {list(want)} (channels last), e.g. "
                f"np.transpose(image, {axes}).")
    return (f"Representative image {index} has shape {shape}; the model takes {want}. Resize "
            "the images to the model's input size (keras_efficient.data.representative_images "
            "does).")


def check_images(images: Iterable[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray]:
    """The images as float32 arrays of ``shape`` (``[1, H, W, C]``), or a ``ValueError`` that
    names the problem and the fix.

    Each image must be ``[1, H, W, C]`` (or ``[H, W, C]``) at the model's size, channels last,
    finite, with raw pixels in [0, 255]: the models normalise in-graph. A set whose largest
    pixel is at most 1.0 is refused as scaled to [0, 1] (a real photo set never is).

    Example::

        check_images([np.zeros((1, 3, 224, 224))], (1, 224, 224, 3))  # ValueError: channels first
    """
    samples = []
    for index, image in enumerate(images):
        array = np.asarray(image, dtype="float32")
        if array.shape not in (shape, shape[1:]):
            raise ValueError(_layout_problem(index, array.shape, shape))
        if not np.isfinite(array).all():
            raise ValueError(f"Representative image {index} holds NaN or infinite values; pass "
                             "raw pixels in [0, 255].")
        samples.append(array.reshape(shape))
    if not samples:
        raise ValueError("The representative dataset is empty: full-integer quantization needs "
                         "sample images (e.g. keras_efficient.data.representative_images).")
    low = min(float(sample.min()) for sample in samples)
    high = max(float(sample.max()) for sample in samples)
    fix = "pass raw [0, 255] pixels (the model normalises in-graph)"
    if high <= 1.0:
        raise ValueError(f"Representative images: max pixel {high:g} over all {len(samples)} "
                         f"images: images look scaled to [0, 1] (or [-1, 1]); {fix}.")
    if low < -PIXEL_SLACK:
        raise ValueError(f"Representative images: min pixel {low:g}: images look "
                         f"mean-subtracted or normalised; {fix}.")
    if high > 255.0 + PIXEL_SLACK:
        raise ValueError(f"Representative images: max pixel {high:g}: more than 8 bits per "
                         f"channel; {fix}.")
    return samples


def _representative(images: Iterable[np.ndarray], shape: tuple[int, ...]
                    ) -> Callable[[], Iterable[list[np.ndarray]]]:
    samples = check_images(images, shape)

    def generator() -> Iterable[list[np.ndarray]]:
        for sample in samples:
            yield [sample]

    return generator


def convert(model: Any, quantization: str = "float32", *,
            representative: Iterable[np.ndarray] | None = None,
            input_type: str = "float32",
            work_dir: str | os.PathLike[str] | None = None,
            float_layers: Sequence[str] = (), float_worst: int = 0,
            edgetpu: bool = False) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer and return its bytes.

    ``quantization``: ``float32``; ``float16`` (weights in fp16); ``dynamic`` (int8 weights,
    float activations); ``int8`` (full integer, calibrated on ``representative`` images; inputs
    of ``input_type`` uint8/int8/float32, outputs float so that consumers need no scales; an
    integer input takes the bytes as they are, see :func:`pin_pixel_ranges`);
    ``int16x8`` (int16 activations, int8 weights, calibrated; float input and output; CPU only).
    ``float_layers`` (Keras layer names or tensor names from a
    :class:`~keras_efficient.export.quant_debug.QuantizationReport`) and ``float_worst`` (the N
    worst layers of that report) stay float in an ``int8`` model with float input (selective
    quantization, for CPU/GPU); ``edgetpu=True`` says the model is for the EdgeTPU, which refuses
    both float layers and int16x8. ``work_dir``: where the temporary SavedModel goes (default:
    the system temp folder).

    Example::

        payload = convert(model, "float16")
        payload = convert(model, "int8", representative=images, input_type="uint8")
        payload = convert(model, "int8", representative=images, float_layers=["block6a_se"])
    """
    check_options(quantization, input_type, float_layers=float_layers,
                  float_worst=float_worst, edgetpu=edgetpu)
    shape = static_input_shape(model)
    representative = check_representative(representative, quantization, shape)
    with tempfile.TemporaryDirectory(prefix=".saved_model-", dir=work_dir) as folder:
        write_saved_model(model, folder, edgetpu=edgetpu)
        return convert_saved_model(folder, quantization, shape=shape, name=model.name,
                                   representative=representative, input_type=input_type,
                                   float_layers=float_layers, float_worst=float_worst,
                                   edgetpu=edgetpu)


def check_representative(images: Iterable[np.ndarray] | None, quantization: str,
                         shape: tuple[int, ...]) -> list[np.ndarray] | None:
    """The representative images as a list, checked before any conversion work starts."""
    if quantization not in CALIBRATED:
        return None if images is None else list(images)
    if images is None:
        raise ValueError(f"quantization={quantization!r} needs a representative dataset of "
                         "images.")
    return check_images(images, shape)


def check_options(quantization: str, input_type: str, *, float_layers: Sequence[str] = (),
                  float_worst: int = 0, edgetpu: bool = False) -> None:
    """Reject unknown quantization / input type / target combinations with a clear message.

    ``edgetpu``: the artifact is for the EdgeTPU (a recipe's ``edgetpu``), where every op must
    be int8: float layers and int16 activations are refused.

    Example::

        check_options("float16", "uint8")  # ValueError: uint8 input needs int8
        check_options("int8", "uint8", float_layers=["head"], edgetpu=True)  # ValueError
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}; received "
                         f"{quantization!r}.")
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input_type must be one of {INPUT_TYPES}; received {input_type!r}.")
    if input_type != "float32" and quantization != "int8":
        raise ValueError(f"input_type={input_type!r} needs quantization='int8'.")
    if quantization == "int16x8" and edgetpu:
        raise ValueError("quantization='int16x8' is for CPU targets: the EdgeTPU runs only int8 "
                         "ops (use int8 for the edgetpu target).")
    if isinstance(float_layers, str):
        raise ValueError(f"float_layers must be a list of names; received the string "
                         f"{float_layers!r}.")
    if float_worst < 0:
        raise ValueError(f"float_worst must be >= 0; received {float_worst}.")
    if not (float_layers or float_worst):
        return
    if edgetpu:
        raise ValueError("Selective quantization (float_layers/float_worst) keeps layers in "
                         "float, but the EdgeTPU runs only integer ops: every op from the first "
                         "float layer on would fall back to the CPU. Export the edgetpu target "
                         "fully int8 (no float_layers/float_worst); keep layers float only for "
                         "CPU/GPU targets.")
    if quantization != "int8":
        raise ValueError(f"float_layers/float_worst select layers to keep float in an int8 "
                         f"model; quantization={quantization!r} has none to select.")
    if input_type != "float32":
        raise ValueError(f"float_layers/float_worst keep float input and output (TensorFlow's "
                         f"selective quantizer does not quantize them); input_type="
                         f"{input_type!r} is not available with them: pass input_type="
                         "'float32'.")


def convert_saved_model(folder: str | os.PathLike[str], quantization: str, *,
                        shape: tuple[int, ...], name: str,
                        representative: Iterable[np.ndarray] | None = None,
                        input_type: str = "float32", custom_ops: bool = False,
                        float_layers: Sequence[str] = (), float_worst: int = 0,
                        edgetpu: bool = False) -> bytes:
    """Convert the ``serve`` signature of a SavedModel written by this package.

    ``custom_ops`` allows exactly the custom ops the graph declares (the detection
    post-process op); TF Select (Flex) ops are never enabled. ``float_layers``,
    ``float_worst``, ``edgetpu``: as in :func:`convert`.

    Example::

        write_saved_model(model, "tmp/sm")
        payload = convert_saved_model("tmp/sm", "dynamic", shape=(1, 224, 224, 3), name=model.name)
    """
    check_options(quantization, input_type, float_layers=float_layers,
                  float_worst=float_worst, edgetpu=edgetpu)
    converter = make_converter(folder, quantization, shape=shape, representative=representative,
                               input_type=input_type, custom_ops=custom_ops)
    if float_layers or float_worst:
        from keras_efficient.export.quant_debug import quantize_selectively

        return quantize_selectively(converter, _representative(representative or (), shape),
                                    float_layers=float_layers, float_worst=float_worst,
                                    name=name)
    try:
        if quantization == "int16x8":
            return unshare_biases(bytes(converter.convert()))[0]
        if quantization != "int8":
            return bytes(converter.convert())
        payload, scaling = _convert_int8(converter, input_type)
    except Exception as error:  # the converter raises several unrelated types
        raise ExportError(f"TFLite conversion ({quantization}) of {name} failed: "
                          f"{error}") from error
    if input_type != "float32":
        check_pixel_input(payload, input_type, name=name, scaling=scaling)
    return payload


PIXEL_QUANTIZATION = {"uint8": (1.0, 0), "int8": (1.0, -128)}
"""(scale, zero point) of an integer input with nothing folded into it: byte ``q`` is pixel
``q`` (``q + 128`` for int8). :func:`fold_pixel_scaling` gives others that keep this meaning."""
# Elementwise ops with a constant operand that the in-graph normalization converts to.
_NORMALIZATION_OPS = {"MUL": np.multiply, "ADD": np.add, "SUB": np.subtract, "DIV": np.divide}


def _convert_int8(converter: Any, input_type: str) -> tuple[bytes, tuple[float, int]]:
    """Calibrate; for an integer input fold the exact per-tensor scaling into the input
    (:func:`fold_pixel_scaling`) and pin the input and the normalization after it to what bytes
    0..255 give (:func:`pin_pixel_ranges`); keep what follows a custom op float
    (:func:`float_after_custom_ops`); then quantize as the converter would have. Returns the
    flatbuffer and the uint8 (scale, zero point) its input must have."""
    from tensorflow.lite.python.convert import mlir_quantize

    converter._experimental_calibrate_only = True
    calibrated = bytes(converter.convert())
    scaling = PIXEL_QUANTIZATION["uint8"]
    if input_type != "float32":
        calibrated, scaling = fold_pixel_scaling(calibrated)
        calibrated = pin_pixel_ranges(calibrated, scaling)
    calibrated = float_after_custom_ops(calibrated)
    dtype = {"float32": tf.float32, "uint8": tf.uint8, "int8": tf.int8}[input_type]
    return bytes(mlir_quantize(
        calibrated, converter._experimental_disable_per_channel, input_data_type=dtype,
        output_data_type=tf.float32,
        disable_per_channel_for_dense_layers=(
            converter._experimental_disable_per_channel_quantization_for_dense_layers))), scaling


def fold_pixel_scaling(calibrated: bytes) -> tuple[bytes, tuple[float, int]]:
    """Fold the longest run of scalar MUL/ADD/SUB/DIV after the input that is exactly
    ``(pixel − zero point) × scale`` for an integer zero point in [0, 255] into the input
    quantization: those ops leave the calibrated flatbuffer, and the uint8 input's
    (scale, zero point) becomes theirs, so byte q still means pixel q (to float32 rounding; Lite's
    (x − 127)/128 is exact). Returns the flatbuffer and that (scale, zero point);
    :data:`PIXEL_QUANTIZATION` ``["uint8"]`` and the flatbuffer unchanged when nothing folds.

    Example::

        calibrated, scaling = fold_pixel_scaling(calibrated)  # Lite: (0.0078125, 127)
        calibrated = pin_pixel_ranges(calibrated, scaling)
    """
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = tree.subgraphs[0]
    index = int(graph.inputs[0])
    values = np.arange(256, dtype="float32")
    chain: list[Any] = []
    folded: tuple[int, int, tuple[float, int]] | None = None  # ops, output tensor, scaling
    while (step := _normalization_step(tree, graph, index)) is not None:
        index, function, constant = step
        if constant.size != 1:
            break
        chain.append(next(op for op in graph.operators if index in list(op.outputs)))
        values = function(values, constant.astype("float32").reshape(())).astype("float32")
        scaling = _exact_scaling(values)
        if scaling is not None:
            folded = (len(chain), index, scaling)
    if folded is None:
        return calibrated, PIXEL_QUANTIZATION["uint8"]
    count, output, scaling = folded
    source = int(graph.inputs[0])
    for op in chain[:count]:
        graph.operators.remove(op)
    for op in graph.operators:
        op.inputs = np.asarray([source if int(i) == output else int(i) for i in op.inputs],
                               dtype=np.int32)
    graph.outputs = np.asarray([source if int(i) == output else int(i) for i in graph.outputs],
                               dtype=np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree)), scaling


def _exact_scaling(values: np.ndarray) -> tuple[float, int] | None:
    """(scale, zero point) with ``values[q] == (q − zero point) × scale`` for q in 0..255 (to
    one float32 ulp), the zero point an integer in [0, 255] and the scale positive; else None."""
    scale = (float(values[255]) - float(values[0])) / 255.0
    if not scale > 0:
        return None
    zero_point = round(-float(values[0]) / scale)
    want = ((np.arange(256) - zero_point) * scale).astype("float32")
    if not 0 <= zero_point <= 255 or np.any(np.abs(values - want) > np.abs(np.spacing(want))):
        return None
    return float(np.float32(scale)), int(zero_point)


def pin_pixel_ranges(calibrated: bytes,
                     scaling: tuple[float, int] = PIXEL_QUANTIZATION["uint8"]) -> bytes:
    """A calibrated (not yet quantized) flatbuffer whose input range is what bytes 0..255 mean
    under the uint8 ``scaling`` (scale, zero point) — [0, 255] with nothing folded — and whose
    in-graph normalization (the chain of MUL/ADD/SUB/DIV by constants after the input) has the
    range those 256 values give, whatever the representative images held.

    Calibration records the images' own range (240/255 on the synthetic set), so the quantized
    input would otherwise not take the bytes as they are.

    Example::

        converter._experimental_calibrate_only = True
        calibrated = pin_pixel_ranges(converter.convert())
    """
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = tree.subgraphs[0]
    index = int(graph.inputs[0])
    scale, zero_point = scaling
    low, high = np.full(1, -zero_point * scale), np.full(1, (255 - zero_point) * scale)
    while True:
        stats = graph.tensors[index].quantization
        if stats is None or stats.min is None:
            raise ExportError("Pinning the pixel range: tensor "
                              f"{graph.tensors[index].name!r} carries no calibration range.")
        stats.min, stats.max = [float(low.min())], [float(high.max())]
        step = _normalization_step(tree, graph, index)
        if step is None:
            return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))
        index, function, constant = step
        ends = (function(low, constant), function(high, constant))
        low, high = np.minimum(*ends).ravel(), np.maximum(*ends).ravel()


def _normalization_step(tree: Any, graph: Any, index: int) -> tuple[int, Any, np.ndarray] | None:
    """The op after tensor ``index`` if it is its only consumer and an elementwise op with a
    constant operand and no fused activation: (its output, the numpy function, the constant)."""
    from ai_edge_litert.tools import flatbuffer_utils

    consumers = [op for op in graph.operators if index in list(op.inputs)]
    if len(consumers) != 1 or len(consumers[0].inputs) != 2:
        return None
    op = consumers[0]
    name = flatbuffer_utils.opcode_to_name(tree, op.opcodeIndex)
    activation = getattr(op.builtinOptions, "fusedActivationFunction", None)
    if name not in _NORMALIZATION_OPS or activation:
        return None
    first, second = (int(i) for i in op.inputs)
    other = graph.tensors[second if first == index else first]
    data = tree.buffers[other.buffer].data if other.buffer else None
    if data is None or not len(data):
        return None
    constant = np.frombuffer(bytes(data), dtype="float32").reshape(other.shape)
    if first != index and name in ("SUB", "DIV"):  # c - x, c / x
        return None
    return int(op.outputs[0]), _NORMALIZATION_OPS[name], constant


def float_after_custom_ops(calibrated: bytes) -> bytes:
    """A calibrated flatbuffer whose tensors computed from a custom op's outputs carry no
    calibration range, so that the quantizer leaves them float (e.g. the clip of the
    ``TFLite_Detection_PostProcess`` boxes to [0, 1], which would otherwise be quantized to
    steps of 1/255).

    Example::

        calibrated = float_after_custom_ops(pin_pixel_ranges(converter.convert()))
    """
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = tree.subgraphs[0]
    floating = {int(i) for op in graph.operators if tree.operatorCodes[op.opcodeIndex].customCode
                for i in op.outputs}
    if not floating:
        return calibrated
    for op in graph.operators:  # operators are stored in execution order
        if floating.intersection(int(i) for i in op.inputs):
            floating.update(int(i) for i in op.outputs)
    for index in floating:
        graph.tensors[index].quantization = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def check_pixel_input(payload: bytes, input_type: str, *, name: str = "model",
                      scaling: tuple[float, int] = PIXEL_QUANTIZATION["uint8"]) -> None:
    """Raise :class:`ExportError` unless the integer input of ``payload`` takes the bytes as
    they are: (scale, zero point) = the uint8 ``scaling`` the export folded in
    (:func:`fold_pixel_scaling`; default :data:`PIXEL_QUANTIZATION`), the zero point less 128
    for an int8 input.

    Example::

        check_pixel_input(payload, "uint8")  # ExportError if the input is not scale 1 / zp 0
    """
    from ai_edge_litert.tools import flatbuffer_utils

    want = (scaling[0], scaling[1] - (128 if input_type == "int8" else 0))
    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(payload))
    tensor = tree.subgraphs[0].tensors[int(tree.subgraphs[0].inputs[0])]
    stats = tensor.quantization
    scale = list(stats.scale) if stats is not None and stats.scale is not None else []
    zero = list(stats.zeroPoint) if stats is not None and stats.zeroPoint is not None else []
    got = (float(scale[0]), int(zero[0])) if len(scale) == 1 and len(zero) == 1 else None
    if got is None or got[1] != want[1] or not np.isclose(got[0], want[0], rtol=1e-6, atol=0):
        raise ExportError(
            f"TFLite conversion (int8, {input_type} input) of {name}: the converter quantized "
            f"the input as (scale, zero point) = {got}, not {want}, so byte q would not mean "
            "pixel q as Android consumers (Task Library, MediaPipe) feed it; the in-graph "
            "normalization must follow the input directly.")


def make_converter(folder: str | os.PathLike[str], quantization: str, *,
                   shape: tuple[int, ...], representative: Iterable[np.ndarray] | None = None,
                   input_type: str = "float32", custom_ops: bool = False) -> Any:
    """The ``tf.lite.TFLiteConverter`` for the ``serve`` signature of a SavedModel written by
    this package, set up for ``quantization`` exactly as the export converts it.

    Shared by :func:`convert_saved_model` and the quantization debugger
    (:func:`keras_efficient.export.quant_debug.debug_quantization`), so that the debugged model
    is the exported one.

    Example::

        converter = make_converter("tmp/sm", "int8", shape=(1, 224, 224, 3),
                                   representative=images)
        payload = converter.convert()
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(folder),
                                                         signature_keys=["serve"])
    _configure(converter, quantization, representative, input_type, shape)
    if custom_ops:
        converter.allow_custom_ops = True
        if quantization in CALIBRATED:
            # The post-process tail stays float: integer where an integer kernel exists,
            # float after.
            converter.target_spec.supported_ops = [*converter.target_spec.supported_ops,
                                                   tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _configure(converter: Any, quantization: str, representative: Any, input_type: str,
               shape: tuple[int, ...]) -> None:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization in CALIBRATED:
        if representative is None:
            raise ValueError(f"quantization={quantization!r} needs a representative dataset of "
                             "images.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(representative, shape)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantization == "int8" else
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = {"float32": tf.float32, "uint8": tf.uint8,
                                          "int8": tf.int8}[input_type]
        converter.inference_output_type = tf.float32


def export_tflite(model: Any, path: str | os.PathLike[str], quantization: str = "float32",
                  **kwargs: Any) -> Path:
    """Convert and write atomically to ``path`` (nothing is written if conversion fails).

    The temporary SavedModel lives in a staging folder beside ``path``, removed afterwards.

    Example::

        export_tflite(EfficientNetLite0(weights="imagenet"), "lite0_int8.tflite", "int8",
                      representative=images, input_type="uint8")
    """
    target = check_output_parent(path)
    with staging_folder(target) as work:
        payload = convert(model, quantization, work_dir=work, **kwargs)
    return write_bytes_atomic(target, payload)
