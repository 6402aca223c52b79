"""Image-folder classification datasets (``directory/<class_name>/*.{jpg,png,...}``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def image_folder_dataset(
    directory: str | os.PathLike[str], image_size: tuple[int, int], batch_size: int = 32, *,
    validation_split: float | None = None,
    subset: Literal["training", "validation"] | None = None, seed: int = 0,
    shuffle: bool = True, crop_to_aspect_ratio: bool = False,
) -> tuple[tf.data.Dataset, list[str]]:
    """``(dataset, class_names)`` from ``keras.utils.image_dataset_from_directory``.

    Batches are ``(images, labels)``: float32 RGB ``[B, H, W, 3]`` in [0, 255] (the models
    normalise in-graph) and int32 class indices in alphabetical folder order. Images are resized
    bilinearly to ``image_size`` (height, width), by default without keeping the aspect ratio
    (``crop_to_aspect_ratio=True`` centre-crops first). With ``validation_split`` call once per
    ``subset`` with the *same* ``seed`` so the two subsets do not overlap.

    Example::

        train, names = image_folder_dataset("flowers/", (224, 224), 32,
                                            validation_split=0.2, subset="training", seed=1)
        val, _ = image_folder_dataset("flowers/", (224, 224), 32,
                                      validation_split=0.2, subset="validation", seed=1)
    """
    import keras

    folder = Path(directory)
    if not folder.is_dir():
        raise ValueError(f"Image folder {folder} does not exist.")
    if not any(child.is_dir() for child in folder.iterdir()):
        raise ValueError(f"{folder} has no class sub-folders; expected "
                         f"{folder}/<class_name>/<images>.")
    if (validation_split is None) != (subset is None):
        raise ValueError("Give validation_split and subset together ('training' or "
                         "'validation'), or neither.")
    if subset not in (None, "training", "validation"):
        raise ValueError(f"subset must be 'training' or 'validation'; received {subset!r}.")
    dataset = keras.utils.image_dataset_from_directory(
        str(folder), labels="inferred", label_mode="int", color_mode="rgb",
        batch_size=batch_size, image_size=tuple(int(v) for v in image_size), shuffle=shuffle,
        seed=seed, validation_split=validation_split, subset=subset, interpolation="bilinear",
        crop_to_aspect_ratio=crop_to_aspect_ratio, verbose=False)
    class_names = list(dataset.class_names)
    dataset = dataset.map(lambda images, labels: (tf.cast(images, tf.float32),
                                                  tf.cast(labels, tf.int32)),
                          num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE), class_names
