"""Detection tf.data pipeline: boxes follow the pixels through resize, pad, flip, jitter, crop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from keras_efficient.data.coco import CocoDataset
from keras_efficient.data.pipeline import detection_dataset
from keras_efficient.data.transforms import image_info, load_image, resize_and_pad, stretch

BACKGROUND = np.array([60.0, 60.0, 60.0])
# (colour, (ymin, xmin, ymax, xmax)) in a 100x150 image; rectangles do not touch.
RECTANGLES = [
    ((250, 20, 20), (10, 20, 40, 70)),
    ((20, 20, 250), (50, 100, 92, 143)),
    ((20, 230, 20), (62, 4, 97, 38)),
]
CATEGORY_IDS = [5, 9, 2]  # contiguous indices: 5 -> 1, 9 -> 2, 2 -> 0


def scene(tmp_path: Path, crowd: bool = False) -> CocoDataset:
    pixels = np.zeros((100, 150, 3), np.uint8) + BACKGROUND.astype(np.uint8)
    annotations = []
    for index, (colour, (y0, x0, y1, x1)) in enumerate(RECTANGLES):
        pixels[y0:y1, x0:x1] = colour
        annotations.append({"id": index + 1, "image_id": 1, "category_id": CATEGORY_IDS[index],
                            "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "iscrowd": int(crowd and index == 2)})
    Image.fromarray(pixels).save(tmp_path / "scene.png")
    Image.fromarray(pixels[:, ::-1].copy()).save(tmp_path / "mirror.png")
    return CocoDataset({
        "images": [{"id": 1, "file_name": "scene.png", "height": 100, "width": 150},
                   {"id": 2, "file_name": "mirror.png", "height": 100, "width": 150}],
        "annotations": annotations,
        "categories": [{"id": i, "name": f"c{i}"} for i in (2, 5, 9)],
    }, tmp_path)


def colour_box(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray | None:
    """(ymin, xmin, ymax, xmax) of pixels closer to ``colour`` than to the background."""
    direction = np.asarray(colour, float) - BACKGROUND
    fraction = ((image - BACKGROUND) @ direction) / (direction @ direction)
    mask = fraction > 0.5
    if not mask.any():
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], float)


def first(dataset: Any) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in next(iter(dataset)).items()}


def check_boxes_cover_pixels(batch: dict[str, np.ndarray], index: int = 0) -> int:
    """Every colour's pixels match its box within 1.5 px (a box under 1.5 px may show none);
    absent boxes have no pixels."""
    image, boxes, classes = batch["image"][index], batch["boxes"][index], batch["classes"][index]
    found = 0
    for (colour, _), category in zip(RECTANGLES, CATEGORY_IDS, strict=True):
        contiguous = sorted(CATEGORY_IDS).index(category)
        rows = np.flatnonzero(classes == contiguous)
        pixels = colour_box(image, colour)
        if len(rows) == 0:
            assert pixels is None, f"colour {colour} visible but its box was dropped"
            continue
        assert len(rows) == 1
        box = boxes[rows[0]]
        if pixels is None:  # a sliver at the crop's edge: kept, but under half a pixel shows
            assert min(box[2] - box[0], box[3] - box[1]) <= 1.5, (colour, box)
            continue
        np.testing.assert_allclose(box, pixels, atol=1.5)
        found += 1
    valid = classes >= 0
    assert np.all(boxes[~valid] == 0) and np.all(classes[~valid] == -1)
    assert np.all(boxes[valid, 2:] > boxes[valid, :2])
    return found


def test_evaluation_matches_inference_preprocessing(tmp_path: Path) -> None:
    coco = scene(tmp_path)
    batch = first(detection_dataset(coco, (64, 80), batch_size=2, training=False, max_boxes=5))
    assert batch["image"].shape == (2, 64, 80, 3) and batch["image"].dtype == np.float32
    assert batch["boxes"].shape == (2, 5, 4) and batch["classes"].dtype == np.int32
    assert batch["image_id"].tolist() == [1, 2] and batch["image_id"].dtype == np.int64
    original = load_image(tmp_path / "scene.png")
    reference, scale = resize_and_pad(original, (64, 80))
    np.testing.assert_allclose(batch["image_info"][0], image_info(original, scale), rtol=1e-6)
    np.testing.assert_array_equal(batch["image"][0], reference)  # same pixels as at inference
    assert batch["image"][0, 53:].max() == 0  # padded bottom (int(100 * 0.533) = 53 rows)
    pad = (123.675, 116.28, 103.53)
    padded = first(detection_dataset(coco, (64, 80), batch_size=2, training=False, max_boxes=5,
                                     pad_value=pad))
    np.testing.assert_array_equal(padded["image"][0],
                                  resize_and_pad(original, (64, 80), pad_value=pad)[0])
    np.testing.assert_array_equal(padded["image"][0, 53:], np.broadcast_to(
        np.float32(pad), (11, 80, 3)))
    assert check_boxes_cover_pixels(batch) == 3
    # Boxes follow the pixels: scaled per axis by the size the rounding reached (53 / 100 rows).
    np.testing.assert_allclose(batch["boxes"][0, 0],
                               np.array(RECTANGLES[0][1]) * [0.53, 80 / 150, 0.53, 80 / 150],
                               atol=1e-4)


def test_forced_flip_mirrors_boxes_with_pixels(tmp_path: Path) -> None:
    coco = scene(tmp_path)
    batch = first(detection_dataset(coco.records[:1], (100, 150), batch_size=1, training=True,
                                    flip_probability=1.0, scale_range=(1.0, 1.0)))
    np.testing.assert_allclose(batch["image"][0], load_image(tmp_path / "mirror.png"),
                               atol=1e-3)
    y0, x0, y1, x1 = RECTANGLES[0][1]
    np.testing.assert_allclose(batch["boxes"][0, 0], [y0, 150 - x1, y1, 150 - x0], atol=1e-4)
    assert check_boxes_cover_pixels(batch) == 3


def test_scale_jitter_and_crop_keep_boxes_on_their_pixels(tmp_path: Path) -> None:
    coco = scene(tmp_path)
    dataset = detection_dataset(coco.records[:1] * 12, (80, 96), batch_size=4, training=True,
                                scale_range=(0.4, 2.5), seed=3)
    scales = []
    for batch in dataset:
        batch = {k: v.numpy() for k, v in batch.items()}
        for index in range(4):
            check_boxes_cover_pixels(batch, index)
        scales.extend(batch["image_info"][:, 0])
    assert len(scales) == 12 and np.ptp(scales) > 0.1  # the jitter really varies


def test_strong_zoom_crops_and_drops_boxes(tmp_path: Path) -> None:
    coco = scene(tmp_path)
    dataset = detection_dataset(coco.records[:1] * 8, (40, 48), batch_size=8, training=True,
                                flip=False, scale_range=(2.0, 2.0), seed=0)
    batch = first(dataset)
    np.testing.assert_allclose(batch["image_info"][:, 0], 2.0 * min(40 / 100, 48 / 150))
    counts = {check_boxes_cover_pixels(batch, index) for index in range(8)}
    assert min(counts) < 3  # some crops lose rectangles entirely; their boxes are gone


def test_determinism_crowd_and_max_boxes(tmp_path: Path) -> None:
    coco = scene(tmp_path, crowd=True)

    def run(seed: int) -> list[np.ndarray]:
        dataset = detection_dataset(coco, (64, 64), batch_size=2, training=True, seed=seed)
        return [batch["image"].numpy() for batch in dataset]

    assert all(np.array_equal(a, b) for a, b in zip(run(1), run(1), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(run(1), run(2), strict=True))
    batch = first(detection_dataset(coco, (64, 64), batch_size=2, training=False))
    assert (batch["classes"][0] >= 0).sum() == 2  # the crowd box is removed
    batch = first(detection_dataset(coco, (64, 64), batch_size=2, training=False,
                                    drop_crowd=False, max_boxes=2))
    assert batch["classes"].shape == (2, 2) and (batch["classes"][0] >= 0).sum() == 2
    epochs = detection_dataset(coco.records[:1], (64, 64), batch_size=1, training=True, seed=4)
    once, twice = (next(iter(epochs))["image"].numpy() for _ in range(2))
    assert not np.array_equal(once, twice)  # each epoch draws new augmentations
    with pytest.raises(ValueError, match="empty"):
        detection_dataset([], (64, 64), batch_size=1, training=False)
    with pytest.raises(ValueError, match="cannot fill one batch of 4"):
        detection_dataset(coco, (64, 64), batch_size=4, training=True)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "L-jpeg"])
def test_grayscale_rgba_palette_decode_to_rgb(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8))
    if mode == "L-jpeg":
        image, name = rgb.convert("L"), "image.jpg"
    else:
        image, name = rgb.convert(mode), "image.png"
    if mode == "RGBA":
        image.putalpha(Image.fromarray(rng.integers(0, 256, (12, 20), dtype=np.uint8)))
    image.save(tmp_path / name)
    coco = CocoDataset({"images": [{"id": 1, "file_name": name, "height": 12, "width": 20}],
                        "categories": [{"id": 1, "name": "x"}]}, tmp_path)
    batch = first(detection_dataset(coco, (12, 20), batch_size=1, training=False))
    expected = np.asarray(Image.open(tmp_path / name).convert("RGB"), np.float32)
    assert batch["image"].shape == (1, 12, 20, 3)
    tolerance = 3.0 if mode == "L-jpeg" else 1e-3  # JPEG decoders (TF vs PIL) differ slightly
    np.testing.assert_allclose(batch["image"][0], expected, atol=tolerance)
    np.testing.assert_allclose(load_image(tmp_path / name), expected)


def test_synthetic_end_to_end_with_cache(synthetic) -> None:
    coco = synthetic.coco("train")
    training = detection_dataset(coco, (64, 64), batch_size=4, training=True, cache=True, seed=1)
    batches = [{k: v.numpy() for k, v in b.items()} for b in training]
    assert len(batches) == 1 and batches[0]["image"].shape == (4, 64, 64, 3)  # remainder dropped
    for batch in batches:
        valid = batch["classes"] >= 0
        assert set(np.unique(batch["classes"])) <= {-1, 0, 1, 2} and valid.any()
        assert np.all((batch["boxes"] >= 0) & (batch["boxes"] <= 64))
    evaluation = detection_dataset(coco, (64, 64), batch_size=4, training=False, cache=True)
    passes = [[b["image"].numpy() for b in evaluation] for _ in range(2)]
    assert [len(p) for p in passes] == [2, 2]  # 6 images: 4 + 2, nothing dropped
    assert all(np.array_equal(a, b) for a, b in zip(*passes, strict=True))


def test_stretch_fills_the_input_and_scales_boxes_per_axis(tmp_path: Path) -> None:
    """``resize="stretch"`` (as the Task Library / MediaPipe feed): the 100x150 scene fills the
    whole 64x64 input with no pad, the pixels are the inference path's, boxes follow each axis."""
    coco = scene(tmp_path)
    batch = first(detection_dataset(coco, (64, 64), batch_size=2, training=False, max_boxes=5,
                                    resize="stretch", pad_value=255.0))
    original = load_image(tmp_path / "scene.png")
    np.testing.assert_array_equal(batch["image"][0], stretch(original, (64, 64)))
    assert batch["image"][0].max() < 255  # no pad anywhere
    np.testing.assert_allclose(batch["image_info"][0], [1.0, 100, 150])
    np.testing.assert_allclose(batch["boxes"][0, 0], np.array(RECTANGLES[0][1])
                               * [0.64, 64 / 150, 0.64, 64 / 150], atol=1e-4)
    assert check_boxes_cover_pixels(batch) == 3
    # Training: the jitter scales the stretched size, and the boxes stay on their pixels.
    jittered = detection_dataset(coco.records[:1] * 8, (64, 64), batch_size=4, training=True,
                                 scale_range=(0.5, 2.0), seed=1, resize="stretch")
    for item in jittered:
        item = {k: v.numpy() for k, v in item.items()}
        for index in range(4):
            check_boxes_cover_pixels(item, index)
    unjittered = first(detection_dataset(coco.records[:1], (64, 64), batch_size=1,
                                         training=True, flip=False, scale_range=(1.0, 1.0),
                                         resize="stretch"))
    np.testing.assert_array_equal(unjittered["image"][0], stretch(original, (64, 64)))
    with pytest.raises(ValueError, match="resize must be one of"):
        detection_dataset(coco, (64, 64), batch_size=1, training=False, resize="crop")
