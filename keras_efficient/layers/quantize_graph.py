"""Rewrite a functional Keras graph into its quantization-aware twin (:mod:`.fake_quant` layers).

One pass over the graph's nodes in execution order, mapping each float layer to what the
full-integer TFLite model will compute in its place:

* Conv2D / DepthwiseConv2D / SeparableConv2D followed by its only consumer, a
  BatchNormalization → one :class:`~.fake_quant.QuantConv` with the BN folded in (and a
  ReLU/ReLU6 Activation after it fused); a convolution without BN → a QuantConv of its own
  (its ``activation`` included). A convolution called several times (the shared head
  convolutions, one BN per level) becomes one QuantConv per call, named
  ``{conv}_{bn}``: the integer graph holds one folded copy per level anyway;
* the pixel preprocessing (Rescaling, Normalization) → one :class:`~.fake_quant.QuantPixelAffine`;
* WeightedFusion → :class:`~.fake_quant.QuantFusion`;
* Add, Multiply, Concatenate, GlobalAveragePooling2D, Activation (not sigmoid) → the same layer
  and a :class:`~.fake_quant.FakeQuant` of its output (``{layer}_quant``);
* ops that keep their input's scale in TFLite (ZeroPadding2D, MaxPooling2D, Reshape, Dropout,
  NearestUpsample) and sigmoid → the same layer, no new range.

Any other layer is refused with its name and type, so that nothing stays float silently.
Layers keep their names (a folded pair takes the convolution's), so weights transfer by name
(:func:`copy_float_weights`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_efficient.layers.fake_quant import (
    FIXED_RANGE_ACTIVATIONS,
    FUSED_ACTIVATIONS,
    FakeQuant,
    QuantConv,
    QuantFusion,
    QuantPixelAffine,
)
from keras_efficient.layers.fusion import WeightedFusion
from keras_efficient.layers.graph_rewrite import CONVS, GraphRewriter, activation_name
from keras_efficient.layers.resample import NearestUpsample

_PASS_THROUGH = (keras.layers.ZeroPadding2D, keras.layers.MaxPooling2D, keras.layers.Reshape,
                 keras.layers.Dropout, NearestUpsample)
_QUANTIZED_OUTPUT = (keras.layers.Add, keras.layers.Multiply, keras.layers.Concatenate,
                     keras.layers.GlobalAveragePooling2D)
_PREPROCESSING = (keras.layers.Rescaling, keras.layers.Normalization)


def _kind(layer: keras.layers.Layer) -> str:
    if isinstance(layer, keras.layers.SeparableConv2D):
        return "separable"
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        if int(layer.depth_multiplier) != 1:
            raise ValueError(f"{layer.name}: depth_multiplier {layer.depth_multiplier} is not "
                             "supported by quantization-aware training (1 only).")
        return "depthwise"
    return "conv"


def _check_conv(layer: keras.layers.Layer) -> None:
    strides = tuple(layer.strides)
    dilation = tuple(getattr(layer, "dilation_rate", (1, 1)))
    if strides[0] != strides[1] or dilation != (1, 1) or layer.data_format != "channels_last":
        raise ValueError(f"{layer.name}: quantization-aware training supports square strides, "
                         "no dilation and channels_last; received strides "
                         f"{strides}, dilation {dilation}, {layer.data_format}.")


def _quant_conv(conv: keras.layers.Layer, bn: keras.layers.Layer | None, activation: str | None,
                name: str) -> QuantConv:
    _check_conv(conv)
    kernel = conv.kernel_size[0] if isinstance(conv.kernel_size, tuple) else conv.kernel_size
    return QuantConv(_kind(conv), getattr(conv, "filters", None), int(kernel),
                     strides=int(conv.strides[0]), padding=conv.padding, use_bias=conv.use_bias,
                     batch_norm=bn is not None,
                     epsilon=float(bn.epsilon) if bn is not None else 1e-3,
                     activation=activation,
                     float_layers=(conv.name,) + ((bn.name,) if bn is not None else ()),
                     name=name)


def pixel_affine(layers: list[keras.layers.Layer]) -> tuple[list[float], list[float]]:
    """The per-channel ``(scale, offset)`` of a chain of Rescaling / Normalization layers.

    Example::

        pixel_affine([keras.layers.Rescaling(1 / 128, offset=-127 / 128)])  # ([1/128]*3, ...)
    """
    scale, offset = np.ones(3), np.zeros(3)
    for layer in layers:
        if isinstance(layer, keras.layers.Rescaling):
            scale, offset = scale * layer.scale, offset * layer.scale + layer.offset
        else:
            mean = keras.ops.convert_to_numpy(layer.mean).astype("float64").reshape(-1)
            variance = keras.ops.convert_to_numpy(layer.variance).astype("float64").reshape(-1)
            std = np.sqrt(np.maximum(variance, keras.backend.epsilon()))
            scale, offset = scale / std, (offset - mean) / std
    return [float(v) for v in scale], [float(v) for v in offset]


class _Rewriter(GraphRewriter):
    """One quantization-aware rewrite; collects the pixel preprocessing chain as it goes."""

    def __init__(self, model: keras.Model) -> None:
        super().__init__(model)
        self.preprocessing: list[keras.layers.Layer] = []

    def finish(self) -> None:
        if self.preprocessing:
            raise ValueError("The pixel preprocessing layers feed nothing.")

    def visit(self, node: Any) -> None:
        layer = node.operation
        args, kwargs = self.args(node)
        if isinstance(layer, _PREPROCESSING):
            self.preprocessing.append(layer)
            follower = self.only_consumer(node)
            if follower is not None and isinstance(follower.operation, _PREPROCESSING):
                self.put(node, args[0])  # folded into the next one
                return
            scale, offset = pixel_affine(self.preprocessing)
            self.preprocessing = []
            self.put(node, QuantPixelAffine(scale, offset, name=layer.name)(args[0]))
            return
        if isinstance(layer, CONVS):
            self.visit_conv(node, layer, args)
            return
        if isinstance(layer, keras.layers.BatchNormalization):
            raise ValueError(f"{layer.name}: a BatchNormalization that does not directly follow "
                             "a convolution cannot be folded for quantization-aware training.")
        if isinstance(layer, WeightedFusion):
            fusion = QuantFusion(layer.mode, layer.epsilon, name=layer.name)
            self.put(node, fusion(args[0]))
            return
        out = self.copy_of(layer)(*args, **kwargs)
        if isinstance(layer, _PASS_THROUGH):
            self.put(node, out)
        elif isinstance(layer, keras.layers.Activation):
            fixed = activation_name(layer) in FIXED_RANGE_ACTIVATIONS
            self.put(node, out if fixed else FakeQuant(name=f"{layer.name}_quant")(out))
        elif isinstance(layer, _QUANTIZED_OUTPUT):
            self.put(node, FakeQuant(name=f"{layer.name}_quant")(out))
        else:
            raise ValueError(f"Quantization-aware training does not know how TFLite quantizes "
                             f"layer {layer.name!r} ({type(layer).__name__}).")

    def visit_conv(self, node: Any, conv: keras.layers.Layer, args: list[Any]) -> None:
        bn_node = self.batch_norm_after(node)
        if bn_node is None:
            name = self.call_name(conv)
            self.put(node, _quant_conv(conv, None, activation_name(conv), name)(args[0]))
            return
        bn = bn_node.operation
        if activation_name(conv) is not None:
            raise ValueError(f"{conv.name}: a convolution with an activation before its batch "
                             "normalization cannot be folded.")
        self.skipped.add(id(bn_node))
        act_node = self.only_consumer(bn_node)
        activation = None
        if act_node is not None and isinstance(act_node.operation, keras.layers.Activation) and (
                activation_name(act_node.operation) in FUSED_ACTIVATIONS):
            activation = activation_name(act_node.operation)
            self.skipped.add(id(act_node))
        out = _quant_conv(conv, bn, activation, self.pair_name(conv, bn))(args[0])
        self.tensors[id(bn_node.outputs[0])] = out
        if activation is not None:
            self.tensors[id(act_node.outputs[0])] = out


def quantize_graph(model: keras.Model) -> tuple[Any, Any]:
    """``(input, outputs)`` of the quantization-aware twin of a functional ``model`` (one image
    input); build a model from them and copy the weights with :func:`copy_float_weights`.

    Example::

        image, outputs = quantize_graph(float_model)
        qat = keras.Model(image, outputs)
        copy_float_weights(qat, float_model)
    """
    if len(model.inputs) != 1:
        raise ValueError(f"Quantization-aware training needs a model with one image input; "
                         f"{model.name} has {len(model.inputs)}.")
    return _Rewriter(model).run()


def copy_float_weights(target: keras.Model, source: keras.Model) -> int:
    """Copy ``source``'s (float) weights into its quantization-aware twin ``target`` by layer
    name: folded pairs from their conv and BN, fusions and unchanged layers as they are.
    Returns the number of layers set; the activation ranges are left to calibration.

    Example::

        copy_float_weights(qat_detector, trained_detector)
    """
    copied = 0
    for layer in target.layers:
        if isinstance(layer, QuantConv):
            sources = [source.get_layer(name) for name in layer.float_layers]
            layer.set_float_weights(*sources)
        elif isinstance(layer, QuantFusion):
            float_layer = source.get_layer(layer.name)
            if layer.mode != "sum":
                layer.fusion_weights.assign(float_layer.fusion_weights.numpy())
        elif layer.weights and not isinstance(layer, FakeQuant | QuantPixelAffine):
            layer.set_weights(source.get_layer(layer.name).get_weights())
        else:
            continue
        copied += 1
    return copied
