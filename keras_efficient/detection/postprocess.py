"""Inference post-processing: scores, box decoding, NMS, mapping back to the original image.

REFERENCE §2.7. Two Keras layers over the flattened head outputs (class logits ``[B, N, C]``,
box regressions ``[B, N, 4]``, anchor order of :func:`~keras_efficient.detection.anchors.
generate_anchors`):

* :class:`DetectionDecoder` — sigmoid scores and decoded, clipped boxes for every anchor (for
  exports that run their own NMS, such as the TFLite detection post-process op);
* :class:`NonMaxSuppression` — the full pipeline to a fixed number of detections.

Both rebuild their anchors from the anchor arguments in ``__init__`` (the anchors are a constant,
never a weight), so their config is a handful of numbers and they round-trip through ``.keras``
files with ``safe_mode=True``. The NMS itself needs TensorFlow (the only TF import of the detection
package, local to where it is used); everything else is ``keras.ops``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.detection.anchors import generate_anchors
from keras_efficient.detection.box_coding import array_module, clip_boxes, decode_boxes

ops = keras.ops

NMS_METHODS = ("hard", "soft")


class _AnchoredLayer(keras.layers.Layer):
    """Shared anchor arguments, anchor constant and input checks of the post-processing layers."""

    def __init__(self, image_size: int | Sequence[int], min_level: int = 3, max_level: int = 7,
                 num_scales: int = 3, aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5),
                 anchor_scale: float = 4.0, **kwargs: Any) -> None:
        # Scores and pixel boxes stay float32 under a mixed-precision global policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.anchor_spec = AnchorSpec(image_size=(int(size[0]), int(size[1])),
                                      min_level=min_level, max_level=max_level,
                                      num_scales=num_scales, aspect_ratios=tuple(aspect_ratios),
                                      anchor_scale=anchor_scale)
        self.anchors = generate_anchors(self.anchor_spec)  # float32 [N, 4], numpy

    @classmethod
    def from_anchor_spec(cls, spec: AnchorSpec, **kwargs: Any) -> Any:
        """Build the layer from an :class:`AnchorSpec` (other arguments as keywords)."""
        return cls(image_size=spec.image_size, min_level=spec.min_level, max_level=spec.max_level,
                   num_scales=spec.num_scales, aspect_ratios=spec.aspect_ratios,
                   anchor_scale=spec.anchor_scale, **kwargs)

    def _check_inputs(self, class_logits: Any, box_regressions: Any) -> None:
        num_anchors = self.anchor_spec.num_anchors
        for name, tensor, last in (("class_logits", class_logits, None),
                                   ("box_regressions", box_regressions, 4)):
            shape = tuple(tensor.shape)
            if len(shape) != 3 or shape[1] not in (None, num_anchors) or (
                    last is not None and shape[2] not in (None, last)):
                expected = f"[batch, {num_anchors}, {last or 'num_classes'}]"
                raise ValueError(f"{self.name}: {name} must be {expected} for "
                                 f"{self.anchor_spec}, got {shape}.")

    def _decode(self, box_regressions: Any, anchors: Any) -> Any:
        """Decode and clip to the input image."""
        height, width = self.anchor_spec.image_size
        return clip_boxes(decode_boxes(box_regressions, anchors), float(height), float(width))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        spec = self.anchor_spec
        config.update(image_size=list(spec.image_size), min_level=spec.min_level,
                      max_level=spec.max_level, num_scales=spec.num_scales,
                      aspect_ratios=list(spec.aspect_ratios), anchor_scale=spec.anchor_scale)
        return config


@keras.saving.register_keras_serializable(package="keras_efficient")
class DetectionDecoder(_AnchoredLayer):
    """Per-anchor sigmoid scores and decoded boxes, no NMS.

    Call with ``(class_logits [B, N, C], box_regressions [B, N, 4])``; returns
    ``(boxes [B, N, 4], scores [B, N, C])``, boxes (ymin, xmin, ymax, xmax) in input pixels
    clipped to the image.

    Example::

        decoder = DetectionDecoder.from_anchor_spec(spec.anchor_spec())
        boxes, scores = decoder(outputs["class_logits"], outputs["box_regression"])
    """

    def call(self, class_logits: Any, box_regressions: Any) -> tuple[Any, Any]:
        self._check_inputs(class_logits, box_regressions)
        scores = ops.sigmoid(ops.cast(class_logits, "float32"))
        anchors = ops.convert_to_tensor(self.anchors)
        boxes = self._decode(ops.cast(box_regressions, "float32"), anchors)
        return boxes, scores

    def compute_output_spec(self, class_logits: Any, box_regressions: Any) -> tuple[Any, Any]:
        self._check_inputs(class_logits, box_regressions)
        batch, num_anchors, num_classes = class_logits.shape
        return (keras.KerasTensor((batch, num_anchors, 4), dtype="float32"),
                keras.KerasTensor((batch, num_anchors, num_classes), dtype="float32"))


@keras.saving.register_keras_serializable(package="keras_efficient")
class NonMaxSuppression(_AnchoredLayer):
    """Sigmoid → pre-NMS top-k → decode → clip → NMS → fixed-size detections.

    Call with ``(class_logits [B, N, C], box_regressions [B, N, 4])``; returns
    ``(boxes [B, D, 4], scores [B, D], classes [B, D] int32, num_detections [B] int32)`` with
    ``D = max_detections``, sorted by descending score. Boxes are (ymin, xmin, ymax, xmax) in
    input pixels, clipped to the image; rows past ``num_detections`` are zeros (class 0, like
    ``tf.image.combined_non_max_suppression`` and the TFLite op), so always use the count.

    Args:
      image_size, min_level, max_level, num_scales, aspect_ratios, anchor_scale: the anchors
        (see :class:`~keras_efficient.configs.anchors.AnchorSpec`).
      max_detections: ``D``, detections per image (reference 100).
      pre_nms_top_k: candidates kept before NMS (reference 5000); ``None`` or 0 keeps all.
      iou_threshold: hard-NMS overlap threshold. ``None`` means 0.5 for ``"hard"`` and 1.0 for
        ``"soft"`` (pure Gaussian decay, as the reference); for soft-NMS a value below 1 also
        removes boxes above that IoU outright (TensorFlow's semantics).
      score_threshold: candidates (after soft-NMS decay, for ``"soft"``) scoring at or below it
        are dropped.
      method: ``"hard"`` (greedy NMS) or ``"soft"`` (Gaussian soft-NMS: a box's score is
        multiplied by ``exp(−IoU² / (2σ))`` for each higher-scoring selected box).
      soft_nms_sigma: σ of soft-NMS (reference 0.5); ignored for ``"hard"``.
      class_aware: ``True``: candidates are the top (anchor, class) pairs and NMS runs per class
        (evaluation, REFERENCE §2.7); ``False``: each anchor keeps its best class and NMS ignores
        classes (serving).

    Per-class NMS runs as one NMS over boxes shifted by ``class × (max(H, W) + 1)`` pixels, which
    never lets two classes overlap (TensorFlow's ``NonMaxSuppressionV5``, the op behind
    ``tf.image.non_max_suppression_with_scores``, one image at a time with static padded output).

    Example::

        nms = NonMaxSuppression.from_anchor_spec(spec.anchor_spec(), class_aware=False,
                                                 score_threshold=0.3)
        boxes, scores, classes, count = nms(outputs["class_logits"], outputs["box_regression"])
    """

    def __init__(self, image_size: int | Sequence[int], min_level: int = 3, max_level: int = 7,
                 num_scales: int = 3, aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5),
                 anchor_scale: float = 4.0, max_detections: int = 100,
                 pre_nms_top_k: int | None = 5000, iou_threshold: float | None = None,
                 score_threshold: float = 0.001, method: str = "hard",
                 soft_nms_sigma: float = 0.5, class_aware: bool = True, **kwargs: Any) -> None:
        super().__init__(image_size, min_level=min_level, max_level=max_level,
                         num_scales=num_scales, aspect_ratios=aspect_ratios,
                         anchor_scale=anchor_scale, **kwargs)
        if method not in NMS_METHODS:
            raise ValueError(f"method must be one of {NMS_METHODS}, got {method!r}.")
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}.")
        if method == "soft" and soft_nms_sigma <= 0:
            raise ValueError(f"soft_nms_sigma must be > 0 for soft-NMS, got {soft_nms_sigma}.")
        self.max_detections = int(max_detections)
        self.pre_nms_top_k = int(pre_nms_top_k) if pre_nms_top_k else None
        self.iou_threshold = None if iou_threshold is None else float(iou_threshold)
        self.score_threshold = float(score_threshold)
        self.method = method
        self.soft_nms_sigma = float(soft_nms_sigma)
        self.class_aware = bool(class_aware)

    @property
    def effective_iou_threshold(self) -> float:
        if self.iou_threshold is not None:
            return self.iou_threshold
        return 1.0 if self.method == "soft" else 0.5

    def _candidates(self, logits: Any) -> tuple[Any, Any, Any]:
        """(anchor index, class, score) of the pre-NMS candidates, each ``[B, K]``.

        Selection runs on logits (the sigmoid is monotonic), so the sigmoid is computed for
        the K candidates only. For class-aware top-k, the anchors are first narrowed to the K
        with the highest best-class logit: every pair of the global top K belongs to one of
        them, so the result is exact while the final top-k sorts K × C values, not N × C.
        """
        num_anchors, num_classes = logits.shape[1], logits.shape[2]
        k = self.pre_nms_top_k
        if not self.class_aware:
            best_logit = ops.max(logits, axis=-1)
            best_class = ops.cast(ops.argmax(logits, axis=-1), "int32")
            if k is None or k >= num_anchors:
                index = ops.broadcast_to(ops.arange(num_anchors, dtype="int32"),
                                         ops.shape(best_logit))
                values = best_logit
            else:
                values, index = ops.top_k(best_logit, k, sorted=True)
                index = ops.cast(index, "int32")
            classes = ops.take_along_axis(best_class, index, axis=-1)
            return index, classes, ops.sigmoid(values)
        if k is None or k >= num_anchors * num_classes:
            flat = ops.reshape(logits, (-1, num_anchors * num_classes))
            index = ops.broadcast_to(ops.arange(num_anchors * num_classes, dtype="int32"),
                                     ops.shape(flat))
            return index // num_classes, index % num_classes, ops.sigmoid(flat)
        if k < num_anchors:
            _, subset = ops.top_k(ops.max(logits, axis=-1), k, sorted=False)
            subset = ops.cast(subset, "int32")
            logits = ops.take_along_axis(logits, subset[..., None], axis=1)
        else:
            subset = None
        width = logits.shape[1]
        values, index = ops.top_k(ops.reshape(logits, (-1, width * num_classes)), k, sorted=True)
        index = ops.cast(index, "int32")
        anchors = index // num_classes
        if subset is not None:
            anchors = ops.take_along_axis(subset, anchors, axis=-1)
        return anchors, index % num_classes, ops.sigmoid(values)

    def _nms(self, boxes: Any, scores: Any) -> tuple[Any, Any, Any]:
        """Batched NMS with static output: indices ``[B, D]``, scores ``[B, D]``, count ``[B]``."""
        import tensorflow as tf

        max_out = self.max_detections
        iou = self.effective_iou_threshold
        sigma = self.soft_nms_sigma if self.method == "soft" else 0.0

        def one_image(args: tuple[Any, Any]) -> tuple[Any, Any, Any]:
            image_boxes, image_scores = args
            result = tf.raw_ops.NonMaxSuppressionV5(
                boxes=image_boxes, scores=image_scores, max_output_size=max_out,
                iou_threshold=iou, score_threshold=self.score_threshold, soft_nms_sigma=sigma,
                pad_to_max_output_size=True)
            return tuple(result)

        signature = (tf.TensorSpec([max_out], tf.int32), tf.TensorSpec([max_out], tf.float32),
                     tf.TensorSpec([], tf.int32))
        return tf.map_fn(one_image, (boxes, scores), fn_output_signature=signature)

    def call(self, class_logits: Any, box_regressions: Any) -> tuple[Any, Any, Any, Any]:
        self._check_inputs(class_logits, box_regressions)
        anchor_index, classes, cand_scores = self._candidates(ops.cast(class_logits, "float32"))

        regressions = ops.take_along_axis(ops.cast(box_regressions, "float32"),
                                          anchor_index[..., None], axis=1)
        anchors = ops.take(ops.convert_to_tensor(self.anchors), anchor_index, axis=0)
        boxes = self._decode(regressions, anchors)  # [B, K, 4]

        nms_boxes = boxes
        if self.class_aware:
            offset = float(max(self.anchor_spec.image_size) + 1)
            nms_boxes = boxes + ops.cast(classes, "float32")[..., None] * offset
        selected, nms_scores, count = self._nms(nms_boxes, cand_scores)

        valid = ops.arange(self.max_detections, dtype="int32")[None, :] < count[:, None]
        out_boxes = ops.take_along_axis(boxes, selected[..., None], axis=1)
        out_boxes = ops.where(valid[..., None], out_boxes, 0.0)
        out_scores = ops.where(valid, nms_scores, 0.0)
        out_classes = ops.where(valid, ops.take_along_axis(classes, selected, axis=1), 0)
        return out_boxes, out_scores, ops.cast(out_classes, "int32"), ops.cast(count, "int32")

    def compute_output_spec(self, class_logits: Any, box_regressions: Any
                            ) -> tuple[Any, Any, Any, Any]:
        self._check_inputs(class_logits, box_regressions)
        batch, size = class_logits.shape[0], self.max_detections
        return (keras.KerasTensor((batch, size, 4), dtype="float32"),
                keras.KerasTensor((batch, size), dtype="float32"),
                keras.KerasTensor((batch, size), dtype="int32"),
                keras.KerasTensor((batch,), dtype="int32"))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(max_detections=self.max_detections, pre_nms_top_k=self.pre_nms_top_k,
                      iou_threshold=self.iou_threshold, score_threshold=self.score_threshold,
                      method=self.method, soft_nms_sigma=self.soft_nms_sigma,
                      class_aware=self.class_aware)
        return config


def map_boxes_to_original(boxes: Any, scale: Any, original_size: Any,
                          pad_offsets: Any = None) -> Any:
    """Map boxes from network-input pixels back to original-image pixels.

    Inverse of "resize keeping aspect by ``scale``, then pad": subtract the padding before the
    image (``pad_offsets`` = (top, left); ``None`` for the reference bottom/right padding), divide
    by ``scale`` (input pixels per original pixel, e.g. ``input_size / max(orig_h, orig_w)``) and
    clip to the original image.

    Args:
      boxes: ``[..., K, 4]`` (ymin, xmin, ymax, xmax).
      scale: one number per image, shape ``boxes.shape[:-2]`` (or a scalar).
      original_size: ``[..., 2]`` (height, width) per image, or one ``(height, width)``.
      pad_offsets: ``[..., 2]`` (top, left), or one pair, or ``None``.

    Works on numpy arrays (returns numpy) and tensors (``keras.ops``), like the box coding.

    Example::

        padded, scale = resize_and_pad(image, (320, 320))
        original = map_boxes_to_original(boxes, scale, image.shape[:2])
    """
    xp = array_module(boxes, scale, original_size, *(() if pad_offsets is None else (pad_offsets,)))
    cast = ((lambda a: np.asarray(a, np.float32)) if xp is np
            else (lambda a: ops.cast(ops.convert_to_tensor(a), "float32")))
    boxes, scale, original_size = cast(boxes), cast(scale), cast(original_size)
    if pad_offsets is not None:
        offsets = cast(pad_offsets)
        boxes = boxes - xp.concatenate([offsets, offsets], axis=-1)[..., None, :]
    boxes = boxes / scale[..., None, None]
    return clip_boxes(boxes, original_size[..., 0:1], original_size[..., 1:2])
