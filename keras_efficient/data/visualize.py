"""Draw boxes with labels and scores onto an image, for humans."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128)]


def draw_detections(image: np.ndarray, boxes: np.ndarray, classes: Sequence[int],
                    scores: Sequence[float], labels: Sequence[str] | None = None,
                    path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Draw (ymin, xmin, ymax, xmax) pixel boxes; write a PNG to ``path`` if given.

    Returns the drawn image as uint8 ``[H, W, 3]``.

    Example::

        [found] = predict(inference, [image])
        draw_detections(image, found["boxes"], found["classes"], found["scores"],
                        labels=class_names, path="detections.png")
    """
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.clip(image, 0, 255).astype("uint8"))
    draw = ImageDraw.Draw(canvas)
    for box, cls, score in zip(np.asarray(boxes).reshape(-1, 4), classes, scores, strict=True):
        colour = PALETTE[int(cls) % len(PALETTE)]
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        draw.rectangle((xmin, ymin, xmax, ymax), outline=colour, width=2)
        name = labels[int(cls)] if labels is not None and int(cls) < len(labels) else str(cls)
        draw.text((xmin + 2, max(0.0, ymin - 11)), f"{name} {float(score):.2f}", fill=colour)
    if path is not None:
        directory = os.path.dirname(os.fspath(path)) or "."
        temporary = os.path.join(directory, f".{os.getpid()}.{os.path.basename(path)}")
        try:
            canvas.save(temporary, format="PNG")
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return np.asarray(canvas)
