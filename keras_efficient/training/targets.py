"""Attach anchor targets to batches of the detection input pipeline (REFERENCE §2.5)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from keras_efficient.detection.matching import assign_targets


def with_targets(dataset: tf.data.Dataset, anchors: np.ndarray, num_classes: int,
                 iou_threshold: float = 0.5) -> tf.data.Dataset:
    """Map ``{"image", "boxes", "classes", ...}`` batches to ``(image, targets)`` pairs.

    Matching is vectorized over the batch (no Python loop over boxes) and runs inside the
    ``tf.data`` graph, in parallel with training.

    Example::

        anchors = generate_anchors(spec.anchor_spec())
        pairs = with_targets(detection_dataset(data, (320, 320), batch_size=8, training=True),
                             anchors, data.num_classes)  # (images, {"class_targets", ...})
    """
    anchor_tensor = tf.constant(anchors, tf.float32)

    def attach(batch: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        match = assign_targets(batch["boxes"], batch["classes"], anchor_tensor, num_classes,
                               iou_threshold)
        targets = {"class_targets": match.class_targets, "box_targets": match.box_targets,
                   "positive_mask": match.positive_mask}
        return batch["image"], targets

    return dataset.map(attach, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
