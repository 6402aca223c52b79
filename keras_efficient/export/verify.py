"""Check an exported artifact against the Keras model it came from, and time it.

Classifiers: max |Δ| of the outputs and top-1 agreement on the representative images.
Detectors: COCO AP of the artifact and of the Keras model with the *same* post-processing
(automl's global mode: best class per anchor, class-agnostic hard NMS, the export's thresholds)
on a held-out COCO-format set, through
:func:`keras_efficient.evaluation.coco_metrics.evaluate_predict_fn`; the difference is what
conversion and quantization cost.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.data.transforms import PAD_VALUE, PadValue, fit_to_input
from keras_efficient.detection.inference import inference_model
from keras_efficient.detection.postprocess import (
    NonMaxSuppression,
    flatten_network_outputs,
    map_boxes_to_original,
    map_stretched_boxes_to_original,
)
from keras_efficient.evaluation.coco_metrics import evaluate_predict_fn
from keras_efficient.evaluation.predict import predict
from keras_efficient.export.detector_tflite import PostprocessOptions
from keras_efficient.export.runtime import load_interpreter, run
from keras_efficient.export.tflite import ExportError

Detections = list[dict[str, Any]]
PredictFn = Callable[[list[np.ndarray]], Detections]


@dataclasses.dataclass(frozen=True)
class HeldOutSet:
    """A COCO-format set to measure detection AP on: annotations, images and how many.

    Example::

        held_out = HeldOutSet("val/instances_val.json", "val/", data.category_ids, max_images=50)
    """

    annotations: str | os.PathLike[str]
    image_dir: str | os.PathLike[str]
    category_ids: Sequence[int]
    max_images: int = 50


def compare_outputs(model: Any, path: Path, images: Sequence[np.ndarray]) -> dict[str, float]:
    """max |Δ| per output (matched by shape), and top-1 agreement for ``[1, classes]`` outputs.

    Example::

        compare_outputs(model, Path("model_float16.tflite"), images[:8])
        # {"max_abs_delta": ..., "top1_agreement": ...}
    """
    interpreter = load_interpreter(path)
    deltas: list[float] = []
    agree: list[bool] = []
    for image in images:
        expected = model.predict(image, verbose=0)
        expected_list = ([expected[k] for k in sorted(expected)] if isinstance(expected, dict)
                         else [expected])
        by_shape = {tuple(o.shape): o for o in run(interpreter, image)}
        for want in expected_list:
            have = by_shape.get(tuple(want.shape))
            if have is None:
                raise ExportError(f"verify: no TFLite output of shape {want.shape} in {path.name}")
            deltas.append(float(np.max(np.abs(have - want))))
            if want.ndim == 2:
                agree.append(int(np.argmax(have)) == int(np.argmax(want)))
    result = {"max_abs_delta": max(deltas)}
    if agree:
        result["top1_agreement"] = float(np.mean(agree))
    return result


def keras_detector_predict_fn(detector: Any, options: PostprocessOptions) -> PredictFn:
    """The Keras detector with the export's post-processing semantics, as a ``predict_fn``.

    Example::

        detection_ap(keras_detector_predict_fn(detector, PostprocessOptions()), held_out)
    """
    model = inference_model(detector, mode="global", method="hard",
                            max_detections=options.max_detections,
                            score_threshold=options.score_threshold,
                            iou_threshold=options.iou_threshold,
                            pre_nms_top_k=options.pre_nms_top_k)

    def predict_fn(images: list[np.ndarray]) -> Detections:
        return predict(model, images)

    return predict_fn


def tflite_detector_predict_fn(path: Path, options: PostprocessOptions,
                               anchor_spec: AnchorSpec | None = None, *,
                               pad_value: PadValue = PAD_VALUE,
                               resize: str = "letterbox") -> PredictFn:
    """A TFLite detector export as a ``predict_fn``: boxes mapped back to original pixels and
    clipped to the image (as the Keras path's ``inference_model`` does).

    ``"none"`` exports are decoded with this package's own NMS (same settings), so that all
    three post-processing choices are measured on the same footing. Images are fed as
    :func:`~keras_efficient.data.transforms.fit_to_input` makes them: ``resize="letterbox"``
    as a letterbox-trained Keras model's (pass the detector's ``pad_value``, so they are padded
    the same way) or ``"stretch"``, as the Task Library and MediaPipe feed (the whole image
    resized to the input). A uint8-input model gets the pixels rounded to bytes
    (:func:`~keras_efficient.export.runtime.run`), the buffer a phone app hands it.

    Example::

        detection_ap(tflite_detector_predict_fn(Path("lite0_int8.tflite"),
                                                PostprocessOptions(), resize="stretch"), held_out)
    """
    interpreter = load_interpreter(path)
    height, width = (int(d) for d in interpreter.get_input_details()[0]["shape"][1:3])
    nms = None
    if options.postprocess in ("none", "network"):
        if anchor_spec is None:
            raise ValueError(f"A postprocess={options.postprocess!r} export needs anchor_spec "
                             "(the detector's "
                             "detector.anchor_spec()) to be decoded.")
        nms = NonMaxSuppression.from_anchor_spec(
            anchor_spec, max_detections=options.max_detections,
            pre_nms_top_k=options.pre_nms_top_k, score_threshold=options.score_threshold,
            iou_threshold=options.iou_threshold, mode="global", method="hard")

    size = (height, width)

    def one(image: np.ndarray) -> dict[str, Any]:
        fed, scale = fit_to_input(image, size, resize=resize, pad_value=pad_value)
        outputs = run(interpreter, fed[None])
        if nms is not None and options.postprocess == "network":
            logits, encodings = flatten_network_outputs(outputs)
        elif nms is not None:
            encodings, scores = outputs
            logits = np.log(np.clip(scores, 1e-6, 1 - 1e-6) / np.clip(1 - scores, 1e-6, None))
        if nms is not None:
            boxes, kept, classes, count = (np.asarray(v) for v in nms(logits, encodings))
            n = int(count[0])
            pixels, scores, labels = boxes[0, :n], kept[0, :n], classes[0, :n].astype(int)
        else:
            boxes, classes, scores, count = outputs
            n = int(count[0])
            pixels = boxes[0, :n] * np.asarray([height, width, height, width], "float32")
            scores, labels = scores[0, :n], np.round(classes[0, :n]).astype(int)
        original = image.shape[:2]
        mapped = (map_stretched_boxes_to_original(pixels, size, original) if resize == "stretch"
                  else map_boxes_to_original(pixels, scale, original))
        return {"boxes": mapped, "scores": scores, "classes": labels}

    def predict_fn(images: list[np.ndarray]) -> Detections:
        return [one(image) for image in images]

    return predict_fn


def detection_ap(predict_fn: PredictFn, held_out: HeldOutSet) -> dict[str, float]:
    """COCO AP, AP50 and AP75 of ``predict_fn`` on the first ``max_images`` of ``held_out``.

    Example::

        detection_ap(predict_fn, held_out)  # {"AP": ..., "AP50": ..., "AP75": ...}
    """
    from keras_efficient.evaluation.coco_metrics import load_coco_ground_truth

    gt = load_coco_ground_truth(held_out.annotations)
    ids = sorted(gt.getImgIds())[: held_out.max_images]
    metrics = evaluate_predict_fn(predict_fn, gt, held_out.image_dir,
                                  label_map=list(held_out.category_ids), image_ids=ids,
                                  progress=False, per_class=False)
    return {key: round(float(metrics[key]), 5) for key in ("AP", "AP50", "AP75")}


def latency_ms(path: Path, image: np.ndarray, threads: int, runs: int) -> float:
    """Median LiteRT invoke time (ms) of ``path`` on ``image`` after one warm-up run.

    Example::

        latency_ms(Path("model_int8.tflite"), images[0], threads=2, runs=20)
    """
    interpreter = load_interpreter(path, num_threads=threads)
    run(interpreter, image)
    return median_ms(lambda: run(interpreter, image), runs)


def median_ms(call: Callable[[], Any], runs: int) -> float:
    """Median wall time of ``call()`` in ms over ``runs`` runs.

    Example::

        median_ms(lambda: model(images[0]), runs=10)
    """
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)
