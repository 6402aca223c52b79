"""Full-integer TFLite from a quantization-aware (QAT) model: no representative dataset.

The fake-quant ops of a QAT model (:mod:`keras_efficient.layers.fake_quant`) carry every
range, so the converter quantizes from them: ``optimizations=[DEFAULT]`` and no representative
dataset. The op set stays ``TFLITE_BUILTINS`` (``TFLITE_BUILTINS_INT8`` makes TF 2.21's converter
demand a representative dataset before it looks at the graph); instead the result is checked to
be integer everywhere but the input QUANTIZE, the DEQUANTIZE before the outputs or a custom op,
and the custom op's float tail (:func:`float_ops`): a tensor that lost its range would leave its
op float, and that is an :class:`~keras_efficient.export.tflite.ExportError`, not a silent CPU op.
"""

from __future__ import annotations

import os
from typing import Any

from keras_efficient.export.tflite import ExportError, check_pixel_input

_BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")


def float_ops(payload: bytes) -> list[str]:
    """``"OP (tensor)"`` for each op of ``payload`` that computes in float, other than the
    QUANTIZE/DEQUANTIZE at the integer graph's edges, custom ops and what follows them.

    Example::

        float_ops(convert_quantization_aware("tmp/sm", name="d0"))  # [] when fully integer
    """
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(payload))
    graph = tree.subgraphs[0]
    after_custom: set[int] = set()
    found = []
    for op in graph.operators:  # stored in execution order
        code = tree.operatorCodes[op.opcodeIndex]
        inputs = [int(i) for i in op.inputs if i >= 0]
        outputs = [int(i) for i in op.outputs]
        if code.customCode or after_custom.intersection(inputs):
            after_custom.update(outputs)
            continue
        name = flatbuffer_utils.opcode_to_name(tree, op.opcodeIndex)
        if name in _BOUNDARY_OPS:
            continue
        floating = [i for i in inputs + outputs if graph.tensors[i].type == 0]  # FLOAT32
        if floating:
            found.append(f"{name} ({_text(graph.tensors[floating[0]].name)})")
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def convert_quantization_aware(folder: str | os.PathLike[str], *, name: str,
                               input_type: str = "float32",
                               custom_ops: bool = False) -> bytes:
    """Convert the ``serve`` signature of a QAT model's SavedModel to full-integer TFLite.

    ``input_type``: ``float32``, ``uint8`` (bytes are pixels: scale 1, zero point 0) or
    ``int8``; outputs stay float. ``custom_ops`` allows the detection post-process op.

    Example::

        payload = convert_quantization_aware("tmp/sm", name="d0", input_type="uint8")
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(folder),
                                                         signature_keys=["serve"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = custom_ops
    converter.inference_input_type = {"float32": tf.float32, "uint8": tf.uint8,
                                      "int8": tf.int8}[input_type]
    converter.inference_output_type = tf.float32
    try:
        payload = bytes(converter.convert())
    except Exception as error:  # the converter raises several unrelated types
        raise ExportError(f"TFLite conversion (int8, quantization-aware) of {name} failed: "
                          f"{error}") from error
    if input_type != "float32":
        check_pixel_input(payload, input_type, name=name)
    left = float_ops(payload)
    if left:
        raise ExportError(f"TFLite conversion (int8, quantization-aware) of {name} left "
                          f"{len(left)} ops float (their tensors carry no fake-quant range): "
                          f"{', '.join(left[:10])}")
    return payload
