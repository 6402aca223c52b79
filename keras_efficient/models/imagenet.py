"""keras.applications-style ``preprocess_input`` and ``decode_predictions``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from keras_efficient.weights.download import fetch, file_hash, keras_cache_dir
from keras_efficient.weights.registry import IMAGENET_CLASS_INDEX

_CLASS_INDEX: dict[str, list[str]] | None = None


def preprocess_input(x: Any, data_format: str | None = None) -> Any:
    """A placeholder kept for keras.applications compatibility: returns ``x`` unchanged.

    Every model here preprocesses inside the graph (see :func:`keras_efficient.EfficientNet`);
    pass float RGB pixels in [0, 255].

    Example::

        probabilities = model.predict(preprocess_input(images))  # same as model.predict(images)
    """
    del data_format
    return x


def _class_index() -> dict[str, list[str]]:
    global _CLASS_INDEX
    if _CLASS_INDEX is None:
        path = fetch(IMAGENET_CLASS_INDEX.resolved_url, IMAGENET_CLASS_INDEX.filename,
                     md5=IMAGENET_CLASS_INDEX.md5, progress=False)
        with open(path, encoding="utf-8") as handle:
            _CLASS_INDEX = json.load(handle)
    return _CLASS_INDEX


def cached_imagenet_class_names() -> list[str] | None:
    """The 1,000 ImageNet class names if the class index is already in the Keras cache (and
    passes its md5), else ``None``; never downloads.

    Example::

        names = cached_imagenet_class_names()  # ["tench", "goldfish", ...] or None offline
    """
    try:
        path = keras_cache_dir() / IMAGENET_CLASS_INDEX.filename
        if not path.is_file() or file_hash(path, "md5") != IMAGENET_CLASS_INDEX.md5:
            return None
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
    except OSError:  # an unusable cache folder: no names, as when nothing is cached
        return None
    return [index[str(i)][1] for i in range(len(index))]


def decode_predictions(preds: Any, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Turn ImageNet probabilities ``(batch, 1000)`` into ``(wnid, label, score)`` lists.

    The class index file is downloaded once into the Keras cache and verified by md5 (the same
    cache rules as the weights); an offline machine needs it placed there by hand.

    Example::

        model = EfficientNetB0(weights="imagenet")
        [top5] = decode_predictions(model.predict(images[:1]), top=5)
        wnid, label, score = top5[0]
    """
    array = np.asarray(preds)
    if array.ndim != 2 or array.shape[1] != 1000:
        raise ValueError(
            "decode_predictions expects a batch of ImageNet predictions of shape (samples, 1000); "
            f"received shape {array.shape}."
        )
    if not 1 <= top <= 1000:
        raise ValueError(f"`top` must be between 1 and 1000; received top={top}.")
    index = _class_index()
    results = []
    for row in array:
        best = np.argsort(row)[::-1][:top]
        results.append([(index[str(i)][0], index[str(i)][1], float(row[i])) for i in best])
    return results
