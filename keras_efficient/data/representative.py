"""Representative images for post-training quantization (TFLite int8 calibration).

Calibration must see pixels exactly as the deployed model will: the images go through the
inference preprocessing, :func:`~keras_efficient.data.transforms.resize_and_pad`, not through the
training pipeline. Use as ``converter.representative_dataset = lambda: representative_images(...)``
(the converter wants a callable returning a fresh iterator; a model with a second input needs
the caller to add it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_efficient.configs.efficientdet import check_resize
from keras_efficient.data.decode import IMAGE_SUFFIXES
from keras_efficient.data.transforms import PAD_VALUE, PadValue, fit_to_input, load_image


def _image_paths(source: Any) -> list[str]:
    """Every image path a source names, in a fixed order."""
    from keras_efficient.data.coco import CocoDataset
    from keras_efficient.data.synthetic import SyntheticDataset, SyntheticImageFolder

    if isinstance(source, CocoDataset):
        return [record.path for record in source.records]
    if isinstance(source, SyntheticDataset):
        return [record.path for record in source.coco("train").records]
    if isinstance(source, SyntheticImageFolder):
        source = source.root
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_file() and path.suffix.lower() == ".json":
            return [record.path for record in CocoDataset(path).records]
        if path.is_dir():
            return sorted(str(p) for p in path.rglob("*")
                          if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                          and not any(part.startswith(".") for part in p.relative_to(path).parts))
        raise ValueError(f"Representative-image source {path} is neither a COCO json nor a "
                         "folder.")
    if isinstance(source, Sequence):
        return [os.fspath(p) for p in source]
    raise TypeError(f"Unsupported representative-image source {type(source).__name__}: give a "
                    "CocoDataset, SyntheticDataset, COCO json path, image folder or list of paths.")


def representative_images(source: Any, image_size: tuple[int, int], count: int = 200,
                          seed: int = 0, *, pad_value: PadValue = PAD_VALUE,
                          antialias: bool = False, resize: str = "letterbox"
                          ) -> Iterator[np.ndarray]:
    """Up to ``count`` images from ``source``, each float32 ``[1, H, W, 3]`` in [0, 255].

    ``source``: a :class:`~keras_efficient.data.coco.CocoDataset`, a COCO instances json path,
    a :class:`~keras_efficient.data.synthetic.SyntheticDataset` (its train split), a folder
    (images found recursively, hidden folders skipped) or a list of image paths. The images
    are a seeded random sample (all of them, shuffled, when fewer than ``count``). Raises
    ``ValueError`` at once, not on first iteration, when the source holds no image.
    ``pad_value``, ``antialias`` and ``resize`` are
    :func:`~keras_efficient.data.transforms.fit_to_input`'s: a detector's calibration images
    must pass ``pad_value=detector.pad_value`` and ``resize=detector.resize`` so they are fed
    as at inference.

    Example::

        images = list(representative_images("data/train", (320, 320), count=100,
                                            pad_value=detector.pad_value))
        payload = convert(model, "int8", representative=images, input_type="uint8")
    """
    paths = _image_paths(source)
    if not paths:
        raise ValueError(f"No images found in the representative-image source {source!r}; "
                         "quantization calibration needs at least one.")
    if count < 1:
        raise ValueError(f"count must be >= 1; received {count}.")
    check_resize(resize)
    order = np.random.default_rng(seed).permutation(len(paths))[:count]
    chosen = [paths[int(i)] for i in order]
    size = (int(image_size[0]), int(image_size[1]))

    def generate() -> Iterator[np.ndarray]:
        for path in chosen:
            padded, _ = fit_to_input(load_image(path), size, resize=resize,
                                     pad_value=pad_value, antialias=antialias)
            yield padded[None]

    return generate()
