"""Keras model -> TFLite flatbuffer: float32, float16, dynamic-range or full-integer int8.

Conversion goes through a SavedModel written by ``keras.export.ExportArchive`` with a static batch
of 1 and the model's static
input size (no dynamic-shape ops such as SHAPE/PACK/STRIDED_SLICE; REFERENCE §1.4). Only
TFLite builtin ops are allowed: a graph that would need TF Select (Flex) ops fails with the
converter's message instead of silently growing a Flex dependency.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from keras_efficient.files import write_bytes_atomic

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
INPUT_TYPES = ("float32", "uint8", "int8")


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
    dims = tuple(model.input_shape[1:])
    if any(d is None for d in dims):
        raise ValueError(
            f"TFLite export needs a static input size; {model.name} has input shape "
            f"{model.input_shape}. Build the model with a fixed input_shape.")
    return (1, *(int(d) for d in dims))


def write_saved_model(model: Any, directory: str | os.PathLike[str]) -> None:
    """A SavedModel with one ``serve`` endpoint taking a batch-1 float image.

    Example::

        write_saved_model(model, "tmp/saved_model")  # then convert_saved_model(...)
    """
    import keras

    spec = tf.TensorSpec(static_input_shape(model), tf.float32, name="image")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda image: model(image, training=False),
                         input_signature=[spec])
    archive.write_out(os.fspath(directory), verbose=False)


def _representative(images: Iterable[np.ndarray], shape: tuple[int, ...]
                    ) -> Callable[[], Iterable[list[np.ndarray]]]:
    samples = []
    for index, image in enumerate(images):
        array = np.asarray(image, dtype="float32")
        if array.size != int(np.prod(shape)):
            raise ValueError(f"Representative image {index} has shape {array.shape}; the model "
                             f"takes {shape}. Resize the images to the model's input size "
                             "(keras_efficient.data.representative_images does).")
        samples.append(array.reshape(shape))
    if not samples:
        raise ValueError("The representative dataset is empty: full-integer quantization needs "
                         "sample images (e.g. keras_efficient.data.representative_images).")

    def generator() -> Iterable[list[np.ndarray]]:
        for sample in samples:
            yield [sample]

    return generator


def convert(model: Any, quantization: str = "float32", *,
            representative: Iterable[np.ndarray] | None = None,
            input_type: str = "float32") -> bytes:
    """Convert ``model`` to a TFLite flatbuffer and return its bytes.

    ``quantization``: ``float32``; ``float16`` (weights in fp16); ``dynamic`` (int8 weights,
    float activations); ``int8`` (full integer, calibrated on ``representative`` images; inputs
    of ``input_type`` uint8/int8/float32, outputs float so that consumers need no scales).

    Example::

        payload = convert(model, "float16")
        payload = convert(model, "int8", representative=images, input_type="uint8")
    """
    check_options(quantization, input_type)
    shape = static_input_shape(model)
    representative = check_representative(representative, quantization, shape)
    with tempfile.TemporaryDirectory() as folder:
        write_saved_model(model, folder)
        return convert_saved_model(folder, quantization, shape=shape, name=model.name,
                                   representative=representative, input_type=input_type)


def check_representative(images: Iterable[np.ndarray] | None, quantization: str,
                         shape: tuple[int, ...]) -> list[np.ndarray] | None:
    """The representative images as a list, checked before any conversion work starts."""
    if quantization != "int8":
        return None if images is None else list(images)
    if images is None:
        raise ValueError("quantization='int8' needs a representative dataset of images.")
    samples = list(images)
    _representative(samples, shape)  # raises on an empty set or a wrong image size
    return samples


def check_options(quantization: str, input_type: str) -> None:
    """Reject unknown quantization / input type combinations with a clear message.

    Example::

        check_options("float16", "uint8")  # ValueError: uint8 input needs int8
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}; received "
                         f"{quantization!r}.")
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input_type must be one of {INPUT_TYPES}; received {input_type!r}.")
    if input_type != "float32" and quantization != "int8":
        raise ValueError(f"input_type={input_type!r} needs quantization='int8'.")


def convert_saved_model(folder: str | os.PathLike[str], quantization: str, *,
                        shape: tuple[int, ...], name: str,
                        representative: Iterable[np.ndarray] | None = None,
                        input_type: str = "float32", custom_ops: bool = False) -> bytes:
    """Convert the ``serve`` signature of a SavedModel written by this package.

    ``custom_ops`` allows exactly the custom ops the graph declares (the detection
    post-process op); TF Select (Flex) ops are never enabled.

    Example::

        write_saved_model(model, "tmp/sm")
        payload = convert_saved_model("tmp/sm", "dynamic", shape=(1, 224, 224, 3), name=model.name)
    """
    check_options(quantization, input_type)
    converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(folder),
                                                         signature_keys=["serve"])
    _configure(converter, quantization, representative, input_type, shape)
    if custom_ops:
        converter.allow_custom_ops = True
        if quantization == "int8":
            # The post-process tail stays float: int8 where an int8 kernel exists, float after.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                   tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return bytes(converter.convert())
    except Exception as error:  # the converter raises several unrelated types
        raise ExportError(f"TFLite conversion ({quantization}) of {name} failed: "
                          f"{error}") from error


def _configure(converter: Any, quantization: str, representative: Any, input_type: str,
               shape: tuple[int, ...]) -> None:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        if representative is None:
            raise ValueError("quantization='int8' needs a representative dataset of images.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(representative, shape)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = {"float32": tf.float32, "uint8": tf.uint8,
                                          "int8": tf.int8}[input_type]
        converter.inference_output_type = tf.float32


def export_tflite(model: Any, path: str | os.PathLike[str], quantization: str = "float32",
                  **kwargs: Any) -> Path:
    """Convert and write atomically to ``path`` (nothing is written if conversion fails).

    Example::

        export_tflite(EfficientNetLite0(weights="imagenet"), "lite0_int8.tflite", "int8",
                      representative=images, input_type="uint8")
    """
    return write_bytes_atomic(path, convert(model, quantization, **kwargs))
