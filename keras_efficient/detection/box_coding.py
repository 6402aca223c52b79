"""Box coding (Faster R-CNN style, no scale factors), IoU and clipping (REFERENCE §2.5).

Every function here accepts numpy arrays or backend tensors. When all array inputs are numpy
(or Python numbers) the computation runs in numpy and returns float32 numpy arrays; otherwise it
runs in ``keras.ops`` and returns backend tensors, so the same function works eagerly, inside a
``tf.function``, a ``tf.data`` pipeline (TensorFlow backend) or a Keras layer. Boxes are
``[..., 4]`` (ymin, xmin, ymax, xmax); codes are ``[..., 4]`` (ty, tx, th, tw). Leading
dimensions broadcast, so batched boxes ``[B, N, 4]`` code against shared anchors ``[N, 4]``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import keras
import numpy as np

# Floor for box heights/widths under the logarithm, so degenerate (zero-size) boxes encode to a
# large negative finite number instead of -inf. Never changes a real box.
_MIN_SIZE = 1e-8


def array_module(*arrays: Any) -> ModuleType | Any:
    """``numpy`` when every input is host data (numpy, Python numbers), else ``keras.ops``.

    Both expose the same names used here (``log``, ``stack``, ``where`` …), so one code path
    serves host-side preprocessing and graphs.

    Example::

        array_module(np.zeros(4)) is np  # True; with a tensor argument: keras.ops
    """
    host = (np.ndarray, np.generic, int, float, list, tuple)
    if all(isinstance(a, host) for a in arrays):
        return np
    return keras.ops


def _prepare(xp: Any, *arrays: Any) -> list[Any]:
    if xp is np:
        return [np.asarray(a, dtype=np.float32) for a in arrays]
    return [keras.ops.cast(a, "float32") for a in arrays]


def _center_size(boxes: Any) -> tuple[Any, Any, Any, Any]:
    """(yc, xc, h, w) of corner boxes, each ``[...]``."""
    ymin, xmin, ymax, xmax = (boxes[..., i] for i in range(4))
    return (ymin + ymax) * 0.5, (xmin + xmax) * 0.5, ymax - ymin, xmax - xmin


def encode_boxes(boxes: Any, anchors: Any) -> Any:
    """Regression targets of ``boxes`` relative to ``anchors``.

    ``ty = (yc − yc_a)/h_a``, ``tx = (xc − xc_a)/w_a``, ``th = log(h/h_a)``, ``tw = log(w/w_a)``.
    Box sizes are floored at 1e-8 under the logarithm so a degenerate box gives a finite code.

    Example::

        codes = encode_boxes(gt_boxes, anchors)  # [N, 4] (ty, tx, th, tw)
    """
    xp = array_module(boxes, anchors)
    boxes, anchors = _prepare(xp, boxes, anchors)
    yc, xc, h, w = _center_size(boxes)
    yc_a, xc_a, h_a, w_a = _center_size(anchors)
    ty = (yc - yc_a) / h_a
    tx = (xc - xc_a) / w_a
    th = xp.log(xp.maximum(h, _MIN_SIZE) / h_a)
    tw = xp.log(xp.maximum(w, _MIN_SIZE) / w_a)
    return xp.stack([ty, tx, th, tw], axis=-1)


def decode_boxes(codes: Any, anchors: Any) -> Any:
    """Inverse of :func:`encode_boxes`: codes ``[..., 4]`` → corner boxes ``[..., 4]``.

    No clamping of ``th``/``tw`` (as in the reference): huge codes give huge boxes, which the
    post-processing clips to the image.

    Example::

        boxes = decode_boxes(outputs["box_regression"], anchors)  # [B, N, 4] input pixels
    """
    xp = array_module(codes, anchors)
    codes, anchors = _prepare(xp, codes, anchors)
    return _decode(xp, codes, *_center_size(anchors))


def decode_center_size(codes: Any, anchors: Any) -> Any:
    """:func:`decode_boxes` against anchors given as (yc, xc, h, w) rather than corners: the
    TFLite detection post-process op's anchor format (normalised for the export's anchors).

    Example::

        boxes = decode_center_size(encodings[0], normalized_center_size(anchors, (320, 320)))
    """
    xp = array_module(codes, anchors)
    codes, anchors = _prepare(xp, codes, anchors)
    return _decode(xp, codes, *(anchors[..., i] for i in range(4)))


def _decode(xp: Any, codes: Any, yc_a: Any, xc_a: Any, h_a: Any, w_a: Any) -> Any:
    yc = codes[..., 0] * h_a + yc_a
    xc = codes[..., 1] * w_a + xc_a
    half_h = xp.exp(codes[..., 2]) * h_a * 0.5
    half_w = xp.exp(codes[..., 3]) * w_a * 0.5
    return xp.stack([yc - half_h, xc - half_w, yc + half_h, xc + half_w], axis=-1)


def iou_matrix(boxes_a: Any, boxes_b: Any) -> Any:
    """Pairwise IoU: ``[..., N, 4]`` × ``[..., M, 4]`` → ``[..., N, M]``.

    Zero-area pairs (union 0) give IoU 0 rather than NaN.

    Example::

        iou_matrix([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10]])  # [[1.0, 0.333]]
    """
    xp = array_module(boxes_a, boxes_b)
    boxes_a, boxes_b = _prepare(xp, boxes_a, boxes_b)
    a = boxes_a[..., :, None, :]  # [..., N, 1, 4]
    b = boxes_b[..., None, :, :]  # [..., 1, M, 4]
    inter_h = xp.maximum(xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_w = xp.maximum(xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_h * inter_w
    area_a = xp.maximum(a[..., 2] - a[..., 0], 0.0) * xp.maximum(a[..., 3] - a[..., 1], 0.0)
    area_b = xp.maximum(b[..., 2] - b[..., 0], 0.0) * xp.maximum(b[..., 3] - b[..., 1], 0.0)
    union = area_a + area_b - inter
    return xp.where(union > 0, inter / xp.maximum(union, 1e-12), 0.0)


def clip_boxes(boxes: Any, height: Any, width: Any) -> Any:
    """Clip corner boxes ``[..., 4]`` to ``[0, height] × [0, width]``.

    ``height``/``width`` are scalars or arrays broadcastable to ``boxes[..., 0]`` (for example
    ``[B, 1]`` for per-image sizes of batched boxes ``[B, N, 4]``).

    Example::

        clip_boxes([[-5, 10, 50, 700]], 320, 640)  # [[0, 10, 50, 640]]
    """
    xp = array_module(boxes, height, width)
    boxes, height, width = _prepare(xp, boxes, height, width)
    limits = [height, width, height, width]
    return xp.stack(
        [xp.minimum(xp.maximum(boxes[..., i], 0.0), limits[i]) for i in range(4)], axis=-1)
