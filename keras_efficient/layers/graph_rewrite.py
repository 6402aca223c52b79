"""One pass over a functional Keras graph that rebuilds it call by call.

The quantization-aware twin (:mod:`.quantize_graph`) and the batch-norm-folded inference graph
(:mod:`.fold_batch_norm`) are both rewrites of the same kind: walk the model's layer calls in
execution order, map every old tensor to its new one, and let each call become something else
(a folded convolution that also takes its batch normalization's place, a fake-quantized layer,
the same layer again). :class:`GraphRewriter` holds that walk; subclasses say what each call
becomes in :meth:`GraphRewriter.visit`.
"""

from __future__ import annotations

from typing import Any

import keras

#: The convolutions a following batch normalization folds into.
CONVS = (keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D, keras.layers.Conv2D)


def activation_name(layer: keras.layers.Layer) -> str | None:
    """The layer's activation by name (``"relu6"``, ...), None for none or linear."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = keras.activations.serialize(activation)
    name = name if isinstance(name, str) else str(name.get("config", name))
    return None if name == "linear" else name


class GraphRewriter:
    """State of one rewrite: the new tensor of each old one, the consumers of each old tensor,
    how often each layer is called, and the calls already computed as part of another."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.tensors: dict[int, Any] = {}
        self.consumers: dict[int, list[Any]] = {}
        self.nodes = [node for depth in sorted(model._nodes_by_depth, reverse=True)
                      for node in model._nodes_by_depth[depth]]
        for node in self.nodes:
            for tensor in node.input_tensors:
                self.consumers.setdefault(id(tensor), []).append(node)
        self.calls: dict[str, int] = {}
        for node in self.nodes:
            self.calls[node.operation.name] = self.calls.get(node.operation.name, 0) + 1
        self.seen: dict[str, int] = {}  # calls of each shared layer rewritten so far
        self.skipped: set[int] = set()  # nodes already computed as part of another
        self.copies: dict[str, keras.layers.Layer] = {}  # see call_copy

    def only_consumer(self, node: Any) -> Any:
        """The one call that reads ``node``'s single output, or None."""
        users = self.consumers.get(id(node.outputs[0]), [])
        return users[0] if len(users) == 1 and len(node.outputs) == 1 else None

    def batch_norm_after(self, node: Any) -> Any:
        """The BatchNormalization call that is the only reader of ``node``'s output, or None."""
        follower = self.only_consumer(node)
        if follower is not None and isinstance(follower.operation,
                                               keras.layers.BatchNormalization):
            return follower
        return None

    def pair_name(self, layer: keras.layers.Layer, partner: keras.layers.Layer) -> str:
        """The name of what one call of ``layer`` merged with ``partner`` becomes: the layer's
        own name, or ``{layer}_{partner}`` for a layer called more than once (the shared head
        convolutions, one batch normalization per level)."""
        return layer.name if self.calls[layer.name] == 1 else f"{layer.name}_{partner.name}"

    def call_name(self, layer: keras.layers.Layer) -> str:
        """The name of this call of ``layer`` made a layer of its own: the layer's name, or
        ``{layer}_{index}`` for the index-th call of a shared layer."""
        index = self.seen[layer.name] = self.seen.get(layer.name, -1) + 1
        return layer.name if self.calls[layer.name] == 1 else f"{layer.name}_{index}"

    def run(self) -> tuple[Any, Any]:
        """``(inputs, outputs)`` of the rewritten graph (one input: the tensor; else a list)."""
        inputs = []
        for old in self.model.inputs:
            new = keras.Input(batch_shape=old.shape, name=old.name.split(":")[0],
                              dtype=old.dtype)
            self.tensors[id(old)] = new
            inputs.append(new)
        for node in self.nodes:
            if node.is_input or id(node) in self.skipped:
                continue
            self.visit(node)
        self.finish()
        outputs = keras.tree.map_structure(lambda t: self.tensors[id(t)], self.model.output)
        return (inputs[0] if len(inputs) == 1 else inputs), outputs

    def args(self, node: Any) -> tuple[list[Any], dict[str, Any]]:
        """The call's arguments, with the new tensors in place of the old."""
        args, kwargs = node.arguments.fill_in(self.tensors)
        return list(args), dict(kwargs)

    def put(self, node: Any, value: Any) -> None:
        """Record ``value`` as the new form of ``node``'s (single) output."""
        self.tensors[id(node.outputs[0])] = value

    def call_copy(self, node: Any) -> None:
        """Call a copy of the node's layer (one copy per layer, shared by its calls, built from
        its config; weights are the caller's to set) on the new tensors. A copy, not the layer
        itself: a layer in two models reports the first model's tensors as its ``input`` and
        ``output``, which would tie the new graph to the old one."""
        args, kwargs = self.args(node)
        out = self.copy_of(node.operation)(*args, **kwargs)
        for old, new in zip(node.outputs, keras.tree.flatten(out), strict=True):
            self.tensors[id(old)] = new

    def copy_of(self, layer: keras.layers.Layer) -> keras.layers.Layer:
        """The new graph's copy of ``layer`` (made from its config on first use)."""
        if layer.name not in self.copies:
            self.copies[layer.name] = type(layer).from_config(layer.get_config())
        return self.copies[layer.name]

    def visit(self, node: Any) -> None:
        """Compute the new form of one layer call (and ``put`` it)."""
        raise NotImplementedError

    def finish(self) -> None:
        """Checks after the last call (nothing by default)."""
