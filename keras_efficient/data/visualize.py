"""Draw boxes with labels and scores onto an image, for humans."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from keras_efficient.files import atomic_path

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128)]

LEGIBLE_SIZE = 640
"""The long side (pixels) that ``keras-efficient detect`` and the demo draw at, at least."""


def draw_detections(image: np.ndarray, boxes: np.ndarray, classes: Sequence[int],
                    scores: Sequence[float], labels: Sequence[str] | None = None,
                    path: str | os.PathLike[str] | None = None, *,
                    min_size: int | None = None) -> np.ndarray:
    """Draw (ymin, xmin, ymax, xmax) pixel boxes; write a PNG to ``path`` if given.

    ``min_size``: upscale an image whose long side is shorter than this first (boxes follow),
    so that labels on small images stay legible; the label font and line width scale with the
    drawn size. Returns the drawn image as uint8 ``[H', W', 3]`` (``[H, W, 3]`` unless upscaled).

    Example::

        [found] = predict(inference, [image])
        draw_detections(image, found["boxes"], found["classes"], found["scores"],
                        labels=class_names, path="detections.png", min_size=LEGIBLE_SIZE)
    """
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.fromarray(np.clip(image, 0, 255).astype("uint8"))
    boxes = np.asarray(boxes, "float32").reshape(-1, 4)
    long_side = max(canvas.size)
    if min_size is not None and long_side < min_size:
        factor = min_size / long_side
        canvas = canvas.resize((round(canvas.width * factor), round(canvas.height * factor)),
                               Image.Resampling.BILINEAR)
        boxes = boxes * factor
        long_side = max(canvas.size)
    font_size = max(10, round(long_side / 40))
    font = ImageFont.load_default(size=font_size)
    line = max(2, round(long_side / 320))
    draw = ImageDraw.Draw(canvas)
    for box, cls, score in zip(boxes, classes, scores, strict=True):
        colour = PALETTE[int(cls) % len(PALETTE)]
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        draw.rectangle((xmin, ymin, xmax, ymax), outline=colour, width=line)
        name = labels[int(cls)] if labels is not None and int(cls) < len(labels) else str(cls)
        text = f"{name} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        height = bottom - top + 2 * line
        y = ymin - height if ymin - height >= 0 else ymin
        draw.rectangle((xmin, y, xmin + right - left + 2 * line, y + height), fill=colour)
        draw.text((xmin + line, y + line - top), text, fill=(0, 0, 0), font=font)
    if path is not None:
        with atomic_path(path) as temporary:
            canvas.save(temporary, format="PNG")
    return np.asarray(canvas)
