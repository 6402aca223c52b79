"""Synthetic datasets: determinism, real COCO format, exact boxes, atomic reuse."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_efficient.data import synthetic
from keras_efficient.data.synthetic import make_classification_dataset, make_detection_dataset

SMALL = {"num_train": 3, "num_val": 1, "image_size": (64, 80), "max_objects": 3}


def all_files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    a = make_detection_dataset(tmp_path / "a", seed=5, **SMALL)
    b = make_detection_dataset(tmp_path / "b", seed=5, **SMALL)
    c = make_detection_dataset(tmp_path / "c", seed=6, **SMALL)
    files_a, files_b, files_c = all_files(a.root), all_files(b.root), all_files(c.root)
    assert files_a == files_b
    assert set(files_a) == set(files_c)
    assert files_a["train/train_000000.png"] != files_c["train/train_000000.png"]
    assert files_a["annotations/instances_train.json"] != files_c[
        "annotations/instances_train.json"]


def test_loads_in_pycocotools_and_evaluates_perfectly(synthetic) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(synthetic.val_json))
        assert ground_truth.getCatIds() == [1, 3, 7]
        assert [c["name"] for c in ground_truth.loadCats([1, 3, 7])] == [
            "circle", "square", "triangle"]
        results = [{"image_id": a["image_id"], "category_id": a["category_id"],
                    "bbox": a["bbox"], "score": 1.0}
                   for a in ground_truth.dataset["annotations"]]
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)
    annotation = ground_truth.dataset["annotations"][0]
    assert annotation["iscrowd"] == 0 and annotation["area"] > 0 and len(annotation["bbox"]) == 4
    assert {"id", "file_name", "height", "width"} <= set(ground_truth.dataset["images"][0])


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_boxes_tightly_bound_the_drawn_shapes(tmp_path: Path, difficulty: str) -> None:
    dataset = make_detection_dataset(tmp_path / difficulty, num_train=4, num_val=1,
                                     image_size=(96, 96), min_objects=2, max_objects=5,
                                     seed=11, difficulty=difficulty)
    document = json.loads(dataset.train_json.read_text())
    names = {image["id"]: image["file_name"] for image in document["images"]}
    assert len(document["annotations"]) >= 8
    for annotation in document["annotations"]:
        pixels = np.asarray(Image.open(dataset.train_images_dir / names[annotation["image_id"]]))
        mask = np.all(pixels == annotation["color"], axis=-1)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        # Pixels of the shape's colour lie inside the box and touch all four of its edges.
        x, y, w, h = annotation["bbox"]
        assert [cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]] == [x, y, w, h]
        assert mask.sum() == annotation["area"]


def test_objects_overlap_partly_in_hard_scenes(tmp_path: Path) -> None:
    dataset = make_detection_dataset(tmp_path / "hard", num_train=6, num_val=1,
                                     image_size=(96, 96), min_objects=4, max_objects=6,
                                     seed=2, difficulty="hard")
    document = json.loads(dataset.train_json.read_text())
    overlaps = 0
    for image in document["images"]:
        boxes = [a["bbox"] for a in document["annotations"] if a["image_id"] == image["id"]]
        for i, (x0, y0, w0, h0) in enumerate(boxes):
            for x1, y1, w1, h1 in boxes[i + 1:]:
                overlaps += min(x0 + w0, x1 + w1) > max(x0, x1) and \
                    min(y0 + h0, y1 + h1) > max(y0, y1)
    assert overlaps > 0


def test_reuse_mismatch_and_foreign_folder(tmp_path: Path) -> None:
    first = make_detection_dataset(tmp_path / "d", **SMALL)
    stamp = first.train_json.stat().st_mtime_ns
    again = make_detection_dataset(tmp_path / "d", **SMALL)
    assert again == first and first.train_json.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"different parameters \(seed: 0 on disk vs 1"):
        make_detection_dataset(tmp_path / "d", **{**SMALL, "seed": 1})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a complete synthetic dataset"):
        make_detection_dataset(foreign, **SMALL)
    (tmp_path / "empty").mkdir()
    assert make_detection_dataset(tmp_path / "empty", **SMALL).train_json.is_file()


def test_interrupted_generation_leaves_nothing_complete(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = synthetic._render_scene

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_render_scene", failing)
    with pytest.raises(KeyboardInterrupt):
        make_detection_dataset(tmp_path / "d", **SMALL)
    assert list(tmp_path.iterdir()) == []  # no root, no partial folder left behind
    monkeypatch.setattr(synthetic, "_render_scene", original)
    assert make_detection_dataset(tmp_path / "d", **SMALL).val_json.is_file()


def test_jpeg_and_argument_errors(tmp_path: Path) -> None:
    dataset = make_detection_dataset(tmp_path / "j", image_format="jpeg", **SMALL)
    assert sorted(p.suffix for p in dataset.train_images_dir.iterdir()) == [".jpg"] * 3
    assert Image.open(next(dataset.val_images_dir.iterdir())).format == "JPEG"
    with pytest.raises(ValueError, match="difficulty"):
        make_detection_dataset(tmp_path / "x", difficulty="brutal", **SMALL)  # type: ignore
    with pytest.raises(ValueError, match="min_objects"):
        make_detection_dataset(tmp_path / "x", **{**SMALL, "max_objects": 0})


def test_classification_folders(tmp_path: Path, image_folder) -> None:
    assert image_folder.class_names == ("circle", "square", "triangle")
    for name in image_folder.class_names:
        files = sorted((image_folder.root / name).glob("*.png"))
        assert len(files) == 4
        assert np.asarray(Image.open(files[0])).shape == (32, 40, 3)
    again = make_classification_dataset(tmp_path / "c", per_class=4, image_size=(32, 40),
                                        seed=1)
    assert all_files(again.root) == all_files(image_folder.root)
