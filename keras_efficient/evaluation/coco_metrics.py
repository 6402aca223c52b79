"""COCO box metrics (pycocotools ``COCOeval``) for detections from any predict function.

Detections are COCO results dicts ``{image_id, category_id, bbox: [x, y, w, h], score}`` with the
dataset's *original* category ids and boxes in original-image pixels. :func:`detections_to_coco`
converts this package's ``(ymin, xmin, ymax, xmax)`` boxes and contiguous class indices;
:func:`evaluate_predict_fn` runs any ``predict_fn`` (a Keras model today, a TFLite interpreter
tomorrow) over the ground truth's images and scores it.

Following pycocotools, a metric without ground truth (e.g. ``APs`` when there are no small
objects, or a category absent from the evaluated images) is ``-1.0``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_efficient.data.transforms import load_image
from keras_efficient.files import write_json_atomic

COCO_METRIC_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)

_INSTALL_HINT = (
    'COCO evaluation needs pycocotools; install it with `pip install "keras_efficient[coco]"` '
    "(or `pip install pycocotools`)."
)

PredictFn = Callable[[list[np.ndarray]], Sequence[Mapping[str, Any]]]


NO_IMAGES = ("No images to evaluate: the ground truth lists no images (or none of them could be "
             "read); COCO AP is undefined. Check the json's 'images' and the image folder.")

def _pycocotools() -> tuple[Any, Any]:
    """``(COCO, COCOeval)``, imported lazily with an install hint."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL_HINT) from error
    return COCO, COCOeval


def _quiet(verbose: bool) -> contextlib.AbstractContextManager[Any]:
    """Swallow pycocotools' prints unless ``verbose``."""
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def load_coco_ground_truth(gt_json: str | os.PathLike[str] | Any, verbose: bool = False) -> Any:
    """A pycocotools ``COCO`` object from an instances-json path (or an existing ``COCO``).

    Annotations without ``area`` get ``w * h`` and without ``iscrowd`` get 0, so hand-made
    ground truth evaluates without surprises.

    Example::

        gt = load_coco_ground_truth("annotations/instances_val.json")
        gt.getImgIds()[:3]
    """
    coco_cls, _ = _pycocotools()
    if isinstance(gt_json, str | os.PathLike):
        path = Path(gt_json)
        if not path.is_file():
            raise FileNotFoundError(f"COCO ground-truth json not found: {path}")
        with _quiet(verbose):
            gt = coco_cls(str(path))
    elif hasattr(gt_json, "dataset") and hasattr(gt_json, "getImgIds"):
        gt = gt_json
    else:
        raise TypeError(
            f"gt_json must be a path to a COCO instances json or a pycocotools COCO object; "
            f"received {type(gt_json).__name__}."
        )
    for ann in gt.dataset.get("annotations", []):
        ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
        ann.setdefault("iscrowd", 0)
    return gt


def detections_to_coco(image_id: int, boxes_yxyx: Any, scores: Any, classes: Any,
                       label_map: Sequence[int] | Mapping[int, int]) -> list[dict[str, Any]]:
    """``[K, 4]`` (ymin, xmin, ymax, xmax) pixel boxes + contiguous classes -> COCO results.

    ``label_map[c]`` is the original category id of contiguous class ``c``.

    Example::

        detections_to_coco(7, [[10, 20, 50, 80]], [0.9], [0], label_map=[1, 3, 7])
        # [{"image_id": 7, "category_id": 1, "bbox": [20.0, 10.0, 60.0, 40.0], "score": 0.9}]
    """
    boxes = np.asarray(boxes_yxyx, dtype="float64").reshape(-1, 4)
    scores_ = np.asarray(scores, dtype="float64").reshape(-1)
    classes_ = np.asarray(classes).reshape(-1)
    if not len(boxes) == len(scores_) == len(classes_):
        raise ValueError(
            f"boxes, scores and classes must have the same length; received {len(boxes)}, "
            f"{len(scores_)} and {len(classes_)}."
        )
    results = []
    for (ymin, xmin, ymax, xmax), score, cls in zip(boxes, scores_, classes_, strict=True):
        index = int(cls)
        try:
            category_id = int(label_map[index])
        except (IndexError, KeyError):
            raise ValueError(
                f"Class index {index} is not in label_map ({len(label_map)} entries)."
            ) from None
        results.append({
            "image_id": int(image_id),
            "category_id": category_id,
            "bbox": [float(xmin), float(ymin), float(xmax - xmin), float(ymax - ymin)],
            "score": float(score),
        })
    return results


def _clean_detections(detections: Iterable[Mapping[str, Any]], known_images: set[int],
                      known_categories: set[int], keep_images: set[int]) -> list[dict[str, Any]]:
    """Validated copies (pycocotools mutates its input) restricted to ``keep_images``."""
    cleaned = []
    for det in detections:
        image_id, category_id = int(det["image_id"]), int(det["category_id"])
        if image_id not in known_images:
            raise ValueError(
                f"Detection for image_id {image_id}, which is not in the ground truth."
            )
        if category_id not in known_categories:
            raise ValueError(
                f"Detection with category_id {category_id}, which is not a ground-truth category "
                f"{sorted(known_categories)}; category ids must be the ORIGINAL ids (check "
                f"label_map)."
            )
        if image_id not in keep_images:
            continue
        bbox = [float(v) for v in det["bbox"]]
        if len(bbox) != 4:
            raise ValueError(f"A bbox must be [x, y, w, h]; received {det['bbox']}.")
        cleaned.append({"image_id": image_id, "category_id": category_id, "bbox": bbox,
                        "score": float(det["score"])})
    return cleaned


def _empty_results(gt: Any) -> Any:
    """A results ``COCO`` with no detections (``loadRes`` cannot take an empty list)."""
    coco_cls, _ = _pycocotools()
    res = coco_cls()
    res.dataset = {"images": list(gt.dataset["images"]),
                   "categories": list(gt.dataset.get("categories", [])), "annotations": []}
    with _quiet(False):
        res.createIndex()
    return res


def evaluate_detections(gt_json: str | os.PathLike[str] | Any,
                        detections: Iterable[Mapping[str, Any]], *,
                        image_ids: Sequence[int] | None = None, per_class: bool = True,
                        output_json: str | os.PathLike[str] | None = None,
                        verbose: bool = False) -> dict[str, Any]:
    """COCO bbox metrics of ``detections`` against ``gt_json`` (path or pycocotools ``COCO``).

    Evaluates all ground-truth images, or only ``image_ids`` (detections on other images are
    dropped). Returns the 12 :data:`COCO_METRIC_NAMES` as floats in [0, 1] (-1 without ground
    truth), ``per_class_AP`` ({category name: AP}, if ``per_class``), ``num_images`` and
    ``num_detections``; also written atomically to ``output_json`` if given.

    Example::

        metrics = evaluate_detections("instances_val.json", detections, output_json="m.json")
        metrics["AP"], metrics["AP50"], metrics["per_class_AP"]
    """
    _, cocoeval_cls = _pycocotools()
    gt = load_coco_ground_truth(gt_json, verbose=verbose)
    known_images = set(gt.getImgIds())
    if image_ids is None:
        eval_ids = sorted(known_images)
    else:
        eval_ids = sorted({int(i) for i in image_ids})
        missing = [i for i in eval_ids if i not in known_images]
        if missing:
            raise ValueError(f"image_ids not in the ground truth: {missing[:10]}")
    if not eval_ids:
        raise ValueError(NO_IMAGES)
    if not gt.getAnnIds(imgIds=eval_ids, iscrowd=False):
        raise ValueError(f"The ground truth has no (non-crowd) annotations on the {len(eval_ids)}"
                         " evaluated images, so COCO AP is undefined (pycocotools reports -1); "
                         "evaluate on an annotated split.")
    dets = _clean_detections(detections, known_images, set(gt.getCatIds()), set(eval_ids))

    with _quiet(verbose):
        results = gt.loadRes(dets) if dets else _empty_results(gt)
        coco_eval = cocoeval_cls(gt, results, "bbox")
        coco_eval.params.imgIds = eval_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()

    metrics: dict[str, Any] = {
        name: float(value) for name, value in zip(COCO_METRIC_NAMES, coco_eval.stats, strict=True)
    }
    if per_class:
        # precision: [iou thresholds, recall points, categories, area ranges, max dets].
        precision = coco_eval.eval["precision"]
        per_class_ap = {}
        for k, category_id in enumerate(coco_eval.params.catIds):
            values = precision[:, :, k, 0, -1]
            values = values[values > -1]
            name = str(gt.cats[category_id].get("name", category_id))
            per_class_ap[name] = float(np.mean(values)) if values.size else -1.0
        metrics["per_class_AP"] = per_class_ap
    metrics["num_images"] = len(eval_ids)
    metrics["num_detections"] = len(dets)
    if output_json is not None:
        Path(output_json).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_json, metrics)
    return metrics


def evaluate_predict_fn(predict_fn: PredictFn, gt_json: str | os.PathLike[str] | Any,
                        image_dir: str | os.PathLike[str], *,
                        label_map: Sequence[int] | Mapping[int, int],
                        image_ids: Sequence[int] | None = None, batch_size: int = 1,
                        progress: bool = True, per_class: bool = True,
                        output_json: str | os.PathLike[str] | None = None,
                        verbose: bool = False) -> dict[str, Any]:
    """Run ``predict_fn`` over the ground truth's images and return COCO metrics.

    ``predict_fn(images)`` takes a list of float32 RGB ``[H, W, 3]`` arrays in [0, 255] (original
    sizes) and returns one dict per image with ``boxes`` ``[K, 4]`` (ymin, xmin, ymax, xmax, in
    original pixels), ``scores`` ``[K]`` and contiguous ``classes`` ``[K]``; ``label_map`` maps
    those to original category ids. Images are ``image_dir / file_name``. Other arguments as in
    :func:`evaluate_detections`.

    Example::

        model = inference_model(detector)  # evaluation setting: class-aware NMS
        metrics = evaluate_predict_fn(lambda images: predict(model, images),
                                      "val/instances_val.json", "val/", label_map=data.category_ids)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; received {batch_size}.")
    gt = load_coco_ground_truth(gt_json, verbose=verbose)
    ids = sorted(gt.getImgIds()) if image_ids is None else [int(i) for i in image_ids]
    if not ids:
        raise ValueError(NO_IMAGES)
    unknown = [i for i in ids if i not in gt.imgs]
    if unknown:
        raise ValueError(f"image_ids not in the ground truth: {unknown[:10]}")
    root = Path(image_dir)
    detections: list[dict[str, Any]] = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        images = [load_image(root / gt.imgs[i]["file_name"]) for i in chunk]
        outputs = list(predict_fn(images))
        if len(outputs) != len(chunk):
            raise ValueError(
                f"predict_fn returned {len(outputs)} results for {len(chunk)} images."
            )
        for image_id, out in zip(chunk, outputs, strict=True):
            detections += detections_to_coco(image_id, out["boxes"], out["scores"],
                                              out["classes"], label_map)
        if progress:
            done = start + len(chunk)
            end = "\n" if done == len(ids) else ""
            print(f"\rCOCO eval: {done}/{len(ids)} images", end=end, file=sys.stderr, flush=True)
    return evaluate_detections(gt, detections, image_ids=ids, per_class=per_class,
                               output_json=output_json, verbose=verbose)


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """A readable text table of the COCO metrics (percent) and, if present, per-class AP.

    Example::

        print(format_metrics_table(metrics))  # "AP  65.30" ... then per-class AP
    """

    def pct(value: Any) -> str:
        return "n/a" if value is None or float(value) < 0 else f"{100 * float(value):.2f}"

    names = [n for n in COCO_METRIC_NAMES if n in metrics]
    lines = [f"{'metric':<10} {'value':>8}", "-" * 19]
    lines += [f"{name:<10} {pct(metrics[name]):>8}" for name in names]
    counts = [(k, metrics[k]) for k in ("num_images", "num_detections") if k in metrics]
    if counts:
        lines += ["-" * 19] + [f"{k.replace('num_', ''):<10} {v:>8}" for k, v in counts]
    per_class = metrics.get("per_class_AP") or {}
    if per_class:
        width = max(10, *(len(str(n)) for n in per_class))
        lines += ["", f"{'category':<{width}} {'AP':>8}", "-" * (width + 9)]
        lines += [f"{name:<{width}} {pct(ap):>8}" for name, ap in per_class.items()]
    return "\n".join(lines)
