"""Weighted fusion of same-shaped feature maps: the three BiFPN modes as one layer."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

FAST_EPSILON = 1e-4


@keras.saving.register_keras_serializable(package="keras_efficient")
class WeightedFusion(keras.layers.Layer):
    """Fuse ``n`` tensors of one shape with learned scalar weights (REFERENCE §2.3).

    ``mode``: ``"fast"`` Σ relu(w_j)·x_j / (Σ relu(w_k) + ε); ``"softmax"`` Σ softmax(w)_j·x_j;
    ``"sum"`` x_0 + x_1 (+ x_2) as chained adds, with no weights (EdgeTPU-friendly: no ADD_N).
    The weights (one per input, initialised to 1.0) form a single vector named ``fusion_weights``.

    Example::

        fused = WeightedFusion("fast", name="fpn_cell0_node0_fusion")([p6, p7_upsampled])
    """

    def __init__(self, mode: str = "fast", epsilon: float = FAST_EPSILON, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("fast", "softmax", "sum"):
            raise ValueError(f"mode must be 'fast', 'softmax' or 'sum'; received {mode!r}.")
        self.mode = mode
        self.epsilon = epsilon

    def build(self, input_shape: Any) -> None:
        if not isinstance(input_shape, list | tuple) or len(input_shape) < 2:
            raise ValueError("WeightedFusion needs a list of at least two inputs.")
        if self.mode != "sum":
            self.fusion_weights = self.add_weight(name="fusion_weights",
                                                  shape=(len(input_shape),),
                                                  initializer="ones", trainable=True)

    def call(self, inputs: list[Any]) -> Any:
        if self.mode == "sum":
            total = inputs[0]
            for tensor in inputs[1:]:
                total = total + tensor
            return total
        weights = ops.cast(self.fusion_weights, inputs[0].dtype)
        if self.mode == "softmax":
            weights = ops.softmax(weights)
            return sum(weights[i] * tensor for i, tensor in enumerate(inputs))
        weights = ops.relu(weights)
        norm = ops.sum(weights) + self.epsilon
        return sum(weights[i] * tensor / norm for i, tensor in enumerate(inputs))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "epsilon": self.epsilon}
