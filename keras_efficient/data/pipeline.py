"""COCO records -> batched ``tf.data`` for detector training and evaluation.

Each element is a dict (shapes per batch of ``B``):

- ``image``: float32 ``[B, H, W, 3]`` RGB in [0, 255] (the models normalise in-graph),
- ``boxes``: float32 ``[B, max_boxes, 4]`` (ymin, xmin, ymax, xmax) in input pixels, padded with 0,
- ``classes``: int32 ``[B, max_boxes]`` contiguous indices, padded with -1,
- ``image_info``: float32 ``[B, 3]`` = (scale, original height, original width), as
  :func:`keras_efficient.data.transforms.image_info` gives at inference,
- ``image_id``: int64 ``[B]``.

Geometry is the reference's (automl ``InputProcessor``): resize keeping the aspect ratio, then pad
bottom/right with ``pad_value`` — :func:`keras_efficient.data.transforms.letterbox_geometry`'s
rule, in TF ops as :func:`letterbox_geometry_tf` (the SavedModel's in-graph preprocessing uses it
too). Detectors pass their ``spec.pad_value`` (the normalization mean: automl normalizes first
and pads with 0, which is the same pixels); the default 0 is for callers without a detector.
Training adds, in this order, a random horizontal flip, a scale jitter (the image is resized to
``jitter × output size`` keeping its aspect) and a random crop of the output size; boxes go through
the same maps, are clipped to the output and dropped if nothing of them is left. Resizing is
bilinear without antialiasing (automl's ``tf.image.resize``; ``antialias=True`` is the explicit
alternative), the same op as :func:`~keras_efficient.data.transforms.resize_and_pad` (the
inference path), so training and inference see the same pixels. Everything runs as TF graph ops
in parallel ``map`` calls.

``resize="stretch"`` (a detector trained for the Task Library / MediaPipe, which stretch every
image to the input) replaces the letterbox by a resize of the whole image to the output size
(aspect not kept, no pad); the jitter then scales that size, and the crop and pad follow as above.
``image_info``'s scale is then 1.0: boxes map back per axis from the original size.

Randomness is reproducible: every element draws its flip, jitter and crop from a stateless
generator keyed by ``seed`` and a per-element number from ``tf.data.Dataset.random``; each new
iteration (epoch) draws a new, still seed-determined, sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from keras_efficient.configs.efficientdet import check_resize
from keras_efficient.data.coco import CocoDataset, ImageRecord
from keras_efficient.data.decode import read_image
from keras_efficient.data.transforms import PAD_VALUE, PadValue, pad_channels

AUTOTUNE = tf.data.AUTOTUNE


def _read(path: Any) -> np.ndarray:
    return read_image(bytes(np.asarray(path).item()).decode("utf-8"))


def decode_image(path: tf.Tensor) -> tf.Tensor:
    """Decode an image file to uint8 RGB ``[h, w, 3]`` inside ``tf.data``, with the decoder of
    every other path (:func:`keras_efficient.data.decode.read_image`: EXIF orientation, 16-bit
    scaling, grayscale/RGBA/palette/CMYK to RGB), so training sees the pixels inference sees.

    Example::

        image = decode_image(tf.constant("photo.png"))  # uint8 [h, w, 3]
    """
    image = tf.numpy_function(_read, [path], tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return image


def scaled_size_tf(shape: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """int32 ``[2]`` size of an image of ``shape`` (height, width) resized by ``scale``: the
    rounding of :func:`keras_efficient.data.transforms.letterbox_geometry` (float32,
    truncated as automl's ``tf.cast(..., tf.int32)``, at least 1 pixel) in TF ops.

    Example::

        scaled_size_tf(tf.constant([480, 640]), 0.5)  # [240, 320]
    """
    product = tf.cast(shape, tf.float32) * tf.cast(scale, tf.float32)
    return tf.maximum(tf.cast(product, tf.int32), 1)


def letterbox_geometry_tf(shape: tf.Tensor, size: tuple[int, int]
                          ) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`keras_efficient.data.transforms.letterbox_geometry` in TF ops, for graphs: the
    float32 scale (scalar) and the int32 ``[2]`` resized size of an image of ``shape``
    (height, width) letterboxed into ``size``.

    Example::

        scale, new_size = letterbox_geometry_tf(tf.shape(image)[:2], (320, 320))
    """
    scale = tf.reduce_min(tf.constant(size, tf.float32) / tf.cast(shape, tf.float32))
    return scale, scaled_size_tf(shape, scale)


def pad_bottom_right_tf(image: tf.Tensor, size: tuple[int, int],
                        pad_value: PadValue = PAD_VALUE) -> tf.Tensor:
    """Pad float ``[..., h, w, C]`` at the bottom/right to ``size`` with ``pad_value`` (one
    number or one per channel; detectors: ``spec.pad_value``); ``h``, ``w`` must fit.

    Example::

        padded = pad_bottom_right_tf(resized, (320, 320), pad_value=(127.0, 127.0, 127.0))
    """
    shape = tf.shape(image)
    rank = image.shape.rank
    paddings = [[0, 0]] * (rank - 3) + [[0, size[0] - shape[-3]], [0, size[1] - shape[-2]],
                                        [0, 0]]
    values = pad_channels(pad_value, int(image.shape[-1]))
    if np.all(values == values[0]):
        return tf.pad(image, paddings, constant_values=float(values[0]))
    # Per channel: 0 inside plus 1 × value outside, exact (x + 0 = x, 0 + value = value).
    outside = tf.pad(tf.zeros_like(image[..., :1]), paddings, constant_values=1.0)
    return tf.pad(image, paddings) + outside * tf.constant(values, image.dtype)


def resize_crop_pad(image: tf.Tensor, boxes: tf.Tensor, output_size: tuple[int, int],
                    scale: tf.Tensor, offset: tf.Tensor, *, pad_value: PadValue = PAD_VALUE,
                    antialias: bool = False, new_size: tf.Tensor | None = None
                    ) -> tuple[tf.Tensor, tf.Tensor]:
    """Resize ``image`` by ``scale`` (aspect kept; bilinear, ``antialias`` off as automl),
    crop at ``offset`` (y, x), pad bottom/right with ``pad_value``. ``new_size`` (int32
    ``[2]``), when given, is the resized size instead (a stretch: ``scale`` is then unused).

    ``boxes`` ``[K, 4]`` follow: scaled by the per-axis factor the rounded size actually reached,
    shifted by the crop offset and clipped to the output. Boxes left without area are *not*
    removed here (their classes must go with them; the pipeline does both).
    Returns the float32 ``[H, W, 3]`` image and the ``[K, 4]`` boxes.

    Example::

        image, boxes = resize_crop_pad(image, boxes, (320, 320), scale=0.5, offset=[0, 0],
                                       pad_value=spec.pad_value)
    """
    height, width = output_size
    shape = tf.shape(image)[:2]
    if new_size is None:
        new_size = scaled_size_tf(shape, scale)
    resized = tf.image.resize(tf.cast(image, tf.float32), new_size, method="bilinear",
                              antialias=antialias)
    cropped = resized[offset[0]:offset[0] + height, offset[1]:offset[1] + width]
    padded = pad_bottom_right_tf(cropped, output_size, pad_value)
    factors = tf.cast(tf.cast(new_size, tf.float64) / tf.cast(shape, tf.float64), tf.float32)
    shift = tf.cast(offset, tf.float32)
    boxes = boxes * tf.tile(factors, [2]) - tf.tile(shift, [2])
    limits = tf.constant([height, width, height, width], tf.float32)
    boxes = tf.clip_by_value(boxes, 0.0, limits)
    return tf.ensure_shape(padded, [height, width, 3]), boxes


def _pad_targets(boxes: tf.Tensor, classes: tf.Tensor, max_boxes: int
                 ) -> tuple[tf.Tensor, tf.Tensor]:
    """Keep boxes with area, truncate to ``max_boxes``, pad (boxes with 0, classes with -1)."""
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, classes = tf.boolean_mask(boxes, keep)[:max_boxes], tf.boolean_mask(classes,
                                                                                keep)[:max_boxes]
    missing = max_boxes - tf.shape(boxes)[0]
    boxes = tf.pad(boxes, [[0, missing], [0, 0]])
    classes = tf.pad(classes, [[0, missing]], constant_values=-1)
    return tf.ensure_shape(boxes, [max_boxes, 4]), tf.ensure_shape(classes, [max_boxes])


def _fit_scale(image: tf.Tensor, output_size: tuple[int, int]) -> tf.Tensor:
    """Largest scale (float32) at which the image fits in ``output_size``."""
    return letterbox_geometry_tf(tf.shape(image)[:2], output_size)[0]


def detection_dataset(
    coco: CocoDataset | Sequence[ImageRecord], image_size: tuple[int, int], *,
    batch_size: int, training: bool, max_boxes: int = 100, flip: bool = True,
    flip_probability: float = 0.5, scale_range: tuple[float, float] = (0.1, 2.0), seed: int = 0,
    shuffle_buffer: int | None = None, cache: bool | str = False,
    drop_remainder: bool | None = None, drop_crowd: bool = True,
    num_parallel_calls: int = AUTOTUNE, pad_value: PadValue = PAD_VALUE,
    antialias: bool = False, resize: str = "letterbox",
) -> tf.data.Dataset:
    """A batched, prefetched detection ``tf.data.Dataset`` (see the module docstring).

    Args:
      coco: a :class:`CocoDataset` or its records.
      image_size: network input (height, width).
      batch_size: images per batch.
      training: shuffle and augment (flip, scale jitter + random crop); otherwise a fixed
        resize-and-pad in record order, for evaluation (``image_info`` then maps boxes back).
      max_boxes: boxes per image after padding; extra boxes are cut (in annotation order).
      flip, flip_probability: random horizontal flip and its probability (training only).
      scale_range: jitter range (reference 0.1-2.0); ``(1.0, 1.0)`` turns jitter and crop off.
      seed: determines shuffling and augmentation.
      shuffle_buffer: default: every image without ``cache`` (file names are cheap to shuffle),
        at most 1024 decoded images with it.
      cache: cache decoded images (training, before augmentation) or final images (evaluation)
        in memory (``True``) or in files with this prefix (a string).
      drop_remainder: default ``training`` (static batch shapes for training).
      drop_crowd: remove crowd boxes (COCO metrics read crowd regions from the json itself).
      pad_value: the letterbox's pad value, one number or one per channel: the detector's
        ``spec.pad_value`` (its normalization mean, automl's padding); default 0.
      antialias: antialias the bilinear resize (default off, as automl).
      resize: ``"letterbox"`` (automl's) or ``"stretch"`` (the whole image to the output
        size, as the Task Library and MediaPipe feed; see the module docstring): the
        detector's ``resize``.

    Example::

        batches = detection_dataset(CocoDataset("instances_train.json"), (320, 320),
                                    batch_size=16, training=True, seed=0,
                                    pad_value=spec.pad_value)
        batch = next(iter(batches))  # image [16, 320, 320, 3], boxes [16, 100, 4]
    """
    records = list(coco.records if isinstance(coco, CocoDataset) else coco)
    if not records:
        raise ValueError("detection_dataset needs at least one image; the dataset is empty.")
    height, width = (int(v) for v in image_size)
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high:
        raise ValueError(f"scale_range must be 0 < low <= high; received {scale_range}.")
    if batch_size < 1 or max_boxes < 1:
        raise ValueError(f"batch_size and max_boxes must be >= 1; received {batch_size}, "
                         f"{max_boxes}.")
    output_size = (height, width)
    stretching = check_resize(resize) == "stretch"
    drop_remainder = training if drop_remainder is None else drop_remainder
    if drop_remainder and len(records) < batch_size:
        raise ValueError(f"{len(records)} image(s) cannot fill one batch of {batch_size} with "
                         "drop_remainder=True (the training default): lower batch_size.")

    boxes, classes = [], []
    for record in records:
        keep = ~record.is_crowd if drop_crowd else slice(None)
        boxes.append(record.boxes[keep].reshape(-1, 4))
        classes.append(record.classes[keep])
    lengths = [len(c) for c in classes]
    flat_boxes = tf.constant(np.concatenate(boxes).astype("float32").reshape(-1, 4))
    flat_classes = tf.constant(np.concatenate(classes).astype("int32"))
    dataset = tf.data.Dataset.from_tensor_slices({
        "path": tf.constant([r.path for r in records]),
        "image_id": tf.constant([r.image_id for r in records], tf.int64),
        "boxes": tf.RaggedTensor.from_row_lengths(flat_boxes, lengths),
        "classes": tf.RaggedTensor.from_row_lengths(flat_classes, lengths),
    })

    def decode(example: dict[str, Any]) -> dict[str, Any]:
        return {"image": decode_image(example["path"]), "image_id": example["image_id"],
                "boxes": example["boxes"], "classes": example["classes"]}

    def finish(example: dict[str, Any], image: tf.Tensor, boxes: tf.Tensor,
               scale: tf.Tensor) -> dict[str, tf.Tensor]:
        padded_boxes, padded_classes = _pad_targets(boxes, example["classes"], max_boxes)
        original = tf.cast(tf.shape(example["image"])[:2], tf.float32)
        info = tf.concat([tf.cast(scale, tf.float32)[None], original], axis=0)
        return {"image": image, "boxes": padded_boxes, "classes": padded_classes,
                "image_info": info, "image_id": example["image_id"]}

    def target_size(image: tf.Tensor, jitter: tf.Tensor | float
                    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The scale for ``image_info`` and the size ``image`` is resized to."""
        if stretching:
            size = tf.constant(output_size, tf.float32) * jitter
            return tf.constant(1.0), tf.maximum(tf.cast(size, tf.int32), 1)
        scale = jitter * _fit_scale(image, output_size)
        return scale, scaled_size_tf(tf.shape(image)[:2], scale)

    def evaluate(example: dict[str, Any]) -> dict[str, tf.Tensor]:
        scale, reached = target_size(example["image"], 1.0)
        image, boxes = resize_crop_pad(example["image"], example["boxes"], output_size, scale,
                                       tf.zeros([2], tf.int32), pad_value=pad_value,
                                       antialias=antialias, new_size=reached)
        return finish(example, image, boxes, scale)

    def augment(example: dict[str, Any], number: tf.Tensor) -> dict[str, tf.Tensor]:
        draws = tf.random.stateless_uniform(
            [4], seed=tf.stack([tf.constant(seed, tf.int64), number]), dtype=tf.float32)
        image, boxes = example["image"], example["boxes"]
        if flip:
            image_width = tf.cast(tf.shape(image)[1], tf.float32)
            do_flip = draws[0] < flip_probability
            image = tf.cond(do_flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
            mirrored = tf.stack([boxes[:, 0], image_width - boxes[:, 3], boxes[:, 2],
                                 image_width - boxes[:, 1]], axis=-1)
            boxes = tf.where(do_flip, mirrored, boxes)
        jitter = low + (high - low) * draws[1]
        scale, reached = target_size(image, jitter)
        slack = tf.maximum(reached - tf.constant(output_size, tf.int32), 0)
        offset = tf.minimum(tf.cast(tf.floor(draws[2:] * tf.cast(slack + 1, tf.float32)),
                                    tf.int32), slack)
        image, boxes = resize_crop_pad(image, boxes, output_size, scale, offset,
                                       pad_value=pad_value, antialias=antialias,
                                       new_size=reached)
        return finish(example, image, boxes, scale)

    if training:
        numbers = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        if cache:  # decode once, then shuffle decoded images
            dataset = _cache(dataset.map(decode, num_parallel_calls=num_parallel_calls), cache)
            dataset = dataset.shuffle(shuffle_buffer or min(len(records), 1024), seed=seed,
                                      reshuffle_each_iteration=True)
            dataset = tf.data.Dataset.zip(dataset, numbers).map(
                augment, num_parallel_calls=num_parallel_calls)
        else:  # shuffle file names, decode and augment in one parallel map
            dataset = dataset.shuffle(shuffle_buffer or len(records), seed=seed,
                                      reshuffle_each_iteration=True)
            dataset = tf.data.Dataset.zip(dataset, numbers).map(
                lambda example, number: augment(decode(example), number),
                num_parallel_calls=num_parallel_calls)
    else:
        dataset = dataset.map(lambda e: evaluate(decode(e)),
                              num_parallel_calls=num_parallel_calls)
        if cache:
            dataset = _cache(dataset, cache)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(AUTOTUNE)


def _cache(dataset: tf.data.Dataset, cache: bool | str) -> tf.data.Dataset:
    return dataset.cache(cache if isinstance(cache, str) else "")
