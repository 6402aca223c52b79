"""SavedModel exports for serving (TF Serving conventions; loadable with ``tf.saved_model.load``).

Detector (:func:`export_detector_saved_model`) signatures:

* ``serving_default``: ``images`` uint8 ``[None, None, None, 3]`` (a batch of same-size images of
  any size) → ``detection_boxes`` float32 ``[B, D, 4]`` (ymin, xmin, ymax, xmax in *original*
  image pixels), ``detection_scores`` float32 ``[B, D]``, ``detection_classes`` int32 ``[B, D]``
  (the original category ids; ``-1`` past ``num_detections``) and ``num_detections`` int32
  ``[B]``. Output names follow the TF Object Detection API.
* ``serving_image_bytes``: ``image_bytes`` string ``[None]`` of encoded JPEG/PNG/GIF/BMP images
  (sizes may differ) → the same outputs. The ``_bytes`` suffix makes hosted TF Serving front
  ends (e.g. Vertex AI) accept ``{"b64": ...}`` JSON values for it.
* ``raw``: ``images`` float32 ``[None, H, W, 3]`` at the network size, pixels in [0, 255] →
  ``class_logits`` ``[B, N, C]`` and ``box_regression`` ``[B, N, 4]`` (float32).

The in-graph preprocessing is the detector's (:func:`keras_efficient.data.transforms.
fit_to_input` for its ``resize`` mode). ``"letterbox"``, automl's: resize keeping the aspect
ratio to fit the network input (bilinear without antialiasing, ``int()`` of the scaled size),
pad bottom/right with the detector's ``pad_value`` (its normalization mean, i.e. 0 after
normalization); the scale and original size then map the boxes back. ``"stretch"`` (a detector
trained for stretching consumers): the same resize to the whole input; boxes map back per axis.
Encoded images are decoded and preprocessed one at a time (``tf.map_fn``, so a request may mix
sizes) and the network then runs on the whole batch.

Classifier (:func:`export_classifier_saved_model`) signatures:

* ``serving_default``: ``images`` uint8 ``[None, None, None, C]`` → ``probabilities`` float32
  ``[B, classes]``, ``top_k_classes`` int32 ``[B, k]``, ``top_k_scores`` float32 ``[B, k]`` and,
  with ``labels``, ``top_k_labels`` string ``[B, k]``;
* ``serving_image_bytes``: ``image_bytes`` string ``[None]`` → the same outputs;
* ``raw``: ``images`` float32 ``[None, H, W, C]`` → ``predictions`` (the model's output).

Classifier images are resized to the model input *without* keeping the aspect ratio (bilinear, no
antialiasing): that is what the project's classification data
(:func:`keras_efficient.data.classification.image_folder_dataset`, i.e.
``keras.utils.image_dataset_from_directory``) feeds the model in training, and it sees the whole
image, where a centre crop could cut the object off in a serving request.

Every export is written into a hidden staging sibling of the destination
(:func:`keras_efficient.files.make_staging_folder`, which also removes those of killed runs) and
renamed into place only when everything succeeded: a failure leaves nothing behind and raises
:class:`~keras_efficient.export.tflite.ExportError` naming the step.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from keras_efficient.data.pipeline import letterbox_geometry_tf, pad_bottom_right_tf
from keras_efficient.data.transforms import PAD_VALUE, PadValue
from keras_efficient.detection.inference import inference_model
from keras_efficient.export.tflite import ExportError, static_input_shape
from keras_efficient.files import make_staging_folder, publish_folder

SERVING_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_image_bytes"
RAW_SIGNATURE = "raw"
PADDED_CLASS = -1  # detection_classes past num_detections


# --------------------------------------------------------------------------- validation


def _static_image_size(model: Any) -> tuple[int, int, int]:
    """(height, width, channels) of a single-image-input model, or a clear ValueError."""
    _, height, width, channels = static_input_shape(model)
    if channels not in (1, 3):
        raise ValueError(f"SavedModel image signatures support 1 or 3 channels; {model.name} "
                         f"has {channels}.")
    return height, width, channels


def _check_destination(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if target.exists():
        raise FileExistsError(f"SavedModel destination {target} already exists; remove it or "
                              "choose another path.")
    if not target.parent.is_dir():
        raise ValueError(f"Output folder {target.parent} does not exist; create it first.")
    if not os.access(target.parent, os.W_OK):
        raise PermissionError(f"Output folder {target.parent} is not writable.")
    return target


def _category_table(category_ids: Sequence[int] | None, num_classes: int) -> list[int]:
    if category_ids is None:
        return list(range(num_classes))
    ids = [int(i) for i in category_ids]
    if len(ids) != num_classes:
        raise ValueError(f"category_ids has {len(ids)} entries but the detector predicts "
                         f"{num_classes} classes; give one category id per class.")
    if len(set(ids)) != len(ids):
        raise ValueError(f"category_ids must be distinct; received {ids}.")
    if any(not -(2**31) <= i < 2**31 for i in ids):
        raise ValueError("category_ids must fit in int32.")
    return ids


# --------------------------------------------------------------------------- graph pieces


def _fit_to_input(images: tf.Tensor, size: tuple[int, int], pad_value: PadValue = PAD_VALUE,
                  antialias: bool = False, resize: str = "letterbox"
                  ) -> tuple[tf.Tensor, tf.Tensor]:
    """``[B, h, w, C]`` same-size images → float32 ``[B, H, W, C]`` and info ``[B, 3]``.

    :func:`keras_efficient.data.transforms.fit_to_input` in TF ops: the letterbox geometry of
    :func:`keras_efficient.data.transforms.letterbox_geometry` (here
    :func:`keras_efficient.data.pipeline.letterbox_geometry_tf`), the same resize and pad; or,
    for ``resize="stretch"``, the same resize to the whole input (scale 1.0 in the info).
    """
    shape = tf.shape(images)
    tf.debugging.assert_positive(shape[1:3], message="images must have a non-zero size")
    if resize == "stretch":
        scale, new_size = tf.constant(1.0), tf.constant(size, tf.int32)
    else:
        scale, new_size = letterbox_geometry_tf(shape[1:3], size)
    resized = tf.image.resize(tf.cast(images, tf.float32), new_size, method="bilinear",
                              antialias=antialias)
    padded = pad_bottom_right_tf(resized, size, pad_value)
    padded = tf.ensure_shape(padded, [None, size[0], size[1], images.shape[-1]])
    original = tf.cast(shape[1:3], tf.float32)
    info = tf.cast(tf.concat([scale[None], original], axis=0), tf.float32)
    return padded, tf.tile(info[None], [shape[0], 1])


def _decode(data: tf.Tensor, channels: int) -> tf.Tensor:
    """One encoded image → uint8 ``[1, h, w, channels]``."""
    image = tf.io.decode_image(data, channels=channels, expand_animations=False,
                               dtype=tf.uint8)
    image.set_shape([None, None, channels])
    return image[None]


def _map_encoded(encoded: tf.Tensor, one: Callable[[tf.Tensor], Any],
                 signature: Any) -> Any:
    return tf.map_fn(one, encoded, fn_output_signature=signature)


def _write(model: Any, target: Path, endpoints: list[tuple[str, Callable[..., Any], Any]]
           ) -> Path:
    """Trace the endpoints into a staging folder and rename it to ``target`` on success."""
    staging = make_staging_folder(target)
    step = "track the model"
    try:
        try:
            archive = keras.export.ExportArchive()
            archive.track(model)
            for name, fn, signature in endpoints:
                step = f"trace the '{name}' signature"
                archive.add_endpoint(name, fn, input_signature=signature)
            step = "write the SavedModel"
            archive.write_out(os.fspath(staging), verbose=False)
            step = f"move the SavedModel into {target}"
            publish_folder(staging, target)
        except Exception as error:
            raise ExportError(f"SavedModel export step '{step}' failed for {model.name}: "
                              f"{error}") from error
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- detector


def export_detector_saved_model(
    detector: keras.Model, path: str | os.PathLike[str], *,
    category_ids: Sequence[int] | None = None, max_detections: int = 100,
    score_threshold: float = 0.001, iou_threshold: float | None = None,
    method: str | None = None, soft_nms_sigma: float = 0.5, mode: str | None = None,
    class_aware: bool | None = None, pre_nms_top_k: int | str | None = "auto",
    clip: str | None = None, clip_to_original: bool = True, antialias: bool = False,
) -> Path:
    """Export a raw EfficientDet as a serving SavedModel (signatures: see the module docstring).

    Args:
      detector: the raw detector (:func:`~keras_efficient.models.efficientdet.EfficientDet`),
        which carries its spec, input size and label map.
      path: the SavedModel folder to create; it must not exist, its parent must.
      category_ids: the category id of each contiguous class index (e.g. COCO's 1..90 with
        gaps), returned as ``detection_classes``; by default the detector's own
        ``category_ids`` (its label map; index + 1 without one).
      max_detections, score_threshold, iou_threshold, method, soft_nms_sigma, mode,
        class_aware, pre_nms_top_k, clip, clip_to_original: the post-processing, as
        :func:`~keras_efficient.detection.inference.inference_model` takes it, except that the
        mode defaults to ``"global"`` (automl's serving ``postprocess_global``: every anchor's
        best class, one class-agnostic NMS, clip after NMS; soft-NMS for ``weights="coco"``
        detectors); ``mode="per_class"`` is automl's evaluation one.
      antialias: antialias the in-graph bilinear resize (default off, as automl and training).

    Returns the SavedModel folder. Raises ``ValueError`` for a model without a static input size
    or a ``category_ids`` of the wrong length, ``FileExistsError`` if ``path`` exists and
    :class:`~keras_efficient.export.tflite.ExportError` (nothing written) if a step fails.

    Example:
        >>> detector = EfficientDet("lite0", num_classes=90, weights="coco")
        >>> export_detector_saved_model(detector, "lite0_sm")  # COCO category ids
        >>> served = tf.saved_model.load("lite0_sm").signatures["serving_default"]
        >>> served(images=tf.zeros([1, 480, 640, 3], tf.uint8))["detection_boxes"]
    """
    height, width, channels = _static_image_size(detector)
    outputs = detector.output
    if not isinstance(outputs, dict) or "class_logits" not in outputs:
        raise ValueError(f"{detector.name} is not a raw EfficientDet: expected dict outputs "
                         f"with 'class_logits' and 'box_regression', got {outputs}.")
    num_classes = int(outputs["class_logits"].shape[-1])
    table = _category_table(detector.category_ids if category_ids is None else category_ids,
                            num_classes)
    target = _check_destination(path)
    if mode is None and class_aware is None:
        mode = "global"
    infer = inference_model(detector, max_detections=max_detections,
                            score_threshold=score_threshold, iou_threshold=iou_threshold,
                            method=method, soft_nms_sigma=soft_nms_sigma, mode=mode,
                            class_aware=class_aware, pre_nms_top_k=pre_nms_top_k, clip=clip,
                            clip_to_original=clip_to_original)
    size = (height, width)
    pad_value, resize = detector.pad_value, detector.resize

    def detect(padded: tf.Tensor, info: tf.Tensor) -> dict[str, tf.Tensor]:
        result = infer([padded, info], training=False)
        count = tf.cast(result["num_detections"], tf.int32)
        valid = tf.range(max_detections, dtype=tf.int32)[None, :] < count[:, None]
        classes = tf.gather(tf.constant(table, tf.int32), tf.cast(result["classes"], tf.int32))
        return {"detection_boxes": tf.cast(result["boxes"], tf.float32),
                "detection_scores": tf.cast(result["scores"], tf.float32),
                "detection_classes": tf.where(valid, classes, PADDED_CLASS),
                "num_detections": count}

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return detect(*_fit_to_input(images, size, pad_value, antialias, resize))

    def serve_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        def one(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            padded, info = _fit_to_input(_decode(data, channels), size, pad_value, antialias,
                                         resize)
            return padded[0], info[0]

        padded, info = _map_encoded(image_bytes, one, (
            tf.TensorSpec([height, width, channels], tf.float32), tf.TensorSpec([3], tf.float32)))
        return detect(padded, info)

    def raw(images: tf.Tensor) -> dict[str, tf.Tensor]:
        result = detector(images, training=False)
        return {key: tf.cast(result[key], tf.float32)
                for key in ("class_logits", "box_regression")}

    return _write(detector, target, [
        (SERVING_SIGNATURE, serve,
         [tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")]),
        (BYTES_SIGNATURE, serve_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        (RAW_SIGNATURE, raw,
         [tf.TensorSpec([None, height, width, channels], tf.float32, name="images")]),
    ])


# --------------------------------------------------------------------------- classifier


def _outputs_probabilities(model: Any) -> bool:
    """Whether the model's last layer already ends in a softmax."""
    activation = getattr(model.layers[-1], "activation", None)
    return activation is keras.activations.softmax or getattr(
        activation, "__name__", "") == "softmax"


def export_classifier_saved_model(
    classifier: keras.Model, path: str | os.PathLike[str], *,
    labels: Sequence[str] | None = None, top_k: int = 5, from_logits: bool | None = None,
) -> Path:
    """Export an image classifier as a serving SavedModel (signatures: module docstring).

    Args:
      classifier: a model mapping float pixels in [0, 255] at a static input size to
        ``[B, classes]`` (e.g. :func:`~keras_efficient.models.efficientnet.EfficientNet`).
      path: the SavedModel folder to create; it must not exist, its parent must.
      labels: one name per class, for a ``top_k_labels`` output.
      top_k: classes reported per image (at most the number of classes).
      from_logits: whether the model outputs logits (a softmax is then added for
        ``probabilities``); ``None`` decides from the last layer's activation.

    Example:
        >>> model = EfficientNet("b0")
        >>> export_classifier_saved_model(model, "b0_sm", labels=imagenet_labels)
        >>> served = tf.saved_model.load("b0_sm").signatures["serving_default"]
        >>> served(images=tf.zeros([1, 300, 400, 3], tf.uint8))["top_k_labels"]
    """
    height, width, channels = _static_image_size(classifier)
    out_shape = classifier.output_shape
    if isinstance(out_shape, list | dict) or len(out_shape) != 2 or out_shape[1] is None:
        raise ValueError(f"{classifier.name} is not a classifier: expected one [B, classes] "
                         f"output, got {out_shape}.")
    num_classes = int(out_shape[1])
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1; received {top_k}.")
    k = min(int(top_k), num_classes)
    if labels is not None and len(labels) != num_classes:
        raise ValueError(f"labels has {len(labels)} entries but {classifier.name} predicts "
                         f"{num_classes} classes.")
    if from_logits is None:
        from_logits = not _outputs_probabilities(classifier)
    target = _check_destination(path)
    size = (height, width)

    def classify(images: tf.Tensor) -> dict[str, tf.Tensor]:
        output = tf.cast(classifier(images, training=False), tf.float32)
        probabilities = tf.nn.softmax(output, axis=-1) if from_logits else output
        scores, classes = tf.math.top_k(probabilities, k=k, sorted=True)
        result = {"probabilities": probabilities, "top_k_classes": tf.cast(classes, tf.int32),
                  "top_k_scores": scores}
        if labels is not None:
            result["top_k_labels"] = tf.gather(tf.constant([str(v) for v in labels]), classes)
        return result

    def resize(images: tf.Tensor) -> tf.Tensor:
        resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
        return tf.ensure_shape(resized, [None, height, width, channels])

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return classify(resize(images))

    def serve_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        def one(data: tf.Tensor) -> tf.Tensor:
            return resize(_decode(data, channels))[0]

        return classify(_map_encoded(image_bytes, one,
                                     tf.TensorSpec([height, width, channels], tf.float32)))

    def raw(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"predictions": tf.cast(classifier(images, training=False), tf.float32)}

    return _write(classifier, target, [
        (SERVING_SIGNATURE, serve,
         [tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")]),
        (BYTES_SIGNATURE, serve_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        (RAW_SIGNATURE, raw,
         [tf.TensorSpec([None, height, width, channels], tf.float32, name="images")]),
    ])
