"""The inference detector: raw EfficientDet + decoding + NMS + mapping to original pixels."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_efficient.detection.postprocess import NonMaxSuppression, map_boxes_to_original


@keras.saving.register_keras_serializable(package="keras_efficient")
class ToOriginalPixels(keras.layers.Layer):
    """Map network-input boxes back to the caller's image with ``image_info``.

    ``image_info`` is ``[B, 3]``: (scale, original height, original width), where the image
    was resized by ``scale`` keeping its aspect ratio and padded at the bottom/right.

    Example::

        boxes = ToOriginalPixels()(boxes, image_info)  # image_info: [B, 3] (scale, height, width)
    """

    def call(self, boxes: Any, image_info: Any) -> Any:
        info = ops.cast(image_info, "float32")
        return map_boxes_to_original(boxes, info[:, 0], info[:, 1:3])

    def compute_output_shape(self, boxes_shape: Any, image_info_shape: Any) -> Any:
        return boxes_shape


def inference_model(detector: Any, *,
                    max_detections: int = 100, score_threshold: float = 0.001,
                    iou_threshold: float | None = None, method: str = "hard",
                    class_aware: bool = True, pre_nms_top_k: int | None = 5000,
                    name: str | None = None) -> keras.Model:
    """Wrap a raw detector (an ``EfficientDetector``, which carries its spec) into
    ``(image, image_info) -> detections`` with static shapes.

    Outputs a dict: ``boxes`` ``[B, max_detections, 4]`` (ymin, xmin, ymax, xmax in original
    pixels), ``scores`` ``[B, max_detections]``, ``classes`` (int32, 0-based) and
    ``num_detections`` ``[B]``. ``class_aware=True`` is the evaluation setting (top
    (anchor, class) pairs, per-class NMS); ``False`` the serving one (best class per anchor).

    Example::

        model = inference_model(EfficientDetLite0(weights="coco"), class_aware=False)
        padded, scale = resize_and_pad(image, (320, 320))
        out = model.predict([padded[None], image_info(image, scale)[None]])
        out["boxes"][0, :int(out["num_detections"][0])]  # in the original image's pixels
    """
    image = keras.Input(shape=(*detector.image_size, 3), name="image")
    info = keras.Input(shape=(3,), name="image_info")
    raw = detector(image)
    nms = NonMaxSuppression.from_anchor_spec(
        detector.anchor_spec(), max_detections=max_detections,
        score_threshold=score_threshold, iou_threshold=iou_threshold, method=method,
        class_aware=class_aware, pre_nms_top_k=pre_nms_top_k, name="nms")
    boxes, scores, classes, count = nms(raw["class_logits"], raw["box_regression"])
    boxes = ToOriginalPixels(name="to_original_pixels")(boxes, info)
    outputs = {"boxes": boxes, "scores": scores, "classes": classes, "num_detections": count}
    return keras.Model([image, info], outputs, name=name or f"{detector.name}_inference")
