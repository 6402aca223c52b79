"""COCO metrics against hand-designed ground truth (pycocotools COCOeval underneath)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("pycocotools")

from keras_efficient.evaluation.coco_metrics import (
    COCO_METRIC_NAMES,
    detections_to_coco,
    evaluate_detections,
    evaluate_predict_fn,
    format_metrics_table,
    load_coco_ground_truth,
)

# Non-contiguous original ids; contiguous class c is LABEL_MAP[c].
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "bird"}]
LABEL_MAP = [1, 3, 7]
# image id -> (height, width, [(category id, [x, y, w, h])]); every box is "large" (> 96^2).
IMAGES = {
    1: (240, 320, [(1, [10, 10, 100, 100])]),
    2: (200, 300, [(3, [50, 40, 120, 110]), (7, [150, 60, 100, 120])]),
    3: (160, 200, [(7, [20, 30, 110, 100])]),
}


def write_gt(tmp_path, images=IMAGES, with_area=True):
    """A tiny COCO instances json; optionally without ``area``/``iscrowd`` (hand-made style)."""
    annotations: list[dict] = []
    for image_id, (_, _, objects) in images.items():
        for category_id, bbox in objects:
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                   "bbox": bbox}
            if with_area:
                ann.update(area=bbox[2] * bbox[3], iscrowd=0)
            annotations.append(ann)
    data = {
        "images": [{"id": i, "file_name": f"img_{i}.png", "height": h, "width": w}
                   for i, (h, w, _) in images.items()],
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def perfect_detections(images=IMAGES):
    return [{"image_id": i, "category_id": c, "bbox": list(b), "score": 1.0}
            for i, (_, _, objs) in images.items() for c, b in objs]


def test_perfect_detections_give_ap_1(tmp_path, capsys):
    metrics = evaluate_detections(write_gt(tmp_path), perfect_detections())
    for name in ("AP", "AP50", "AP75", "APl", "AR1", "AR10", "AR100", "ARl"):
        assert metrics[name] == pytest.approx(1.0), name
    assert metrics["APs"] == metrics["APm"] == -1.0  # no small/medium ground truth
    assert metrics["per_class_AP"] == pytest.approx({"cat": 1.0, "dog": 1.0, "bird": 1.0})
    assert metrics["num_images"] == 3 and metrics["num_detections"] == 4
    assert set(COCO_METRIC_NAMES) <= set(metrics)
    assert capsys.readouterr().out == ""  # pycocotools' prints are swallowed


def test_verbose_lets_pycocotools_print(tmp_path, capsys):
    evaluate_detections(write_gt(tmp_path), perfect_detections(), verbose=True)
    assert "Average Precision" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("shift", "ap"),
    [
        (20, 0.4),  # IoU 8000/12000 = 0.667: thresholds 0.50..0.65 pass -> 4/10
        (10, 0.7),  # IoU 9000/11000 = 0.818: thresholds 0.50..0.80 pass -> 7/10
    ],
)
def test_shifted_box_gives_fraction_of_iou_thresholds(tmp_path, shift, ap):
    one = {1: IMAGES[1]}
    det = [{"image_id": 1, "category_id": 1, "bbox": [10 + shift, 10, 100, 100], "score": 0.9}]
    metrics = evaluate_detections(write_gt(tmp_path, one), det)
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(1.0 if shift == 10 else 0.0)
    assert metrics["AP"] == pytest.approx(ap)
    assert metrics["AR100"] == pytest.approx(ap)  # one box: recall 1 exactly where it matches
    assert metrics["per_class_AP"]["cat"] == pytest.approx(ap)
    assert metrics["per_class_AP"]["dog"] == -1.0  # no ground truth for this category


def test_ground_truth_without_area_or_iscrowd(tmp_path):
    metrics = evaluate_detections(write_gt(tmp_path, with_area=False), perfect_detections())
    assert metrics["AP"] == pytest.approx(1.0)


def test_accepts_a_coco_object(tmp_path):
    gt = load_coco_ground_truth(write_gt(tmp_path))
    assert evaluate_detections(gt, perfect_detections())["AP"] == pytest.approx(1.0)


def test_zero_detections_give_zero(tmp_path):
    metrics = evaluate_detections(write_gt(tmp_path), [])
    assert metrics["AP"] == metrics["AP50"] == metrics["AR100"] == 0.0
    assert metrics["per_class_AP"] == {"cat": 0.0, "dog": 0.0, "bird": 0.0}
    assert metrics["num_detections"] == 0


def test_image_ids_subset_drops_other_detections(tmp_path):
    dets = perfect_detections()
    dets = [d for d in dets if d["image_id"] != 3]  # image 3's bird is missed...
    metrics = evaluate_detections(write_gt(tmp_path), dets, image_ids=[1, 2])
    assert metrics["AP"] == pytest.approx(1.0)  # ...but image 3 is not evaluated
    assert metrics["num_images"] == 2 and metrics["num_detections"] == 3
    only_3 = evaluate_detections(write_gt(tmp_path), dets, image_ids=[3])
    assert only_3["AP"] == 0.0 and only_3["num_detections"] == 0
    assert only_3["per_class_AP"]["cat"] == -1.0


def test_bad_ids_raise(tmp_path):
    gt = write_gt(tmp_path)
    with pytest.raises(ValueError, match="label_map"):
        evaluate_detections(gt, [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1],
                                  "score": 1.0}])
    with pytest.raises(ValueError, match="image_id 99"):
        evaluate_detections(gt, [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1],
                                  "score": 1.0}])
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_detections(gt, [], image_ids=[42])
    with pytest.raises(FileNotFoundError):
        evaluate_detections(tmp_path / "missing.json", [])


def test_detections_to_coco_maps_boxes_and_noncontiguous_ids():
    boxes = np.array([[10.0, 20.0, 110.0, 70.0], [0.0, 0.0, 5.0, 8.0]])  # ymin, xmin, ymax, xmax
    out = detections_to_coco(5, boxes, np.array([0.9, 0.2], "float32"), np.array([2, 1]),
                             LABEL_MAP)
    assert out == [
        {"image_id": 5, "category_id": 7, "bbox": [20.0, 10.0, 50.0, 100.0],
         "score": pytest.approx(0.9)},
        {"image_id": 5, "category_id": 3, "bbox": [0.0, 0.0, 8.0, 5.0],
         "score": pytest.approx(0.2)},
    ]
    assert all(type(v) in (int, float, list) for d in out for v in d.values())  # json-friendly
    assert detections_to_coco(1, np.zeros((0, 4)), [], [], LABEL_MAP) == []
    assert detections_to_coco(1, [[0, 0, 1, 1]], [1.0], [0], {0: 90})[0]["category_id"] == 90
    with pytest.raises(ValueError, match="label_map"):
        detections_to_coco(1, [[0, 0, 1, 1]], [1.0], [3], LABEL_MAP)
    with pytest.raises(ValueError, match="same length"):
        detections_to_coco(1, [[0, 0, 1, 1]], [1.0, 0.5], [0], LABEL_MAP)


def yxyx_predictions(images=IMAGES):
    """Per image: the ground truth as our (ymin, xmin, ymax, xmax) + contiguous classes."""
    out = {}
    for image_id, (_, _, objects) in images.items():
        boxes = [[y, x, y + h, x + w] for _, (x, y, w, h) in objects]
        out[image_id] = {"boxes": np.array(boxes, "float32"),
                         "scores": np.linspace(0.9, 0.5, len(objects)).astype("float32"),
                         "classes": np.array([LABEL_MAP.index(c) for c, _ in objects])}
    return out


def to_coco(preds, label_map=LABEL_MAP):
    return [d for i, p in preds.items()
            for d in detections_to_coco(i, p["boxes"], p["scores"], p["classes"], label_map)]


def test_label_map_decides_the_category(tmp_path):
    gt = write_gt(tmp_path)
    preds = yxyx_predictions()
    assert evaluate_detections(gt, to_coco(preds))["AP"] == pytest.approx(1.0)
    swapped = [3, 1, 7]  # cats and dogs confused
    per_class = evaluate_detections(gt, to_coco(preds, swapped))["per_class_AP"]
    assert per_class == {"cat": 0.0, "dog": 0.0, "bird": pytest.approx(1.0)}


def test_output_json_written_atomically(tmp_path):
    out = tmp_path / "results" / "metrics.json"
    metrics = evaluate_detections(write_gt(tmp_path), perfect_detections(), output_json=out)
    assert json.loads(out.read_text()) == metrics
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temp file left


def write_images(tmp_path, images=IMAGES):
    from PIL import Image

    rng = np.random.default_rng(0)
    for image_id, (h, w, _) in images.items():
        pixels = rng.integers(0, 256, (h, w, 3), dtype="uint8")
        Image.fromarray(pixels).save(tmp_path / f"img_{image_id}.png")
    # One grayscale image: must still arrive as RGB.
    Image.fromarray(rng.integers(0, 256, (images[3][0], images[3][1]), dtype="uint8")).save(
        tmp_path / "img_3.png")


def test_evaluate_predict_fn_matches_evaluate_detections(tmp_path, capsys):
    gt = write_gt(tmp_path)
    write_images(tmp_path)
    preds = yxyx_predictions()
    preds[2]["boxes"][1] += np.array([0, 15, 0, 15], "float32")  # imperfect: shifted 15 px in x
    by_shape = {(h, w): i for i, (h, w, _) in IMAGES.items()}
    seen = []

    def predict_fn(images):
        seen.append(len(images))
        for image in images:
            assert image.dtype == np.float32 and image.ndim == 3 and image.shape[-1] == 3
            assert image.min() >= 0 and image.max() <= 255
        return [preds[by_shape[image.shape[:2]]] for image in images]

    metrics = evaluate_predict_fn(predict_fn, gt, tmp_path, label_map=LABEL_MAP, batch_size=2)
    assert seen == [2, 1]
    assert metrics == evaluate_detections(gt, to_coco(preds))
    assert 0.0 < metrics["AP"] < 1.0 and metrics["per_class_AP"]["bird"] < 1.0
    assert "3/3 images" in capsys.readouterr().err

    subset = evaluate_predict_fn(predict_fn, gt, tmp_path, label_map=LABEL_MAP, image_ids=[1, 3],
                                 progress=False)
    assert subset["AP"] == pytest.approx(1.0) and subset["num_images"] == 2
    assert capsys.readouterr().err == ""


def test_evaluate_predict_fn_checks_result_count(tmp_path):
    gt = write_gt(tmp_path)
    write_images(tmp_path)
    with pytest.raises(ValueError, match="returned 0 results"):
        evaluate_predict_fn(lambda images: [], gt, tmp_path, label_map=LABEL_MAP, progress=False)


def test_format_metrics_table(tmp_path):
    one = {1: IMAGES[1]}
    det = [{"image_id": 1, "category_id": 1, "bbox": [30, 10, 100, 100], "score": 0.9}]
    table = format_metrics_table(evaluate_detections(write_gt(tmp_path, one), det))
    lines = table.splitlines()
    assert any(line.split() == ["AP", "40.00"] for line in lines)
    assert any(line.split() == ["APs", "n/a"] for line in lines)
    assert any(line.split() == ["cat", "40.00"] for line in lines)
    assert any(line.split() == ["dog", "n/a"] for line in lines)
    assert any(line.split() == ["detections", "1"] for line in lines)


def test_missing_pycocotools_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(ImportError, match=r"keras_efficient\[coco\]"):
        evaluate_detections(write_gt(tmp_path), [])
