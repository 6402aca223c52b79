"""EfficientDet anchor boxes (REFERENCE §2.5), generated with numpy.

Anchors are a constant of the input size, so they are computed once on the host and baked into
graphs as constants. Order matches the flattened head outputs: level, row, column, anchor, with
anchor index ``num_ratios · octave + ratio index``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_efficient.configs.anchors import AnchorSpec


def _level_anchors(stride: tuple[float, float], grid: tuple[int, int],
                   heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Boxes ``[grid_h · grid_w · A, 4]`` of one level; ``heights``/``widths`` are per anchor."""
    cy = stride[0] / 2 + np.arange(grid[0], dtype=np.float64) * stride[0]
    cx = stride[1] / 2 + np.arange(grid[1], dtype=np.float64) * stride[1]
    cy = cy[:, None, None]  # [H, 1, 1]
    cx = cx[None, :, None]  # [1, W, 1]
    half_h = heights[None, None, :] / 2  # [1, 1, A]
    half_w = widths[None, None, :] / 2
    shape = (grid[0], grid[1], heights.size)
    boxes = np.stack(
        [np.broadcast_to(cy - half_h, shape), np.broadcast_to(cx - half_w, shape),
         np.broadcast_to(cy + half_h, shape), np.broadcast_to(cx + half_w, shape)],
        axis=-1,
    )
    return boxes.reshape(-1, 4)


def generate_anchors(spec: AnchorSpec) -> np.ndarray:
    """All anchors of ``spec`` as float32 ``[N, 4]`` (ymin, xmin, ymax, xmax) in input pixels.

    Per level, stride = image size / feature size (per axis, a float); for octave ``o`` and aspect
    ratio ``a``: base = anchor_scale · stride · 2^(o / num_scales), width = base·√a,
    height = base/√a, centred at stride/2 + k·stride. Boxes are not clipped to the image.
    Computed in float64 and rounded once, so values do not depend on the level count.

    Example::

        anchors = generate_anchors(get_efficientdet_spec("d0").anchor_spec())
        anchors.shape, anchors[0]  # (49104, 4), [-12, -12, 20, 20]
    """
    octaves = np.arange(spec.num_scales, dtype=np.float64) / spec.num_scales
    ratios = np.asarray(spec.aspect_ratios, dtype=np.float64)
    # Anchor index = octave · num_ratios + ratio index (octave-major).
    scale = (2.0 ** octaves)[:, None]  # [S, 1]
    sqrt_ratio = np.sqrt(ratios)[None, :]  # [1, R]
    per_level = []
    for (stride_y, stride_x), grid in zip(spec.strides(), spec.feature_sizes(), strict=True):
        heights = (spec.anchor_scale * stride_y * scale / sqrt_ratio).reshape(-1)
        widths = (spec.anchor_scale * stride_x * scale * sqrt_ratio).reshape(-1)
        per_level.append(_level_anchors((stride_y, stride_x), grid, heights, widths))
    return np.concatenate(per_level, axis=0).astype(np.float32)


def anchors_center_size(anchors: np.ndarray) -> np.ndarray:
    """Corner boxes ``[..., 4]`` (ymin, xmin, ymax, xmax) → ``[..., 4]`` (yc, xc, h, w).

    Example::

        anchors_center_size([[0, 0, 10, 20]])  # [[5, 10, 10, 20]] (yc, xc, h, w)
    """
    anchors = np.asarray(anchors, dtype=np.float32)
    ymin, xmin, ymax, xmax = np.moveaxis(anchors, -1, 0)
    return np.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], axis=-1)


def normalized_center_size(anchors: np.ndarray, image_size: int | Sequence[int]) -> np.ndarray:
    """Anchors in the form the TFLite ``TFLite_Detection_PostProcess`` op expects (REFERENCE §3.1).

    Returns float32 ``[N, 4]`` (yc, xc, h, w), each divided by the image height or width so
    that the op's outputs are normalised boxes. ``image_size`` is ``(height, width)`` or an int.

    Example::

        anchors = generate_anchors(spec.anchor_spec())
        normalized_center_size(anchors, spec.input_size)  # the custom op's anchors input
    """
    if isinstance(image_size, int):
        height, width = image_size, image_size
    else:
        height, width = (int(s) for s in image_size)
    scale = np.asarray([height, width, height, width], dtype=np.float32)
    return (anchors_center_size(anchors) / scale).astype(np.float32)
