"""The inference detector: raw EfficientDet + decoding + NMS + mapping to original pixels."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_efficient.configs.efficientdet import check_resize
from keras_efficient.detection.postprocess import (
    NonMaxSuppression,
    map_boxes_to_original,
    map_stretched_boxes_to_original,
    resolve_mode,
)

#: automl's NMS settings (its ``nms_configs`` defaults: gaussian soft-NMS, sigma 0.5, IoU 0.5,
#: score threshold 0.001), the default for detectors built with ``weights="coco"``.
AUTOML_NMS: dict[str, Any] = {"method": "soft", "soft_nms_sigma": 0.5, "iou_threshold": 0.5,
                              "score_threshold": 0.001}
#: automl's pre-NMS selection per mode: 5,000 (anchor, class) pairs for evaluation
#: (``eval.py``'s ``max_nms_inputs``), every anchor's best class for serving (``0``).
MODE_PRE_NMS_TOP_K: dict[str, int | None] = {"per_class": 5000, "global": None}


@keras.saving.register_keras_serializable(package="keras_efficient")
class ToOriginalPixels(keras.layers.Layer):
    """Map network-input boxes back to the caller's image with ``image_info``.

    ``image_info`` is ``[B, 3]``: (scale, original height, original width), where the image
    was resized by ``scale`` keeping its aspect ratio and padded at the bottom/right. Boxes are
    multiplied by ``1 / scale`` as automl does; ``clip=True`` (default) also clips them to the
    original image, which automl does not (``clip=False`` reproduces automl).
    ``resize="stretch"`` (with the network ``input_size``) undoes a stretch instead: each axis
    by original size / input size; the scale in ``image_info`` is then not used.

    Example::

        boxes = ToOriginalPixels()(boxes, image_info)  # image_info: [B, 3] (scale, height, width)
    """

    def __init__(self, clip: bool = True, resize: str = "letterbox",
                 input_size: tuple[int, int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clip = bool(clip)
        self.resize = check_resize(resize)
        if self.resize == "stretch" and input_size is None:
            raise ValueError("ToOriginalPixels(resize='stretch') needs the network input_size "
                             "(height, width) to undo the stretch.")
        self.input_size = None if input_size is None else (int(input_size[0]),
                                                           int(input_size[1]))

    def call(self, boxes: Any, image_info: Any) -> Any:
        info = ops.cast(image_info, "float32")
        if self.input_size is not None and self.resize == "stretch":
            return map_stretched_boxes_to_original(boxes, self.input_size, info[:, 1:3],
                                                   clip=self.clip)
        return map_boxes_to_original(boxes, info[:, 0], info[:, 1:3], clip=self.clip)

    def compute_output_shape(self, boxes_shape: Any, image_info_shape: Any) -> Any:
        return boxes_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "clip": self.clip, "resize": self.resize,
                "input_size": None if self.input_size is None else list(self.input_size)}


def default_nms_method(detector: Any) -> str:
    """``"soft"`` (automl's gaussian soft-NMS) for a detector built with ``weights="coco"``
    (``detector.pretrained == "coco"``), ``"hard"`` otherwise.

    Example::

        default_nms_method(EfficientDet("lite0", weights="coco"))  # "soft"
    """
    return "soft" if getattr(detector, "pretrained", None) == "coco" else "hard"


def inference_model(detector: Any, *,
                    max_detections: int = 100, score_threshold: float = 0.001,
                    iou_threshold: float | None = None, method: str | None = None,
                    soft_nms_sigma: float = 0.5, mode: str | None = None,
                    class_aware: bool | None = None, pre_nms_top_k: int | str | None = "auto",
                    clip: str | None = None, clip_to_original: bool = True,
                    fold_batch_norm: bool = True, name: str | None = None) -> keras.Model:
    """Wrap a raw detector (an ``EfficientDetector``, which carries its spec) into
    ``(image, image_info) -> detections`` with static shapes. Images are fed as the detector's
    ``resize`` mode says (letterboxed or stretched, e.g. by
    :func:`keras_efficient.data.transforms.fit_to_input`), and boxes mapped back accordingly.

    Outputs a dict: ``boxes`` ``[B, max_detections, 4]`` (ymin, xmin, ymax, xmax in original
    pixels), ``scores`` ``[B, max_detections]``, ``classes`` (int32, 0-based) and
    ``num_detections`` ``[B]``. The post-processing is
    :class:`~keras_efficient.detection.postprocess.NonMaxSuppression`, automl's modes:
    ``mode="per_class"`` (default; ``class_aware=True``) is automl's evaluation
    (``postprocess_per_class``), ``"global"`` (``class_aware=False``) its serving
    (``postprocess_global``).

    Defaults follow automl: ``pre_nms_top_k="auto"`` is 5,000 (anchor, class) pairs for
    ``per_class`` and every anchor's best class for ``global``; ``method=None`` is automl's
    gaussian soft-NMS (sigma 0.5, IoU 0.5) for detectors built with ``weights="coco"`` and
    hard NMS (IoU 0.5) for others (:func:`default_nms_method`). ``soft_nms_sigma`` is the
    paper's sigma. ``clip``: see ``NonMaxSuppression`` (``None``: automl's per mode).
    ``clip_to_original`` (default ``True``, this package's choice) clips the mapped boxes to the
    original image; automl only multiplies by the image scale (``False``).
    ``fold_batch_norm`` (default ``True``) runs ``detector.for_inference()``, its batch
    normalizations folded into the convolutions (same outputs to float rounding, less time;
    models without that method run as they are): a snapshot of the detector's weights.
    ``False`` runs the detector itself, whose later weight changes (training) it follows.

    Example::

        model = inference_model(EfficientDetLite0(weights="coco"), mode="global")
        padded, scale = resize_and_pad(image, (320, 320), pad_value=detector.pad_value)
        out = model.predict([padded[None], image_info(image, scale)[None]])
        out["boxes"][0, :int(out["num_detections"][0])]  # in the original image's pixels
    """
    resolved = resolve_mode(mode, class_aware)
    if pre_nms_top_k == "auto":
        pre_nms_top_k = MODE_PRE_NMS_TOP_K[resolved]
    elif isinstance(pre_nms_top_k, str):
        raise ValueError(f"pre_nms_top_k must be 'auto', None or an int; received "
                         f"{pre_nms_top_k!r}.")
    image = keras.Input(shape=(*detector.image_size, 3), name="image")
    info = keras.Input(shape=(3,), name="image_info")
    folded = getattr(detector, "for_inference", None) if fold_batch_norm else None
    network = detector if folded is None else folded()
    raw = network(image)
    nms = NonMaxSuppression.from_anchor_spec(
        detector.anchor_spec(), max_detections=max_detections,
        score_threshold=score_threshold, iou_threshold=iou_threshold,
        method=method or default_nms_method(detector), soft_nms_sigma=soft_nms_sigma,
        mode=resolved, pre_nms_top_k=pre_nms_top_k, clip=clip, name="nms")
    boxes, scores, classes, count = nms(raw["class_logits"], raw["box_regression"])
    boxes = ToOriginalPixels(clip=clip_to_original, resize=detector.resize,
                             input_size=detector.image_size,
                             name="to_original_pixels")(boxes, info)
    outputs = {"boxes": boxes, "scores": scores, "classes": classes, "num_detections": count}
    return keras.Model([image, info], outputs, name=name or f"{detector.name}_inference")
