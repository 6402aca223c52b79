"""CocoDataset: contiguous label map, records, validation errors and skipping."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from keras_efficient.data.coco import CocoDataset


def write_images(folder: Path, names: list[str], size: tuple[int, int] = (40, 60)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (size[1], size[0]), (90, 90, 90)).save(folder / name)


def coco_dict(annotations: list[dict[str, Any]], names: tuple[str, ...] = ("a.png", "b.png"),
              size: tuple[int, int] = (40, 60)) -> dict[str, Any]:
    return {
        "images": [{"id": 10 + i, "file_name": n, "height": size[0], "width": size[1]}
                   for i, n in enumerate(names)],
        "annotations": [{"id": i + 1, "iscrowd": 0, **a} for i, a in enumerate(annotations)],
        "categories": [{"id": 7, "name": "triangle"}, {"id": 1, "name": "circle"},
                       {"id": 3, "name": "square"}],
    }


def test_non_contiguous_ids_map_to_contiguous_indices(synthetic, tmp_path: Path) -> None:
    dataset = CocoDataset(synthetic.train_json)  # image folder found from the COCO layout
    assert dataset.image_dir == synthetic.train_images_dir.resolve()
    assert dataset.category_ids == [1, 3, 7] and dataset.num_classes == 3
    assert dataset.label_map == {0: {"id": 1, "name": "circle"}, 1: {"id": 3, "name": "square"},
                                 2: {"id": 7, "name": "triangle"}}
    document = json.loads(synthetic.train_json.read_text())
    by_image: dict[int, list[int]] = {}
    for annotation in document["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation["category_id"])
    assert len(dataset) == 6
    for record in dataset:
        assert [dataset.category_id(c) for c in record.classes] == by_image.get(
            record.image_id, [])
        assert record.boxes.dtype == np.float32 and record.classes.dtype == np.int32
        assert Path(record.path).is_file()

    text, ids = dataset.write_label_file(tmp_path / "out" / "labels.txt")
    assert text.read_text() == "circle\nsquare\ntriangle\n"
    assert json.loads(ids.read_text()) == [{"index": 0, "id": 1, "name": "circle"},
                                           {"index": 1, "id": 3, "name": "square"},
                                           {"index": 2, "id": 7, "name": "triangle"}]
    with pytest.raises(ValueError, match=r"labels\.txt"):
        dataset.write_label_file(tmp_path / "labels.json")


def test_boxes_records_crowd_and_images_without_annotations(tmp_path: Path) -> None:
    write_images(tmp_path, ["a.png", "b.png"])
    data = coco_dict([
        {"image_id": 10, "category_id": 3, "bbox": [5, 4, 20, 10]},
        {"image_id": 10, "category_id": 7, "bbox": [-0.5, 30, 60.8, 10.5], "iscrowd": 1},
    ])
    dataset = CocoDataset(data, tmp_path)
    first, second = dataset.records
    np.testing.assert_allclose(first.boxes, [[4, 5, 14, 25], [30, 0, 40, 60]])  # yxyx, clipped
    assert first.classes.tolist() == [1, 2] and first.is_crowd.tolist() == [False, True]
    assert second.file_name == "b.png" and second.boxes.shape == (0, 4)
    assert dataset.skipped == {} and dataset.image_ids == [10, 11]


CASES = [
    ({"image_id": 10, "category_id": 1, "bbox": [5, 5, -3, 4]}, "non_positive_size"),
    ({"image_id": 10, "category_id": 1, "bbox": [5, 5, 0, 4]}, "non_positive_size"),
    ({"image_id": 10, "category_id": 99, "bbox": [5, 5, 3, 4]}, "unknown_category"),
    ({"image_id": 10, "category_id": 1, "bbox": [5, float("nan"), 3, 4]}, "non_finite_box"),
    ({"image_id": 10, "category_id": 1, "bbox": [50, 5, 12, 4]}, "outside_image"),
    ({"image_id": 10, "category_id": 1, "bbox": [5, 5, 3]}, "malformed_box"),
]


@pytest.mark.parametrize(("bad", "reason"), CASES, ids=[c[1] for c in CASES])
def test_bad_annotation_raises_or_is_skipped(tmp_path: Path, bad: dict[str, Any], reason: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    write_images(tmp_path, ["a.png", "b.png"])
    good = {"image_id": 10, "category_id": 3, "bbox": [1, 1, 5, 5]}
    data = coco_dict([good, bad])
    with pytest.raises(ValueError, match="on_error='skip'") as raised:
        CocoDataset(data, tmp_path)
    assert "a.png" in str(raised.value) and "annotation 2" in str(raised.value)
    assert "--on-error skip" in str(raised.value)
    with caplog.at_level(logging.WARNING):
        dataset = CocoDataset(data, tmp_path, on_error="skip")
    assert dataset.skipped == {reason: 1} and reason in caplog.text
    assert [len(r.boxes) for r in dataset.records] == [1, 0]  # bad box dropped, image kept


def test_missing_and_unreadable_images_are_dropped(tmp_path: Path) -> None:
    write_images(tmp_path, ["a.png"])
    write_images(tmp_path, ["small.png"], size=(10, 10))
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    data = coco_dict([{"image_id": 11, "category_id": 1, "bbox": [1, 1, 5, 5]},
                      {"image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5]}],
                     names=("a.png", "gone.png", "broken.png", "small.png"))
    with pytest.raises(ValueError) as raised:
        CocoDataset(data, tmp_path)
    message = str(raised.value)
    for expected in ("gone.png: image file not found", "broken.png", "small.png",
                     "<image id 77>", "4 problem(s)"):
        assert expected in message
    dataset = CocoDataset(data, tmp_path, on_error="skip")
    assert [r.file_name for r in dataset.records] == ["a.png"]
    assert dataset.skipped == {"missing_file": 1, "unreadable_file": 1, "size_mismatch": 1,
                               "unknown_image_id": 1}
    unverified = CocoDataset(data, tmp_path, on_error="skip", verify_images=False)
    assert unverified.skipped == {"missing_file": 1, "unknown_image_id": 1}


def test_message_lists_at_most_twenty(tmp_path: Path) -> None:
    names = tuple(f"img{i:02d}.png" for i in range(25))
    with pytest.raises(ValueError) as raised:
        CocoDataset(coco_dict([], names=names), tmp_path)
    message = str(raised.value)
    assert "img19.png" in message and "img20.png" not in message and "and 5 more" in message


def test_structural_errors_and_missing_pycocotools(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="categories"):
        CocoDataset({"images": [], "categories": []}, tmp_path)
    with pytest.raises(ValueError, match="image_dir is required"):
        CocoDataset({"images": [], "categories": [{"id": 1, "name": "x"}]})
    with pytest.raises(ValueError, match="duplicate images ids"):
        CocoDataset({**coco_dict([], names=("a.png", "a.png")), "images": [
            {"id": 1, "file_name": "a.png", "height": 2, "width": 2}] * 2}, tmp_path)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(ImportError, match=r"pip install pycocotools.*\[coco\]"):
        CocoDataset(coco_dict([]), tmp_path)
