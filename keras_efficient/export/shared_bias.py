"""Repair of int16x8 convolutions whose bias is shared with other convolutions.

A TFLite integer convolution reads its bias in units of ``input scale × weight scale``. When
one Keras layer runs on several inputs (EfficientDet's class and box predictors run on every
pyramid level), the converter keeps one bias tensor for all those convolutions. In int8 it
gives each its own; in int16x8 (TF 2.21, both quantizers) it quantizes the bias once, for one
input's scale, and every other convolution reads it with its own scale: on D0 the P7 class
logits lost their -4.6 prior bias and the int16x8 export lost ~10 AP. :func:`unshare_biases`
gives each such convolution a bias requantized for its own input (the real values are kept
to the int64 rounding), so the file computes what the Keras model computes.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

#: Ops whose third input is a bias in units of input scale × weight scale.
_BIASED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_INTEGER_BIAS: dict[str, type[np.signedinteger[Any]]] = {"INT32": np.int32, "INT64": np.int64}


def unshare_biases(payload: bytes) -> tuple[bytes, int]:
    """``payload`` with every integer bias whose scale is not its op's
    ``input scale × weight scale`` replaced by its own, requantized copy; and how many were.

    Example::

        payload, repaired = unshare_biases(converter.convert())  # int16x8 exports
    """
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(payload))
    repaired = 0
    for graph in tree.subgraphs:
        for op in graph.operators:
            if (flatbuffer_utils.opcode_to_name(tree, op.opcodeIndex) not in _BIASED_OPS
                    or len(op.inputs) < 3 or int(op.inputs[2]) < 0):
                continue
            inputs, weights, bias = (graph.tensors[int(i)] for i in op.inputs[:3])
            dtype = _INTEGER_BIAS.get(flatbuffer_utils.type_to_name(bias.type))
            input_scale, weight_scale, bias_scale = (_scales(t) for t in (inputs, weights, bias))
            if dtype is None or input_scale is None or weight_scale is None or bias_scale is None:
                continue
            want = (np.float64(input_scale[0]) * weight_scale).astype(np.float32)
            want = np.broadcast_to(want, bias_scale.shape) if want.size == 1 else want
            if want.shape == bias_scale.shape and np.allclose(bias_scale, want, rtol=1e-6):
                continue
            stored = np.frombuffer(bytes(tree.buffers[bias.buffer].data), dtype=dtype)
            real = stored.astype(np.float64) * bias_scale.astype(np.float64)
            limits = np.iinfo(dtype)
            values = np.clip(np.round(real / want.astype(np.float64)), limits.min, limits.max)
            op.inputs[2] = _add_bias(tree, graph, bias, values.astype(dtype), want)
            repaired += 1
    if not repaired:
        return payload, 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree)), repaired


def _scales(tensor: Any) -> np.ndarray | None:
    quantization = tensor.quantization
    scale = None if quantization is None else quantization.scale
    return None if scale is None or not len(scale) else np.asarray(scale, np.float32)


def _add_bias(tree: Any, graph: Any, like: Any, values: np.ndarray, scale: np.ndarray) -> int:
    """A new constant tensor like ``like`` holding ``values`` at ``scale``; its index."""
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
    tree.buffers.append(buffer)
    tensor = copy.deepcopy(like)
    tensor.buffer = len(tree.buffers) - 1
    tensor.name = (like.name.decode() if isinstance(like.name, bytes) else like.name) + (
        f";rescaled{len(graph.tensors)}")
    tensor.quantization.scale = scale.astype(np.float32)
    tensor.quantization.zeroPoint = np.zeros(scale.shape, np.int64)
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1
