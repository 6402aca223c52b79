"""EfficientDet training losses (REFERENCE §2.6), normalised by the positive-anchor count.

* Classification: sigmoid focal loss (α 0.25, γ 1.5) summed over anchors and classes —
  Keras' ``BinaryFocalCrossentropy`` does the element-wise part.
* Box regression: Huber (δ 0.1) on the encoded (ty, tx, th, tw) of positive anchors, weight 50.
* Optional IoU-type box loss (GIoU on decoded boxes), off by default as in the reference.

Both main terms are divided by (number of positive anchors + 1), per batch.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_efficient.detection.box_coding import decode_boxes


@keras.saving.register_keras_serializable(package="keras_efficient")
class FocalLoss(keras.losses.Loss):
    """Sigmoid focal loss over one-hot targets without a background channel.

    ``call(y_true, y_pred)`` takes class targets and logits ``[B, N, C]`` and returns the
    per-image sum over anchors and classes; anchors whose targets are all −1 are ignored.

    Example::

        per_image = FocalLoss(alpha=0.25, gamma=1.5)(class_targets, class_logits)
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 1.5, label_smoothing: float = 0.0,
                 name: str = "focal_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha = alpha
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self._elementwise = keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=alpha, gamma=gamma, from_logits=True,
            label_smoothing=label_smoothing, reduction=None)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        logits = ops.cast(y_pred, "float32")
        valid = ops.cast(ops.greater_equal(ops.min(y_true, axis=-1), 0.0), "float32")
        labels = ops.maximum(y_true, 0.0)
        # BinaryFocalCrossentropy averages over its last axis; undo that to sum over classes.
        per_anchor = self._elementwise(labels[..., None], logits[..., None])
        return ops.sum(ops.sum(per_anchor, axis=-1) * valid, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma,
                "label_smoothing": self.label_smoothing}


def huber_box_loss(box_targets: Any, box_regression: Any, positive_mask: Any,
                   delta: float = 0.1) -> Any:
    """Per-image sum of the Huber loss over the 4 codes of positive anchors.

    Example::

        per_image = huber_box_loss(box_targets, box_regression, positive_mask, delta=0.1)
    """
    error = ops.cast(box_regression, "float32") - ops.cast(box_targets, "float32")
    absolute = ops.abs(error)
    quadratic = ops.minimum(absolute, delta)
    huber = 0.5 * quadratic**2 + delta * (absolute - quadratic)
    return ops.sum(ops.sum(huber, axis=-1) * ops.cast(positive_mask, "float32"), axis=-1)


def giou_box_loss(box_targets: Any, box_regression: Any, positive_mask: Any,
                  anchors: Any) -> Any:
    """Per-image sum of 1 − GIoU between decoded predicted and target boxes (positives).

    Example::

        per_image = giou_box_loss(box_targets, box_regression, positive_mask, anchors)
    """
    pred = decode_boxes(ops.cast(box_regression, "float32"), anchors)
    true = decode_boxes(ops.cast(box_targets, "float32"), anchors)
    area = lambda b: ops.maximum(b[..., 2] - b[..., 0], 0) * ops.maximum(  # noqa: E731
        b[..., 3] - b[..., 1], 0)
    inter_min = ops.maximum(pred[..., :2], true[..., :2])
    inter_max = ops.minimum(pred[..., 2:], true[..., 2:])
    inter = ops.prod(ops.maximum(inter_max - inter_min, 0.0), axis=-1)
    union = area(pred) + area(true) - inter
    iou = inter / ops.maximum(union, 1e-8)
    hull = ops.prod(ops.maximum(pred[..., 2:], true[..., 2:])
                    - ops.minimum(pred[..., :2], true[..., :2]), axis=-1)
    giou = iou - (hull - union) / ops.maximum(hull, 1e-8)
    return ops.sum((1.0 - giou) * ops.cast(positive_mask, "float32"), axis=-1)


def detection_loss(targets: dict[str, Any], outputs: dict[str, Any], *,
                   focal: FocalLoss | None = None, box_weight: float = 50.0,
                   huber_delta: float = 0.1, iou_weight: float = 0.0,
                   anchors: Any = None) -> dict[str, Any]:
    """The reference loss terms for one batch, each already normalised.

    ``targets``: ``class_targets`` ``[B, N, C]``, ``box_targets`` ``[B, N, 4]``,
    ``positive_mask`` ``[B, N]``; ``outputs``: ``class_logits``, ``box_regression``.
    Returns ``{"class_loss", "box_loss", "iou_loss", "loss"}`` (scalars); the normaliser is
    the batch's positive count + 1.

    Example::

        terms = detection_loss(targets, detector(images, training=True))
        terms["loss"], terms["class_loss"], terms["box_loss"]
    """
    focal = focal or FocalLoss()
    positives = ops.sum(ops.cast(targets["positive_mask"], "float32"))
    normaliser = positives + 1.0
    class_loss = ops.sum(focal.call(targets["class_targets"], outputs["class_logits"]))
    class_loss = class_loss / normaliser
    box_loss = ops.sum(huber_box_loss(targets["box_targets"], outputs["box_regression"],
                                      targets["positive_mask"], huber_delta)) / normaliser
    total = class_loss + box_weight * box_loss
    iou_loss = ops.zeros(())
    if iou_weight:
        if anchors is None:
            raise ValueError("An IoU box loss needs the anchors to decode boxes.")
        iou_loss = ops.sum(giou_box_loss(targets["box_targets"], outputs["box_regression"],
                                         targets["positive_mask"], anchors)) / normaliser
        total = total + iou_weight * iou_loss
    return {"class_loss": class_loss, "box_loss": box_loss, "iou_loss": iou_loss, "loss": total}
