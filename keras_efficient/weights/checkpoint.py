"""Load official name-based TF checkpoints (tensorflow/tpu, google/automl) into our layers.

A *name map* pairs each weight-owning layer of our model with the checkpoint variable names of
its weights, in the layer's weight order. :func:`assign_from_checkpoint` then copies the values,
preferring the exponential-moving-average copy (``<name>/ExponentialMovingAverage``) when the
checkpoint holds one, and fails loudly on anything left over on either side.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from keras_efficient.configs.efficientnet import EfficientNetScaling, expand_blocks

EMA_SUFFIX = "/ExponentialMovingAverage"
#: Checkpoint variables that are training state, never model weights.
TRAINING_STATE = re.compile(
    r"(^global_step$)|(/(RMSProp|RMSProp_1|Momentum|Adam|Adam_1)$)|(^beta[12]_power)"
)
BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")

#: A weight's source: one variable name, or a tuple of scalar variables stacked into a vector.
Source = str | tuple[str, ...]
NameMap = dict[str, Sequence[Source]]


class CheckpointMismatchError(ValueError):
    """The checkpoint and the model do not correspond one to one.

    Example::

        try:
            load_efficientnet_checkpoint(model, prefix, scaling, include_top=True)
        except CheckpointMismatchError as error:
            print(error)  # the unmatched layers and unused variables; nothing was assigned
    """


def checkpoint_prefix(path: str | os.PathLike[str]) -> str | None:
    """The checkpoint prefix at ``path`` (a prefix or a directory holding one), else None.

    Example::

        checkpoint_prefix("efficientnet-lite0/")  # the prefix of the checkpoint in the folder
    """
    path = os.fspath(path)
    if os.path.exists(path + ".index"):
        return path
    if os.path.isdir(path):
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(path)
        if latest:
            return str(latest)
        indexes = sorted(name for name in os.listdir(path) if name.endswith(".index"))
        if len(indexes) == 1:
            return os.path.join(path, indexes[0][: -len(".index")])
    return None


def read_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """All variables of a checkpoint as numpy arrays, by name.

    Example::

        variables = read_checkpoint(prefix)  # {"efficientnet-lite0/stem/conv2d/kernel": ...}
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _bn(scope: str) -> list[str]:
    return [f"{scope}/{name}" for name in BN_VARIABLES]


def efficientnet_name_map(scaling: EfficientNetScaling, scope: str | None = None,
                          include_top: bool = True, include_head: bool = True) -> NameMap:
    """Our EfficientNet layer names -> official checkpoint variable names (REFERENCE §3.3).

    ``scope`` is the checkpoint's backbone prefix (``efficientnet-lite0`` by default; detector
    checkpoints use the same names under their backbone scope).

    Example::

        efficientnet_name_map(get_efficientnet_scaling("lite0"))["stem_conv"]
        # ["efficientnet-lite0/stem/conv2d/kernel"]
    """
    scope = scope or scaling.checkpoint_scope
    names: NameMap = {
        "stem_conv": [f"{scope}/stem/conv2d/kernel"],
        "stem_bn": _bn(f"{scope}/stem/tpu_batch_normalization"),
    }
    for block in expand_blocks(scaling):
        prefix = f"{scope}/blocks_{block.index}"
        convs = iter(f"{prefix}/conv2d{suffix}/kernel" for suffix in ("", "_1"))
        bns = iter(_bn(f"{prefix}/tpu_batch_normalization{suffix}")
                   for suffix in ("", "_1", "_2"))
        if block.expand_ratio != 1:
            names[f"{block.name}expand_conv"] = [next(convs)]
            names[f"{block.name}expand_bn"] = next(bns)
        names[f"{block.name}dwconv"] = [f"{prefix}/depthwise_conv2d/depthwise_kernel"]
        names[f"{block.name}bn"] = next(bns)
        if 0 < block.se_ratio <= 1:
            names[f"{block.name}se_reduce"] = [f"{prefix}/se/conv2d/kernel",
                                               f"{prefix}/se/conv2d/bias"]
            names[f"{block.name}se_expand"] = [f"{prefix}/se/conv2d_1/kernel",
                                               f"{prefix}/se/conv2d_1/bias"]
        names[f"{block.name}project_conv"] = [next(convs)]
        names[f"{block.name}project_bn"] = next(bns)
    if include_head:
        names["top_conv"] = [f"{scope}/head/conv2d/kernel"]
        names["top_bn"] = _bn(f"{scope}/head/tpu_batch_normalization")
    if include_top and include_head:
        names["predictions"] = [f"{scope}/head/dense/kernel", f"{scope}/head/dense/bias"]
    return names


def _layers_with_weights(model: Any) -> Iterable[Any]:
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.weights and not list(layer._flatten_layers(include_self=False,
                                                             recursive=False)):
            yield layer


def assign_from_checkpoint(model: Any, variables: Mapping[str, np.ndarray], name_map: NameMap,
                           *, unused_ok: Sequence[str] = (), skip_layers: Sequence[str] = (),
                           prefer_ema: bool = True) -> dict[str, int]:
    """Copy checkpoint ``variables`` into ``model`` following ``name_map``.

    Every weight-owning layer of the model must be in the map (except ``skip_layers``), every
    mapped name must exist with the right shape, and every checkpoint variable must be consumed
    (except training state, EMA copies, names starting with one of ``unused_ok`` and the layers
    skipped). Otherwise :class:`CheckpointMismatchError` names the leftovers; nothing is assigned
    unless everything matches. Returns counts of assigned weights and EMA copies used.

    Example::

        counts = assign_from_checkpoint(model, read_checkpoint(prefix),
                                        efficientnet_name_map(scaling))  # {"assigned", "ema"}
    """
    layers = {layer.name: layer for layer in _layers_with_weights(model)}
    missing_layers = sorted(set(layers) - set(name_map) - set(skip_layers))
    unknown_layers = sorted(set(name_map) - set(layers))
    problems = []
    if missing_layers:
        problems.append(f"model layers with no checkpoint variables: {missing_layers}")
    if unknown_layers:
        problems.append(f"mapped layers that the model lacks: {unknown_layers}")

    plan: list[tuple[Any, list[np.ndarray]]] = []
    consumed: set[str] = set()
    ema_used = 0
    for layer_name, ckpt_names in name_map.items():
        layer = layers.get(layer_name)
        flat_names = [name for source in ckpt_names
                      for name in ((source,) if isinstance(source, str) else source)]
        if layer is None or layer_name in skip_layers:
            consumed.update(flat_names)
            consumed.update(name + EMA_SUFFIX for name in flat_names)
            continue
        if len(ckpt_names) != len(layer.weights):
            problems.append(f"{layer_name}: model has {len(layer.weights)} weights, map names "
                            f"{len(ckpt_names)}")
            continue
        values = []
        for weight, source in zip(layer.weights, ckpt_names, strict=True):
            parts = (source,) if isinstance(source, str) else source
            arrays = []
            for ckpt_name in parts:
                chosen = ckpt_name
                if prefer_ema and ckpt_name + EMA_SUFFIX in variables:
                    chosen = ckpt_name + EMA_SUFFIX
                    ema_used += 1
                consumed.update((ckpt_name, ckpt_name + EMA_SUFFIX))
                if chosen not in variables:
                    problems.append(f"{layer_name}/{weight.name}: checkpoint lacks {ckpt_name!r}")
                    continue
                arrays.append(np.asarray(variables[chosen]))
            if len(arrays) != len(parts):
                continue
            value = arrays[0] if isinstance(source, str) else np.stack(arrays)
            if tuple(value.shape) != tuple(weight.shape):
                problems.append(f"{layer_name}/{weight.name}: checkpoint {source!r} has shape "
                                f"{tuple(value.shape)}, model expects {tuple(weight.shape)}")
                continue
            values.append(value)
        if len(values) == len(layer.weights):
            plan.append((layer, values))

    leftovers = sorted(
        name for name in variables
        if name not in consumed and not TRAINING_STATE.search(name)
        and not name.startswith(tuple(unused_ok))
    )
    if leftovers:
        shown = ", ".join(leftovers[:20]) + (" ..." if len(leftovers) > 20 else "")
        problems.append(f"{len(leftovers)} checkpoint variables not used by the model: {shown}")
    if problems:
        raise CheckpointMismatchError(
            "The checkpoint does not match the model:\n  - " + "\n  - ".join(problems)
        )
    for layer, values in plan:
        layer.set_weights(values)
    return {"assigned": sum(len(values) for _, values in plan), "ema": ema_used}


def load_efficientnet_checkpoint(model: Any, prefix: str, scaling: EfficientNetScaling,
                                 include_top: bool) -> dict[str, int]:
    """Load an official EfficientNet/-Lite classifier checkpoint into our classifier model.

    Example::

        load_efficientnet_checkpoint(EfficientNetLite0(weights=None), "lite0/model.ckpt",
                                     get_efficientnet_scaling("lite0"), include_top=True)
    """
    variables = read_checkpoint(prefix)
    scope = scaling.checkpoint_scope
    unused = () if include_top else (f"{scope}/head/dense/",)
    return assign_from_checkpoint(model, variables,
                                  efficientnet_name_map(scaling, scope, include_top),
                                  unused_ok=unused, skip_layers=("normalization",))
