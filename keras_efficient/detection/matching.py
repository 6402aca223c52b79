"""Training targets: match anchors to ground-truth boxes (REFERENCE §2.5).

Written with ``keras.ops`` only, with no Python loop over boxes, so it traces into a graph: call it
inside ``tf.data.Dataset.map`` (TensorFlow backend) or eagerly. Memory is ``O(N · M)`` for ``N``
anchors and ``M`` (padded) ground-truth rows, the size of the IoU matrix.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import numpy as np

from keras_efficient.detection.box_coding import encode_boxes, iou_matrix

ops = keras.ops


class MatchResult(NamedTuple):
    """Per-anchor targets; a NamedTuple so ``tf.data`` carries it as a structure.

    * ``class_targets``: float32 ``[..., N, num_classes]``, one-hot for positive anchors, all
      zeros for negatives (no background channel).
    * ``box_targets``: float32 ``[..., N, 4]`` encoded (ty, tx, th, tw); zeros for negatives.
    * ``positive_mask``: float32 ``[..., N]``, 1.0 for positive anchors.
    * ``num_positives``: float32 ``[...]``, the number of positive anchors (loss normaliser).
    * ``matched_gt``: int32 ``[..., N]``, the ground-truth row each positive anchor was matched
      to, −1 for negatives (for debugging and visualisation).

    Example::

        match = assign_targets_numpy(gt_boxes, gt_classes, anchors, num_classes=3)
        match.class_targets, match.box_targets, match.positive_mask, match.num_positives
    """

    class_targets: Any
    box_targets: Any
    positive_mask: Any
    num_positives: Any
    matched_gt: Any


def assign_targets(gt_boxes: Any, gt_classes: Any, anchors: Any, num_classes: int,
                   iou_threshold: float = 0.5) -> MatchResult:
    """Assign each anchor a class and box target.

    Args:
      gt_boxes: ``[..., M, 4]`` (ymin, xmin, ymax, xmax) in input pixels, padded to a fixed
        ``M`` (leading batch dimensions are optional).
      gt_classes: ``[..., M]`` 0-based class ids; rows with a negative class are padding and are
        ignored entirely.
      anchors: ``[N, 4]`` from :func:`~keras_efficient.detection.anchors.generate_anchors`.
      num_classes: width of the one-hot class targets.
      iou_threshold: anchors whose best IoU with a real box is ``>= iou_threshold`` are positive,
        all others negative (no ignore band).

    Every real ground-truth box is also force-matched to its best anchor (highest IoU, first
    anchor on ties), so small boxes always get a positive. When several boxes pick the same
    anchor, the box with the **highest row index** wins (deterministic "later one wins"); a
    force-match overrides the anchor's threshold match. A box overlapping no anchor at all
    (IoU 0 everywhere, e.g. a zero-area box) is not force-matched.

    Example::

        anchors = generate_anchors(AnchorSpec(image_size=128))
        match = assign_targets([[10.0, 10.0, 60.0, 50.0]], [2], anchors, num_classes=3)
    """
    gt_boxes = ops.cast(ops.convert_to_tensor(gt_boxes), "float32")
    gt_classes = ops.cast(ops.convert_to_tensor(gt_classes), "int32")
    anchors = ops.cast(ops.convert_to_tensor(anchors), "float32")

    # A sentinel padding row makes M >= 1, so max/argmax over the box axis never see an empty axis.
    batch_shape = ops.shape(gt_classes)[:-1]
    gt_boxes = ops.concatenate([gt_boxes, ops.zeros((*batch_shape, 1, 4), "float32")], axis=-2)
    gt_classes = ops.concatenate([gt_classes, -ops.ones((*batch_shape, 1), "int32")], axis=-1)
    num_rows = ops.shape(gt_classes)[-1]
    num_anchors = ops.shape(anchors)[0]

    valid = gt_classes >= 0  # [..., M]
    iou = iou_matrix(anchors, gt_boxes)  # [..., N, M]
    iou = ops.where(valid[..., None, :], iou, -1.0)

    # Threshold matches: each anchor's best real box.
    best_gt = ops.cast(ops.argmax(iou, axis=-1), "int32")  # [..., N]
    threshold_match = ops.max(iou, axis=-1) >= iou_threshold

    # Force matches: each real box's best anchor; the highest box index wins a shared anchor.
    best_anchor = ops.cast(ops.argmax(iou, axis=-2), "int32")  # [..., M]
    can_force = ops.logical_and(valid, ops.max(iou, axis=-2) > 0.0)
    anchor_ids = ops.arange(num_anchors, dtype="int32")[:, None]  # [N, 1]
    forced = ops.logical_and(anchor_ids == best_anchor[..., None, :], can_force[..., None, :])
    row_ids = ops.arange(num_rows, dtype="int32")
    forced_gt = ops.max(ops.where(forced, row_ids, -1), axis=-1)  # [..., N], -1 if none

    is_forced = forced_gt >= 0
    positive = ops.logical_or(threshold_match, is_forced)
    matched = ops.where(is_forced, forced_gt, best_gt)

    mask = ops.cast(positive, "float32")
    matched_boxes = ops.take_along_axis(gt_boxes, matched[..., None], axis=-2)  # [..., N, 4]
    matched_classes = ops.take_along_axis(gt_classes, matched, axis=-1)  # [..., N]

    box_targets = encode_boxes(matched_boxes, anchors) * mask[..., None]
    class_targets = ops.one_hot(ops.maximum(matched_classes, 0), num_classes) * mask[..., None]
    return MatchResult(
        class_targets=class_targets,
        box_targets=box_targets,
        positive_mask=mask,
        num_positives=ops.sum(mask, axis=-1),
        matched_gt=ops.where(positive, matched, -1),
    )


def assign_targets_numpy(gt_boxes: np.ndarray, gt_classes: np.ndarray, anchors: np.ndarray,
                         num_classes: int, iou_threshold: float = 0.5) -> MatchResult:
    """:func:`assign_targets` with numpy inputs and outputs (for notebooks and tests).

    Example::

        match = assign_targets_numpy(np.array([[10, 10, 60, 50]]), np.array([2]), anchors, 3)
        int(match.num_positives)  # at least 1 (the best anchor is always matched)
    """
    result = assign_targets(gt_boxes, gt_classes, anchors, num_classes, iou_threshold)
    return MatchResult(*(keras.ops.convert_to_numpy(t) for t in result))
