"""A Keras model that trains a detector with the reference loss and weight decay."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from keras_efficient.detection.losses import FocalLoss, detection_loss


def conv_kernels(model: keras.Model) -> list[Any]:
    """The trainable convolution and dense kernels (L2 decay applies to these only).

    Example::

        decay = 4e-5 * 0.5 * sum(float(keras.ops.sum(k**2)) for k in conv_kernels(detector))
    """
    kernels = []
    for weight in model.trainable_weights:
        name = weight.path.rsplit("/", 1)[-1]
        if name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            kernels.append(weight)
    return kernels


class DetectionTrainer(keras.Model):
    """Wraps a raw detector: ``fit`` on ``(images, targets)`` with focal + Huber (+ GIoU) loss.

    The loss terms are reported as metrics (``class_loss``, ``box_loss``); L2 weight decay
    (``weight_decay`` × Σ‖w‖²/2 over conv kernels, the reference's form) is added to the loss.
    Save the wrapped ``detector``'s weights for inference; the trainer adds no weights.

    Under a ``tf.distribute`` strategy with several replicas the loss keeps global-batch
    semantics: the normaliser (positive anchors + 1) is summed over all replicas, and each
    replica returns its share of the global loss (its terms over the global normaliser, plus
    1/replicas of the decay), so the all-reduced (summed) gradient is the gradient of the loss
    of one batch of the global size. The reported losses are those of the global batch.

    Example::

        trainer = DetectionTrainer(EfficientDet("lite0", num_classes=3))
        trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        trainer.fit(with_targets(batches, anchors, 3), epochs=1, steps_per_epoch=10)
        trainer.detector.save_weights("detector.weights.h5")
    """

    def __init__(self, detector: keras.Model, *, weight_decay: float = 4e-5,
                 box_weight: float = 50.0, huber_delta: float = 0.1, alpha: float = 0.25,
                 gamma: float = 1.5, label_smoothing: float = 0.0, iou_weight: float = 0.0,
                 anchors: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.detector = detector
        self.weight_decay = weight_decay
        self.box_weight = box_weight
        self.huber_delta = huber_delta
        self.iou_weight = iou_weight
        self.anchors = anchors
        self.focal = FocalLoss(alpha=alpha, gamma=gamma, label_smoothing=label_smoothing)
        self.class_loss_tracker = keras.metrics.Mean(name="class_loss")
        self.box_loss_tracker = keras.metrics.Mean(name="box_loss")
        self._kernels = conv_kernels(detector)
        self.built = True  # all weights belong to the already-built detector

    def call(self, images: Any, training: bool = False) -> Any:
        return self.detector(images, training=training)

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                     sample_weight: Any = None, training: bool = True) -> Any:
        terms = detection_loss(y, y_pred, focal=self.focal, box_weight=self.box_weight,
                               huber_delta=self.huber_delta, iou_weight=self.iou_weight,
                               anchors=self.anchors)
        replicas, share = 1, 1.0
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            replicas = context.num_replicas_in_sync
            local = ops.sum(ops.cast(y["positive_mask"], "float32")) + 1.0
            total = context.all_reduce(tf.distribute.ReduceOp.SUM, local - 1.0) + 1.0
            share = local / total
        # Keras reports replicas x a replica's value, averaged over replicas: the global value.
        self.class_loss_tracker.update_state(terms["class_loss"] * share * replicas)
        self.box_loss_tracker.update_state(terms["box_loss"] * share * replicas)
        loss = terms["loss"] * share
        if self.weight_decay:
            decay = ops.sum(ops.stack([ops.sum(ops.square(ops.cast(k, "float32")))
                                       for k in self._kernels]))
            loss = loss + self.weight_decay * 0.5 * decay / replicas
        return loss

    @property
    def metrics(self) -> list[Any]:
        return [*super().metrics, self.class_loss_tracker, self.box_loss_tracker]
