"""Fold every inference batch normalization into the convolution before it.

At inference a BatchNormalization is a per-channel affine map, ``y = x * s + (beta - mean * s)``
with ``s = gamma / sqrt(variance + epsilon)``; after a convolution it equals the same
convolution with its kernel's output channels scaled by ``s`` and a bias of
``bias * s + beta - mean * s``. TensorFlow's graph optimizer fuses a convolution with a
following ``FusedBatchNormV3`` only for regular convolutions; after every depthwise convolution
(and in every separable one) the batch normalization stays a pass of its own over the tensor.
Folded, each convolution ends in a bias add that the optimizer fuses (with a ReLU/ReLU6 after
it) into the convolution kernel: EfficientDet-Lite0 and D0 take ~10 % less CPU time per image
(``benchmarks/keras_network_latency.py``, variant ``folded``). TFLite's converter folds the same
way, so exported files do not change.

The folded graph is an inference graph: it has no batch statistics to train and its folded
weights are a snapshot of the model's at the time of folding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_efficient.layers.graph_rewrite import CONVS, GraphRewriter, activation_name


def _foldable(conv: keras.layers.Layer, bn: keras.layers.Layer) -> bool:
    """Whether ``bn`` normalizes ``conv``'s output channels and nothing sits between them."""
    channel_axis = -1 if conv.data_format == "channels_last" else 1
    return (activation_name(conv) is None and bn.axis in (channel_axis, channel_axis % 4)
            and not bn.renorm)


def folded_weights(conv: keras.layers.Layer, bn: keras.layers.Layer) -> list[np.ndarray]:
    """The weights of ``conv`` with the inference form of ``bn`` folded in (computed in float64,
    returned in the convolution's dtypes): its kernels with the output channels scaled and a
    bias, in the order ``get_weights`` of the same layer with ``use_bias=True`` expects.

    Example::

        folded_conv.set_weights(folded_weights(model.get_layer("stem_conv"),
                                               model.get_layer("stem_bn")))
    """
    def numpy(value: Any) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)

    variance = numpy(bn.moving_variance)
    scale = 1.0 / np.sqrt(variance + bn.epsilon)
    if bn.scale:
        scale = scale * numpy(bn.gamma)
    shift = -numpy(bn.moving_mean) * scale
    if bn.center:
        shift = shift + numpy(bn.beta)
    weights = conv.get_weights()
    kernels = [numpy(w) for w in weights]
    bias = kernels.pop() if conv.use_bias else np.zeros_like(scale)
    if isinstance(conv, keras.layers.SeparableConv2D):
        kernels[1] = kernels[1] * scale  # the pointwise kernel's output channels
    elif isinstance(conv, keras.layers.DepthwiseConv2D):
        depthwise = kernels[0]  # (rows, cols, channels, multiplier): output c * m + k
        kernels[0] = depthwise * scale.reshape(depthwise.shape[2:])
    else:
        kernels[0] = kernels[0] * scale
    dtypes = [w.dtype for w in weights]
    return ([k.astype(dtype) for k, dtype in zip(kernels, dtypes, strict=False)]
            + [(bias * scale + shift).astype(dtypes[0])])


class _Folder(GraphRewriter):
    """One folding rewrite: each conv → BN pair becomes one convolution with a bias (one per
    call of a shared convolution); every other layer is copied."""

    def __init__(self, model: keras.Model) -> None:
        super().__init__(model)
        self.sources: dict[str, tuple[str, str]] = {}

    def visit(self, node: Any) -> None:
        layer = node.operation
        bn_node = self.batch_norm_after(node) if isinstance(layer, CONVS) else None
        if bn_node is None or not _foldable(layer, bn_node.operation):
            self.call_copy(node)
            return
        bn = bn_node.operation
        name = self.pair_name(layer, bn)
        config = {**layer.get_config(), "name": name, "use_bias": True}
        args, kwargs = self.args(node)
        out = type(layer).from_config(config)(*args, **kwargs)
        self.sources[name] = (layer.name, bn.name)
        self.skipped.add(id(bn_node))
        self.put(node, out)
        self.put(bn_node, out)


def fold_graph(model: keras.Model) -> tuple[Any, Any, dict[str, tuple[str, str]]]:
    """``(inputs, outputs, sources)`` of ``model``'s graph with every convolution → batch
    normalization pair folded into one convolution; ``sources`` maps each folded convolution's
    name to its ``(convolution, batch normalization)`` names in ``model``. Every layer of the
    new graph is new (other layers are copied from their config, under their names); set their
    weights with :func:`copy_folded_weights`.

    Example::

        inputs, outputs, sources = fold_graph(model)
        folded = keras.Model(inputs, outputs)
        copy_folded_weights(folded, model, sources)
    """
    folder = _Folder(model)
    inputs, outputs = folder.run()
    return inputs, outputs, folder.sources


def copy_folded_weights(target: keras.Model, source: keras.Model,
                        sources: Mapping[str, tuple[str, str]]) -> int:
    """Set ``target``'s weights from ``source`` (the model it was folded from): each folded
    convolution from its convolution and batch normalization (``sources``), every other layer
    with weights from ``source``'s layer of the same name. Returns the number of layers set.

    Example::

        copy_folded_weights(folded, model, sources)
    """
    copied = 0
    for layer in target.layers:
        if layer.name in sources:
            conv, bn = (source.get_layer(name) for name in sources[layer.name])
            layer.set_weights(folded_weights(conv, bn))
        elif layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
        else:
            continue
        copied += 1
    return copied


def fold_batch_norms(model: keras.Model, name: str | None = None) -> keras.Model:
    """An inference copy of a functional ``model`` with every batch normalization that directly
    follows a convolution (and is its only reader) folded into it: the same outputs to float
    rounding, in fewer and fused ops. Batch normalizations elsewhere stay. The copy holds a
    snapshot of ``model``'s weights; fold again after training further.

    Example::

        fast = fold_batch_norms(keras_efficient.EfficientNetB0(weights="imagenet"))
        fast.predict(images)  # what model.predict(images) gives, in fewer ops
    """
    inputs, outputs, sources = fold_graph(model)
    folded = keras.Model(inputs, outputs, name=name or f"{model.name}_folded")
    copy_folded_weights(folded, model, sources)
    return folded
