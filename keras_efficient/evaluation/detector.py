"""COCO evaluation of a Keras detector (the evaluation setting of REFERENCE §2.7)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from keras_efficient.detection.inference import inference_model
from keras_efficient.evaluation.coco_metrics import evaluate_predict_fn
from keras_efficient.evaluation.predict import predict


def evaluate_detector(detector: Any, gt_json: str | os.PathLike[str],
                      image_dir: str | os.PathLike[str], *,
                      label_map: Sequence[int] | Mapping[int, int] | None = None,
                      batch_size: int = 8,
                      max_detections: int = 100, score_threshold: float = 0.001,
                      progress: bool = True, output_json: str | os.PathLike[str] | None = None,
                      image_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """COCO metrics of a raw detector on a COCO-format split.

    Uses automl's evaluation post-processing (``postprocess_per_class``): top 5,000
    (anchor, class) pairs, NMS per class, the top ``max_detections`` per image over all
    classes; soft-NMS for ``weights="coco"`` detectors, hard NMS for others
    (:func:`~keras_efficient.detection.inference.inference_model`); boxes are mapped back to
    each image's original pixels and classes to the original category ids through
    ``label_map`` (index -> id; by default the detector's own ``category_ids``). ``image_ids``
    restricts the evaluation to those images (e.g. the readable ones of a
    ``CocoDataset(..., on_error="skip")``).

    Example::

        data = CocoDataset("annotations/instances_val.json")
        metrics = evaluate_detector(detector, "annotations/instances_val.json", "val/",
                                    label_map=data.category_ids, output_json="metrics.json")
    """
    model = inference_model(detector, mode="per_class", max_detections=max_detections,
                            score_threshold=score_threshold)
    return evaluate_predict_fn(
        lambda images: predict(model, images, batch_size=batch_size), gt_json, image_dir,
        label_map=detector.category_ids if label_map is None else label_map,
        image_ids=image_ids, batch_size=batch_size, progress=progress, output_json=output_json)
