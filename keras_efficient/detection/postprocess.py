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

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.detection.anchors import generate_anchors
from keras_efficient.detection.box_coding import (
    array_module,
    clip_boxes,
    decode_boxes,
    decode_center_size,
)

ops = keras.ops

NMS_METHODS = ("hard", "soft")
#: automl's two post-processing modes (REFERENCE §2.7).
MODES = ("per_class", "global")
#: Where boxes are clipped to the network input.
CLIP_CHOICES = ("before_nms", "after_nms", "none")
#: automl's choice: ``postprocess_global`` clips after NMS, ``postprocess_per_class`` never.
AUTOML_CLIP = {"global": "after_nms", "per_class": "none"}


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


def resolve_mode(mode: str | None = None, class_aware: bool | None = None) -> str:
    """The post-processing mode from ``mode`` or the older ``class_aware`` flag.

    ``class_aware=True`` is ``"per_class"``, ``False`` is ``"global"``; neither given is
    ``"per_class"`` (the evaluation mode). Both given must agree.

    Example::

        resolve_mode(class_aware=False)  # "global"
    """
    from_flag = None if class_aware is None else ("per_class" if class_aware else "global")
    if mode is None:
        return from_flag or "per_class"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; received {mode!r}.")
    if from_flag is not None and from_flag != mode:
        raise ValueError(f"mode={mode!r} contradicts class_aware={class_aware}; give one.")
    return mode


def select_candidates(logits: Any, pre_nms_top_k: int | None) -> tuple[Any, Any, Any]:
    """automl's pre-NMS selection (``topk_class_boxes``): ``(anchor index, class, logit)``,
    each ``[B, K]``, from class logits (or scores: only their order matters) ``[B, N, C]``.

    ``pre_nms_top_k`` falsy (automl's ``max_nms_inputs = 0``, serving): every anchor with its
    best class (the first on ties), ``K = N``. ``K > 0`` (automl's evaluation uses 5,000): the
    top ``K`` (anchor, class) pairs of all ``N × C``, so an anchor may enter with several
    classes; all pairs when ``K >= N × C``. The top-k first narrows the anchors to the ``K``
    with the highest best-class value (every pair of the global top ``K`` belongs to one of
    them), so it sorts ``K × C`` values, not ``N × C``.

    Example::

        index, classes, logits = select_candidates(outputs["class_logits"], 5000)
    """
    num_anchors, num_classes = int(logits.shape[1]), int(logits.shape[2])
    k = int(pre_nms_top_k) if pre_nms_top_k else 0
    if k <= 0:
        index = ops.broadcast_to(ops.arange(num_anchors, dtype="int32"),
                                 ops.shape(logits)[:2])
        return (index, ops.cast(ops.argmax(logits, axis=-1), "int32"),
                ops.max(logits, axis=-1))
    if k >= num_anchors * num_classes:
        flat = ops.reshape(logits, (-1, num_anchors * num_classes))
        index = ops.broadcast_to(ops.arange(num_anchors * num_classes, dtype="int32"),
                                 ops.shape(flat))
        return index // num_classes, index % num_classes, flat
    subset = None
    if k < num_anchors:
        _, subset = ops.top_k(ops.max(logits, axis=-1), k, sorted=False)
        subset = ops.cast(subset, "int32")
        logits = ops.take_along_axis(logits, subset[..., None], axis=1)
    width = int(logits.shape[1])
    values, index = ops.top_k(ops.reshape(logits, (-1, width * num_classes)), k, sorted=True)
    index = ops.cast(index, "int32")
    anchors = index // num_classes
    if subset is not None:
        anchors = ops.take_along_axis(subset, anchors, axis=-1)
    return anchors, index % num_classes, values


@dataclasses.dataclass(frozen=True)
class NmsSettings:
    """One NMS call's settings, as automl's ``nms`` resolves its ``nms_configs``.

    ``method="hard"``: greedy NMS at ``iou_threshold``. ``"soft"`` (automl's ``"gaussian"``):
    a candidate's score is multiplied by ``exp(−IoU² / sigma)`` for each higher-scoring kept
    box (TensorFlow's ``soft_nms_sigma`` is twice the paper's sigma, so it is given
    ``sigma / 2`` as in automl, tensorflow#40253; TensorFlow ignores ``iou_threshold`` then).
    Candidates scoring at or below ``score_threshold`` (after decay) are dropped; automl's hard
    NMS uses ``-inf``, its soft NMS 0.001.

    Example::

        NmsSettings(method="soft", sigma=0.5, iou_threshold=0.5, score_threshold=0.001)
    """

    max_detections: int = 100
    method: str = "hard"
    iou_threshold: float = 0.5
    score_threshold: float = 0.001
    sigma: float = 0.5

    @property
    def tf_soft_nms_sigma(self) -> float:
        """What ``NonMaxSuppressionV5`` receives: 0 (hard), else ``sigma / 2``."""
        return self.sigma / 2.0 if self.method == "soft" else 0.0


def _nms_one(tf: Any, boxes: Any, scores: Any, settings: NmsSettings) -> tuple[Any, Any, Any]:
    """``NonMaxSuppressionV5`` on one image: indices, scores (padded to ``max_detections``) and
    the count."""
    selected, kept, count = tf.raw_ops.NonMaxSuppressionV5(
        boxes=boxes, scores=scores, max_output_size=settings.max_detections,
        iou_threshold=settings.iou_threshold, score_threshold=settings.score_threshold,
        soft_nms_sigma=settings.tf_soft_nms_sigma, pad_to_max_output_size=True)
    return selected, kept, count


def _global_one_image(tf: Any, boxes: Any, scores: Any, classes: Any, settings: NmsSettings
                      ) -> tuple[Any, Any, Any, Any]:
    """:func:`nms_global` for one image (``[K, 4]``, ``[K]``, ``[K]``), no loop over a batch."""
    selected, kept, count = _nms_one(tf, boxes, scores, settings)
    valid = tf.range(settings.max_detections) < count
    out_boxes = tf.where(valid[:, None], tf.gather(boxes, selected), 0.0)
    out_classes = tf.where(valid, tf.gather(classes, selected), tf.zeros_like(classes[:1]))
    return out_boxes, tf.where(valid, kept, 0.0), out_classes, count


def nms_global(boxes: Any, scores: Any, classes: Any, settings: NmsSettings
               ) -> tuple[Any, Any, Any, Any]:
    """automl's ``postprocess_global`` NMS: one class-agnostic NMS per image over the
    candidates (boxes ``[B, K, 4]``, scores ``[B, K]``, classes ``[B, K]``).

    Returns boxes ``[B, D, 4]``, scores ``[B, D]``, classes ``[B, D]`` int32 (rows past the
    count are 0) and the count ``[B]`` int32, ``D = settings.max_detections``.

    Example::

        boxes, scores, classes, count = nms_global(boxes, scores, classes, NmsSettings())
    """
    import tensorflow as tf

    size = settings.max_detections

    def one_image(args: tuple[Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
        return _global_one_image(tf, *args, settings)

    signature = (tf.TensorSpec([size, 4], tf.float32), tf.TensorSpec([size], tf.float32),
                 tf.TensorSpec([size], tf.int32), tf.TensorSpec([], tf.int32))
    return tuple(tf.map_fn(one_image, (tf.cast(boxes, tf.float32), tf.cast(scores, tf.float32),
                                       tf.cast(classes, tf.int32)),
                           fn_output_signature=signature))


def nms_per_class(boxes: Any, scores: Any, classes: Any, num_classes: int,
                  settings: NmsSettings) -> tuple[Any, Any, Any, Any]:
    """automl's ``postprocess_per_class`` NMS: for each class, NMS among the candidates of
    that class (up to ``D`` kept each), then the top ``D`` by score over all classes.

    Same inputs and outputs as :func:`nms_global`. Each class's NMS sees its candidates in
    their original order (the others masked to ``-inf``, which no threshold lets through), so
    ties resolve as in automl's gather-then-NMS.

    Example::

        boxes, scores, classes, count = nms_per_class(boxes, scores, classes, 90,
                                                      NmsSettings(method="soft"))
    """
    import tensorflow as tf

    size = settings.max_detections

    def one_image(args: tuple[Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
        image_boxes, image_scores, image_classes = args

        def one_class(cls: Any) -> tuple[Any, Any, Any]:
            masked = tf.where(tf.equal(image_classes, cls), image_scores, -np.inf)
            selected, kept, count = _nms_one(tf, image_boxes, masked, settings)
            return selected, tf.where(tf.range(size) < count, kept, -np.inf), count

        selected, kept, counts = tf.map_fn(
            one_class, tf.range(num_classes, dtype=tf.int32),
            fn_output_signature=(tf.TensorSpec([size], tf.int32),
                                 tf.TensorSpec([size], tf.float32),
                                 tf.TensorSpec([], tf.int32)))
        # Class-major, then NMS order: automl's concatenation; top_k keeps the first of ties.
        top, order = tf.math.top_k(tf.reshape(kept, [-1]), k=size, sorted=True)
        count = tf.minimum(tf.reduce_sum(counts), size)
        valid = tf.range(size) < count
        picked = tf.gather(tf.reshape(selected, [-1]), order)
        out_boxes = tf.where(valid[:, None], tf.gather(image_boxes, picked), 0.0)
        out_classes = tf.where(valid, order // size, 0)
        return out_boxes, tf.where(valid, top, 0.0), out_classes, count

    signature = (tf.TensorSpec([size, 4], tf.float32), tf.TensorSpec([size], tf.float32),
                 tf.TensorSpec([size], tf.int32), tf.TensorSpec([], tf.int32))
    return tuple(tf.map_fn(one_image, (tf.cast(boxes, tf.float32), tf.cast(scores, tf.float32),
                                       tf.cast(classes, tf.int32)),
                           fn_output_signature=signature))


@keras.saving.register_keras_serializable(package="keras_efficient")
class NonMaxSuppression(_AnchoredLayer):
    """Sigmoid → pre-NMS selection → decode → NMS → fixed-size detections, in one of automl's
    two modes (REFERENCE §2.7), reproduced exactly on the same head outputs.

    Call with ``(class_logits [B, N, C], box_regressions [B, N, 4])``; returns
    ``(boxes [B, D, 4], scores [B, D], classes [B, D] int32, num_detections [B] int32)`` with
    ``D = max_detections``, sorted by descending score. Boxes are (ymin, xmin, ymax, xmax) in
    input pixels; rows past ``num_detections`` are zeros (class 0, like
    ``tf.image.combined_non_max_suppression`` and the TFLite op), so always use the count.

    Modes:

    * ``"global"`` (automl's ``postprocess_global``, its serving default): candidates from
      :func:`select_candidates`, one class-agnostic NMS (:func:`nms_global`), boxes clipped to
      the input image *after* NMS.
    * ``"per_class"`` (automl's ``postprocess_per_class``, its evaluation): the same
      candidates, NMS separately per class, the top ``D`` over all classes
      (:func:`nms_per_class`); automl does not clip these boxes, and neither does this mode.

    Args:
      image_size, min_level, max_level, num_scales, aspect_ratios, anchor_scale: the anchors
        (see :class:`~keras_efficient.configs.anchors.AnchorSpec`).
      max_detections: ``D``, detections per image (automl: 100).
      pre_nms_top_k: automl's ``max_nms_inputs``: ``None``/0 keeps every anchor with its best
        class (automl's serving); ``K`` keeps the top ``K`` (anchor, class) pairs (automl's
        evaluation uses 5000).
      iou_threshold: ``None`` means 0.5 (automl's value; soft-NMS does not use it).
      score_threshold: candidates scoring at or below it (after soft-NMS decay) are dropped;
        automl uses 0.001 for soft and ``-inf`` for hard NMS.
      method: ``"hard"`` or ``"soft"`` (automl's ``"gaussian"``, its default): see
        :class:`NmsSettings`.
      soft_nms_sigma: the paper's sigma (automl: 0.5), given to TensorFlow halved.
      mode: ``"per_class"`` (default) or ``"global"``.
      class_aware: the older flag for ``mode``: ``True`` = ``"per_class"``, ``False`` =
        ``"global"``.
      clip: where boxes are clipped to the input image: ``None`` = automl's choice for the
        mode (``"after_nms"`` for global, ``"none"`` for per-class), or ``"before_nms"``
        (this package's behaviour before issue 10: changes which boxes NMS keeps),
        ``"after_nms"``, ``"none"``.

    Example::

        nms = NonMaxSuppression.from_anchor_spec(spec.anchor_spec(), mode="global",
                                                 method="soft", pre_nms_top_k=None)
        boxes, scores, classes, count = nms(outputs["class_logits"], outputs["box_regression"])
    """

    def __init__(self, image_size: int | Sequence[int], min_level: int = 3, max_level: int = 7,
                 num_scales: int = 3, aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5),
                 anchor_scale: float = 4.0, max_detections: int = 100,
                 pre_nms_top_k: int | None = 5000, iou_threshold: float | None = None,
                 score_threshold: float = 0.001, method: str = "hard",
                 soft_nms_sigma: float = 0.5, mode: str | None = None,
                 class_aware: bool | None = None, clip: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(image_size, min_level=min_level, max_level=max_level,
                         num_scales=num_scales, aspect_ratios=aspect_ratios,
                         anchor_scale=anchor_scale, **kwargs)
        if method not in NMS_METHODS:
            raise ValueError(f"method must be one of {NMS_METHODS}, got {method!r}.")
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}.")
        if method == "soft" and soft_nms_sigma <= 0:
            raise ValueError(f"soft_nms_sigma must be > 0 for soft-NMS, got {soft_nms_sigma}.")
        if clip is not None and clip not in CLIP_CHOICES:
            raise ValueError(f"clip must be None or one of {CLIP_CHOICES}, got {clip!r}.")
        self.mode = resolve_mode(mode, class_aware)
        self.max_detections = int(max_detections)
        self.pre_nms_top_k = int(pre_nms_top_k) if pre_nms_top_k else None
        self.iou_threshold = None if iou_threshold is None else float(iou_threshold)
        self.score_threshold = float(score_threshold)
        self.method = method
        self.soft_nms_sigma = float(soft_nms_sigma)
        self.clip = clip

    @property
    def class_aware(self) -> bool:
        """Whether NMS runs per class (``mode == "per_class"``)."""
        return self.mode == "per_class"

    @property
    def effective_iou_threshold(self) -> float:
        return 0.5 if self.iou_threshold is None else self.iou_threshold

    @property
    def effective_clip(self) -> str:
        return self.clip or AUTOML_CLIP[self.mode]

    @property
    def settings(self) -> NmsSettings:
        """The resolved :class:`NmsSettings`."""
        return NmsSettings(max_detections=self.max_detections, method=self.method,
                           iou_threshold=self.effective_iou_threshold,
                           score_threshold=self.score_threshold, sigma=self.soft_nms_sigma)

    def _clip(self, boxes: Any) -> Any:
        height, width = self.anchor_spec.image_size
        return clip_boxes(boxes, float(height), float(width))

    def call(self, class_logits: Any, box_regressions: Any) -> tuple[Any, Any, Any, Any]:
        self._check_inputs(class_logits, box_regressions)
        anchor_index, classes, values = select_candidates(ops.cast(class_logits, "float32"),
                                                          self.pre_nms_top_k)
        regressions = ops.take_along_axis(ops.cast(box_regressions, "float32"),
                                          anchor_index[..., None], axis=1)
        anchors = ops.take(ops.convert_to_tensor(self.anchors), anchor_index, axis=0)
        boxes = decode_boxes(regressions, anchors)  # [B, K, 4]
        clip = self.effective_clip
        if clip == "before_nms":
            boxes = self._clip(boxes)
        scores = ops.sigmoid(values)
        if self.mode == "global":
            out = nms_global(boxes, scores, classes, self.settings)
        else:
            out = nms_per_class(boxes, scores, classes, int(class_logits.shape[-1]),
                                self.settings)
        out_boxes, out_scores, out_classes, count = out
        if clip == "after_nms":
            out_boxes = self._clip(out_boxes)  # padding rows stay 0
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
                      method=self.method, soft_nms_sigma=self.soft_nms_sigma, mode=self.mode,
                      clip=self.clip)
        return config


def map_boxes_to_original(boxes: Any, scale: Any, original_size: Any,
                          pad_offsets: Any = None, clip: bool = True) -> Any:
    """Map boxes from network-input pixels back to original-image pixels.

    Inverse of "resize keeping aspect by ``scale``, then pad": subtract the padding before the
    image (``pad_offsets`` = (top, left); ``None`` for the reference bottom/right padding) and
    multiply by ``1 / scale`` (automl's ``image_scale``, computed the same way, in float32).
    ``clip=True`` (this package's default) then clips to the original image; automl does not
    (``clip=False`` reproduces it: boxes may then reach past the image, by as much as the
    post-processing let them reach past the network input).

    Args:
      boxes: ``[..., K, 4]`` (ymin, xmin, ymax, xmax).
      scale: one number per image, shape ``boxes.shape[:-2]`` (or a scalar): input pixels per
        original pixel, e.g. ``input_size / max(orig_h, orig_w)``.
      original_size: ``[..., 2]`` (height, width) per image, or one ``(height, width)``.
      pad_offsets: ``[..., 2]`` (top, left), or one pair, or ``None``.
      clip: clip to the original image.

    Works on numpy arrays (returns numpy) and tensors (``keras.ops``), like the box coding.

    Example::

        padded, scale = resize_and_pad(image, (320, 320), pad_value=detector.pad_value)
        original = map_boxes_to_original(boxes, scale, image.shape[:2])
    """
    xp = array_module(boxes, scale, original_size, *(() if pad_offsets is None else (pad_offsets,)))
    cast = ((lambda a: np.asarray(a, np.float32)) if xp is np
            else (lambda a: ops.cast(ops.convert_to_tensor(a), "float32")))
    boxes, scale, original_size = cast(boxes), cast(scale), cast(original_size)
    if pad_offsets is not None:
        offsets = cast(pad_offsets)
        boxes = boxes - xp.concatenate([offsets, offsets], axis=-1)[..., None, :]
    to_original = cast(1.0) / scale
    boxes = boxes * to_original[..., None, None]
    if not clip:
        return boxes
    return clip_boxes(boxes, original_size[..., 0:1], original_size[..., 1:2])


def map_stretched_boxes_to_original(boxes: Any, input_size: tuple[int, int], original_size: Any,
                                    clip: bool = True) -> Any:
    """Map boxes from network-input pixels back to the original image after a stretch (the
    whole image resized to ``input_size``, aspect not kept): each axis by its own factor,
    original size / input size; ``clip`` as :func:`map_boxes_to_original`.

    Example::

        original = map_stretched_boxes_to_original(boxes, (320, 320), image.shape[:2])
    """
    xp = array_module(boxes, original_size)
    cast = ((lambda a: np.asarray(a, np.float32)) if xp is np
            else (lambda a: ops.cast(ops.convert_to_tensor(a), "float32")))
    boxes, original_size = cast(boxes), cast(original_size)
    factors = original_size / cast([float(input_size[0]), float(input_size[1])])
    boxes = boxes * xp.concatenate([factors, factors], axis=-1)[..., None, :]
    if not clip:
        return boxes
    return clip_boxes(boxes, original_size[..., 0:1], original_size[..., 1:2])


# --------------------------------------------------------------------------- export endings
# The TFLite export (keras_efficient.export.detector_tflite) selects one of these; the
# "none" ending (raw box encodings and sigmoid scores) needs no code.

#: Per-level head outputs of the "network" ending, in the order of the flattened outputs.
NETWORK_KINDS = {"class": "class_logits", "box": "box_regression"}


def per_level_network(detector: keras.Model) -> keras.Model:
    """The detector's network up to its per-level head outputs, before they are flattened and
    concatenated: ``{"class_logits_p3": [B, H3, W3, A·C], ..., "box_regression_p3":
    [B, H3, W3, A·4], ...}`` (raw logits, no sigmoid), the "network" ending of the TFLite
    export, as automl's network-only export has it. Flattening each level to ``[B, −1, C]``
    and concatenating the levels in order gives the detector's own outputs.

    Example::

        network = per_level_network(EfficientDet("lite0"))
        sorted(network.output)  # ['box_regression_p3', ..., 'class_logits_p7']
    """
    return keras.Model(detector.inputs, per_level_outputs(detector),
                       name=f"{detector.name}_network")


def per_level_outputs(detector: keras.Model) -> dict[str, Any]:
    """The per-level head tensors of :func:`per_level_network`, class levels then box levels.

    Example::

        list(per_level_outputs(detector))  # ['class_logits_p3', ..., 'box_regression_p7']
    """
    outputs = {}
    for kind, name in NETWORK_KINDS.items():
        layers = sorted((int(layer.name.rsplit("_p", 1)[1]), layer) for layer in detector.layers
                        if layer.name.startswith(f"{kind}_net_flatten_p"))
        if not layers:
            raise ValueError(f"{detector.name} has no per-level {kind} head outputs (layers "
                             f"{kind}_net_flatten_p<level>): pass the model that "
                             "keras_efficient.EfficientDet returns.")
        outputs.update({f"{name}_p{level}": layer.input for level, layer in layers})
    return outputs


def flatten_network_outputs(outputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Class logits ``[B, N, C]`` and box regressions ``[B, N, 4]`` (the detector's own
    outputs) from the per-level outputs of :func:`per_level_network`, in its order.

    Example::

        logits, regressions = flatten_network_outputs(run(interpreter, image))
    """
    if len(outputs) % 2 or not outputs:
        raise ValueError(f"Expected class levels then as many box levels; received "
                         f"{len(outputs)} outputs.")
    half = len(outputs) // 2
    anchors_per_cell = int(outputs[half].shape[-1]) // 4
    classes = int(outputs[0].shape[-1]) // anchors_per_cell
    batch = int(outputs[0].shape[0])
    logits = np.concatenate([np.reshape(x, (batch, -1, classes)) for x in outputs[:half]], 1)
    boxes = np.concatenate([np.reshape(x, (batch, -1, 4)) for x in outputs[half:]], 1)
    return logits, boxes


#: The custom op Android's Task Library, MediaPipe and Coral's examples consume (REFERENCE §3.1).
TFLITE_CUSTOM_OP = "TFLite_Detection_PostProcess"


def tflite_custom_op_signature(num_classes: int, *, max_detections: int = 100,
                               score_threshold: float = 0.05, iou_threshold: float = 0.5) -> str:
    """The ``experimental_implements`` text that makes the converter emit the custom op: best
    class per anchor (``max_classes_per_detection`` 1), fast class-agnostic NMS (automl's
    ``postprocess_tflite``, "mathematically the same as postprocess_global" with hard NMS).

    Example::

        tflite_custom_op_signature(90)  # 'name: "TFLite_Detection_PostProcess" attr { ...'
    """
    attributes: dict[str, tuple[str, Any]] = {
        "max_detections": ("i", max_detections),
        "max_classes_per_detection": ("i", 1),
        "detections_per_class": ("i", max_detections),
        "use_regular_nms": ("b", "false"),
        "nms_score_threshold": ("f", score_threshold),
        "nms_iou_threshold": ("f", iou_threshold),
        "num_classes": ("i", num_classes),
        "y_scale": ("f", 1.0), "x_scale": ("f", 1.0), "h_scale": ("f", 1.0), "w_scale": ("f", 1.0),
    }
    parts = [f'name: "{TFLITE_CUSTOM_OP}"']
    parts += [f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}'
              for key, (kind, value) in attributes.items()]
    return " ".join(parts)


def tflite_detection_postprocess(encodings: Any, scores: Any, anchors: Any, *,
                                 max_detections: int = 100, score_threshold: float = 0.05,
                                 iou_threshold: float = 0.5, top_k: int = 0) -> dict[str, Any]:
    """The ``TFLite_Detection_PostProcess`` ending for a batch-1 export graph.

    ``encodings`` ``[1, N, 4]``, sigmoid ``scores`` ``[1, N, C]``, ``anchors`` ``[N, 4]``
    normalised (yc, xc, h, w). The body is a placeholder that the TFLite converter replaces by
    the custom op (it only runs there: in TensorFlow it returns zeros). ``top_k > 0`` first
    keeps the ``top_k`` anchors with the highest best-class score (a latency cap). Returns the
    op's four outputs by name: ``detection_boxes`` (clipped to [0, 1] after the op, as
    :func:`builtin_nms_detections` clips after NMS), ``detection_classes``,
    ``detection_scores``, ``num_detections``.

    Example::

        outputs = tflite_detection_postprocess(encodings, scores, export_anchors(detector))
    """
    import tensorflow as tf

    anchor_boxes = tf.constant(anchors)
    if 0 < top_k < int(anchor_boxes.shape[0]):
        _, index = tf.math.top_k(tf.reduce_max(scores[0], axis=-1), k=top_k)
        encodings = tf.gather(encodings, index, axis=1)
        scores = tf.gather(scores, index, axis=1)
        anchor_boxes = tf.gather(anchor_boxes, index)
    signature = tflite_custom_op_signature(int(scores.shape[-1]), max_detections=max_detections,
                                           score_threshold=score_threshold,
                                           iou_threshold=iou_threshold)

    @tf.function(experimental_implements=signature)
    def detection_postprocess(box_encodings: Any, class_scores: Any, anchor_boxes: Any) -> Any:
        # A placeholder body: the converter replaces the whole function by the custom op.
        del box_encodings, class_scores, anchor_boxes
        return tuple(tf.constant(0.0, name=name) for name in
                     ("boxes", "classes", "scores", "num_detections"))

    boxes, classes, out_scores, count = detection_postprocess(encodings, scores, anchor_boxes)
    # The op does not clip; consumers that do (MediaPipe shifts a box that crosses the top or
    # left edge instead) would otherwise each return other boxes.
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    return {"detection_boxes": boxes, "detection_classes": classes,
            "detection_scores": out_scores, "num_detections": count}


def builtin_nms_detections(encodings: Any, scores: Any, anchors: Any, *,
                           max_detections: int = 100, pre_nms_top_k: int | None = 1000,
                           iou_threshold: float = 0.5, score_threshold: float = 0.05
                           ) -> dict[str, Any]:
    """The TFLite-builtin ending (``NON_MAX_SUPPRESSION_V5``, no custom op) for a batch-1
    graph: automl's global mode with hard NMS on normalised boxes — :func:`select_candidates`
    (``pre_nms_top_k`` caps the candidates),
    :func:`~keras_efficient.detection.box_coding.decode_center_size`, the single-image
    :func:`nms_global`, then clip to [0, 1] after NMS.

    Same inputs as :func:`tflite_detection_postprocess`, same four outputs (classes and count
    as float, the custom op's types), rows past the count zero.

    Example::

        outputs = builtin_nms_detections(encodings, scores, export_anchors(detector))
    """
    import tensorflow as tf

    settings = NmsSettings(max_detections=max_detections, method="hard",
                           iou_threshold=iou_threshold, score_threshold=score_threshold)
    index, classes, values = select_candidates(scores, pre_nms_top_k)
    boxes = decode_center_size(tf.gather(encodings[0], index[0]),
                               tf.gather(tf.constant(anchors), index[0]))
    boxes, kept, classes, count = _global_one_image(tf, boxes, values[0], classes[0], settings)
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    return {"detection_boxes": boxes[None],
            "detection_classes": tf.cast(classes, tf.float32)[None],
            "detection_scores": kept[None],
            "num_detections": tf.cast(count, tf.float32)[None]}
