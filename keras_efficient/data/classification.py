"""Image-folder classification datasets (``directory/<class_name>/*.{jpg,png,...}``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import tensorflow as tf

from keras_efficient.data.decode import IMAGE_SUFFIXES
from keras_efficient.data.pipeline import decode_image

AUTOTUNE = tf.data.AUTOTUNE


def image_folder_dataset(
    directory: str | os.PathLike[str], image_size: tuple[int, int], batch_size: int = 32, *,
    validation_split: float | None = None,
    subset: Literal["training", "validation"] | None = None, seed: int = 0,
    shuffle: bool = True, crop_to_aspect_ratio: bool = False,
) -> tuple[tf.data.Dataset, list[str]]:
    """``(dataset, class_names)``: every image file under ``directory/<class_name>/`` (found
    recursively), decoded by :func:`keras_efficient.data.decode.read_image`, the decoder of
    every other path (EXIF orientation, 16-bit scaling, grayscale/RGBA/palette/CMYK to RGB).

    Batches are ``(images, labels)``: float32 RGB ``[B, H, W, 3]`` in [0, 255] (the models
    normalise in-graph) and int32 class indices in alphabetical folder order. Images are resized
    bilinearly to ``image_size`` (height, width), by default without keeping the aspect ratio
    (``crop_to_aspect_ratio=True`` centre-crops first), as
    ``keras.utils.image_dataset_from_directory`` does. With ``validation_split`` the files are
    shuffled once with ``seed`` and the last ``validation_split`` of them form ``"validation"``:
    call once per ``subset`` with the *same* ``seed`` so the two subsets do not overlap.

    Example::

        train, names = image_folder_dataset("flowers/", (224, 224), 32,
                                            validation_split=0.2, subset="training", seed=1)
        val, _ = image_folder_dataset("flowers/", (224, 224), 32,
                                      validation_split=0.2, subset="validation", seed=1)
    """
    import keras
    import numpy as np

    folder = Path(directory)
    if not folder.is_dir():
        raise ValueError(f"Image folder {folder} does not exist.")
    class_names = sorted(child.name for child in folder.iterdir() if child.is_dir())
    if not class_names:
        raise ValueError(f"{folder} has no class sub-folders; expected "
                         f"{folder}/<class_name>/<images>.")
    if (validation_split is None) != (subset is None):
        raise ValueError("Give validation_split and subset together ('training' or "
                         "'validation'), or neither.")
    if subset not in (None, "training", "validation"):
        raise ValueError(f"subset must be 'training' or 'validation'; received {subset!r}.")
    paths, labels = [], []
    for index, name in enumerate(class_names):
        files = sorted(p for p in (folder / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(p) for p in files]
        labels += [index] * len(files)
    if not paths:
        raise ValueError(f"No image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class "
                         f"folders of {folder}.")
    order = np.arange(len(paths))
    if shuffle or validation_split:
        order = np.random.default_rng(seed).permutation(len(paths))
    if validation_split:
        cut = len(paths) - int(validation_split * len(paths))
        order = order[:cut] if subset == "training" else order[cut:]
    chosen = tf.data.Dataset.from_tensor_slices(
        ([paths[i] for i in order], np.asarray([labels[i] for i in order], "int32")))
    if shuffle:
        chosen = chosen.shuffle(max(1, len(order)), seed=seed, reshuffle_each_iteration=True)
    resize = keras.layers.Resizing(int(image_size[0]), int(image_size[1]),
                                   interpolation="bilinear",
                                   crop_to_aspect_ratio=crop_to_aspect_ratio)

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.cast(decode_image(path), tf.float32)
        return resize(image), label

    dataset = chosen.map(load, num_parallel_calls=AUTOTUNE).batch(batch_size)
    return dataset.prefetch(AUTOTUNE), class_names
