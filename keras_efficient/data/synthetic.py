"""Synthetic, deterministic datasets written to disk in real formats (COCO json, image folders).

They exist so that the data pipeline, training and evaluation can run end to end offline, on data
whose ground truth is exact: every object is drawn flat-coloured with hard edges, and its COCO box
is computed from the pixels that remain visible after later objects are drawn over it, so the box
bounds exactly the shape's pixels (touching them on all four sides).

Layout of a detection dataset (the COCO 2017 layout, so tools that expect it work unchanged)::

    root/annotations/instances_train.json   root/train/*.png
    root/annotations/instances_val.json     root/val/*.png
    root/.keras_efficient_synthetic.json    marker: written last, holds the parameters

Generation is atomic: everything is written into a hidden sibling folder, which is renamed to
``root`` only once complete, so an interrupted run never leaves a folder that looks complete.
If ``root`` already holds a complete dataset made with the same parameters it is reused as is; if
the parameters differ a ``ValueError`` names the differences (we never delete or overwrite a
folder on the caller's behalf: pass another ``root`` or delete the old one).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from keras_efficient.data.coco import CocoDataset

logger = logging.getLogger(__name__)

MARKER = ".keras_efficient_synthetic.json"
FORMAT_VERSION = 1
Difficulty = Literal["easy", "medium", "hard"]

# Non-contiguous ids on purpose: every consumer must go through the label map.
SHAPE_CATEGORIES: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 3, "name": "square", "supercategory": "shape"},
    {"id": 7, "name": "triangle", "supercategory": "shape"},
)

# Saturated colours (max - min channel >= 150); backgrounds stay near grey (saturation < ~60), so
# a pixel of an object's exact colour can only belong to that object.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (220, 30, 30), (30, 180, 40), (30, 60, 220), (230, 210, 20),
    (200, 40, 200), (20, 200, 210), (240, 130, 20), (120, 40, 220),
)


@dataclass(frozen=True)
class _Level:
    """What a difficulty changes: background, object sizes, occlusion, colour jitter."""

    size_range: tuple[float, float]   # object extent as a fraction of min(H, W)
    max_occlusion: float              # fraction of an object that later objects may cover
    noise_std: float                  # background luminance noise
    stripe_amplitude: float           # background texture
    clutter: int                      # grey distractor strokes and blobs
    colour_jitter: int                # per-object colour offset, per channel
    rotate_squares: bool


LEVELS: dict[str, _Level] = {
    "easy": _Level((0.15, 0.35), 0.15, 3.0, 0.0, 0, 0, False),
    "medium": _Level((0.08, 0.40), 0.35, 8.0, 15.0, 3, 15, True),
    "hard": _Level((0.05, 0.45), 0.50, 14.0, 30.0, 8, 25, True),
}
MIN_EXTENT = 6.0       # pixels: smaller shapes are not recognisable
MIN_VISIBLE = 12       # pixels an object must keep after occlusion


@dataclass(frozen=True)
class SyntheticDataset:
    """Paths of a generated COCO-format detection dataset.

    Example::

        data = make_detection_dataset("runs/shapes")
        train = data.coco("train")  # a CocoDataset; data.val_json, data.val_images_dir for eval
    """

    root: Path
    train_json: Path
    val_json: Path
    train_images_dir: Path
    val_images_dir: Path
    categories: tuple[dict[str, Any], ...] = field(default=SHAPE_CATEGORIES)

    @property
    def class_names(self) -> list[str]:
        """Category names in contiguous-index order (sorted by category id)."""
        return [c["name"] for c in sorted(self.categories, key=lambda c: c["id"])]

    def coco(self, split: Literal["train", "val"] = "train", **kwargs: Any) -> CocoDataset:
        """The split as a :class:`~keras_efficient.data.coco.CocoDataset` (needs pycocotools)."""
        from keras_efficient.data.coco import CocoDataset

        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val'; received {split!r}.")
        annotations, images = ((self.train_json, self.train_images_dir) if split == "train"
                               else (self.val_json, self.val_images_dir))
        return CocoDataset(annotations, images, **kwargs)


@dataclass(frozen=True)
class SyntheticImageFolder:
    """A generated ``root/<class_name>/*.png`` classification folder.

    Example::

        folder = make_classification_dataset("runs/shapes_folder")
        folder.root, folder.class_names  # ("circle", "square", "triangle")
    """

    root: Path
    class_names: tuple[str, ...]


def make_detection_dataset(
    root: str | os.PathLike[str], *, num_train: int = 64, num_val: int = 16,
    image_size: tuple[int, int] = (256, 256), min_objects: int = 1, max_objects: int = 4,
    seed: int = 0, difficulty: Difficulty = "easy", image_format: Literal["png", "jpeg"] = "png",
) -> SyntheticDataset:
    """Write (or reuse) a COCO-format dataset of circles, squares and triangles under ``root``.

    Deterministic in all arguments: the same call gives byte-identical files. Each image is drawn
    from its own random stream (seed, split, index), so changing ``num_train`` keeps the images
    that both sizes share. ``difficulty`` sets the background texture and noise, grey clutter,
    object sizes, allowed occlusion and colour jitter (see ``LEVELS``). Annotations carry the
    standard fields (``bbox`` [x, y, w, h] in pixels, ``area`` = visible pixel count,
    ``iscrowd`` 0) and an extra ``color`` (the object's exact RGB) that lets tests check boxes.
    PNG keeps that colour exact; ``image_format="jpeg"`` gives realistic compression artefacts.

    Example::

        data = make_detection_dataset("runs/shapes", num_train=400, num_val=50,
                                      image_size=(128, 128), difficulty="medium")
        data.train_json  # runs/shapes/annotations/instances_train.json
    """
    height, width = (int(v) for v in image_size)
    if difficulty not in LEVELS:
        raise ValueError(f"difficulty must be one of {sorted(LEVELS)}; received {difficulty!r}.")
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg'; received {image_format!r}.")
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ValueError(f"Need num_train, num_val >= 0 and some images; received {num_train}, "
                         f"{num_val}.")
    if not 0 <= min_objects <= max_objects or max_objects < 1:
        raise ValueError(f"Need 0 <= min_objects <= max_objects and max_objects >= 1; received "
                         f"{min_objects}, {max_objects}.")
    if min(height, width) < 4 * MIN_EXTENT:
        raise ValueError(f"image_size must be at least {int(4 * MIN_EXTENT)} pixels per side; "
                         f"received {image_size}.")
    params = {"kind": "detection", "format_version": FORMAT_VERSION, "num_train": num_train,
              "num_val": num_val, "image_size": [height, width], "min_objects": min_objects,
              "max_objects": max_objects, "seed": seed, "difficulty": difficulty,
              "image_format": image_format}
    root = Path(root)
    extension = "png" if image_format == "png" else "jpg"

    def build(directory: Path) -> None:
        (directory / "annotations").mkdir()
        next_annotation_id = 1
        for split_code, (split, count, first_id) in enumerate(
                (("train", num_train, 1), ("val", num_val, num_train + 1))):
            (directory / split).mkdir()
            images, annotations = [], []
            for index in range(count):
                rng = np.random.default_rng([seed, split_code, index])
                pixels, objects = _render_scene(rng, height, width, LEVELS[difficulty],
                                                min_objects, max_objects)
                file_name = f"{split}_{index:06d}.{extension}"
                _save_image(pixels, directory / split / file_name, image_format)
                image_id = first_id + index
                images.append({"id": image_id, "file_name": file_name, "height": height,
                               "width": width})
                for shape in objects:
                    annotations.append({
                        "id": next_annotation_id, "image_id": image_id,
                        "category_id": shape["category_id"], "bbox": shape["bbox"],
                        "area": shape["area"], "iscrowd": 0, "color": shape["color"]})
                    next_annotation_id += 1
            document = {
                "info": {"description": "keras_efficient synthetic shapes", "version": "1",
                         "year": 2024, "date_created": "", "parameters": params},
                "licenses": [],
                "images": images, "annotations": annotations,
                "categories": [dict(c) for c in SHAPE_CATEGORIES],
            }
            (directory / "annotations" / f"instances_{split}.json").write_text(
                json.dumps(document), encoding="utf-8")
            logger.info("Synthetic %s split: %d images, %d objects.", split, count,
                        len(annotations))

    _generate_atomically(root, params, build)
    return SyntheticDataset(
        root=root,
        train_json=root / "annotations" / "instances_train.json",
        val_json=root / "annotations" / "instances_val.json",
        train_images_dir=root / "train", val_images_dir=root / "val",
    )


def make_classification_dataset(
    root: str | os.PathLike[str], *, per_class: int = 16,
    image_size: tuple[int, int] = (64, 64), seed: int = 0,
) -> SyntheticImageFolder:
    """Write (or reuse) ``root/<class_name>/*.png`` with one shape per image, for classifiers.

    Same determinism and atomic reuse rules as :func:`make_detection_dataset`. Class names are
    the shape names (``circle``, ``square``, ``triangle``), i.e. alphabetical folder order.

    Example::

        folder = make_classification_dataset("runs/shapes_folder", per_class=32)
        dataset, names = image_folder_dataset(folder.root, (64, 64))
    """
    height, width = (int(v) for v in image_size)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1; received {per_class}.")
    if min(height, width) < 2 * MIN_EXTENT:
        raise ValueError(f"image_size must be at least {int(2 * MIN_EXTENT)} pixels per side; "
                         f"received {image_size}.")
    params = {"kind": "classification", "format_version": FORMAT_VERSION,
              "per_class": per_class, "image_size": [height, width], "seed": seed}
    names = tuple(c["name"] for c in SHAPE_CATEGORIES)
    level = _Level((0.35, 0.8), 0.0, 6.0, 10.0, 0, 15, True)

    def build(directory: Path) -> None:
        for class_index, category in enumerate(SHAPE_CATEGORIES):
            (directory / category["name"]).mkdir()
            for index in range(per_class):
                rng = np.random.default_rng([seed, class_index, index])
                pixels = _background(rng, height, width, level)
                extent = rng.uniform(*level.size_range) * min(height, width)
                mask = _random_shape_mask(rng, category["name"], extent, height, width, level)
                colour = _jitter(PALETTE[int(rng.integers(len(PALETTE)))], rng,
                                 level.colour_jitter)
                pixels[mask] = colour
                _save_image(pixels, directory / category["name"] / f"{category['name']}_"
                            f"{index:04d}.png", "png")

    _generate_atomically(Path(root), params, build)
    return SyntheticImageFolder(root=Path(root), class_names=names)


# --------------------------------------------------------------------------- atomic generation

def _read_marker(root: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((root / MARKER).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def _generate_atomically(root: Path, params: dict[str, Any],
                         build: Callable[[Path], None]) -> None:
    """Build into a hidden sibling folder, write the marker, then rename it to ``root``."""
    params = json.loads(json.dumps(params))  # normalise (tuples -> lists) for comparison
    if root.exists():
        existing = _read_marker(root)
        if existing is None:
            if root.is_dir() and not any(root.iterdir()):
                root.rmdir()  # an empty folder (e.g. from mkdir) is fine to replace
            else:
                raise ValueError(
                    f"{root} exists but is not a complete synthetic dataset (no {MARKER}); "
                    "delete it or choose another folder.")
        elif existing != params:
            _raise_mismatch(root, existing, params)
        else:
            logger.info("Reusing the synthetic dataset at %s.", root)
            return
    root.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        os.chmod(temporary, 0o755)
        build(temporary)
        (temporary / MARKER).write_text(json.dumps(params, indent=1), encoding="utf-8")
        try:
            os.rename(temporary, root)
        except OSError:
            # Another process finished the same folder first: fine if it holds our parameters.
            existing = _read_marker(root)
            if existing is None:
                raise
            if existing != params:
                _raise_mismatch(root, existing, params)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def _raise_mismatch(root: Path, existing: dict[str, Any], wanted: dict[str, Any]) -> None:
    differences = ", ".join(
        f"{key}: {existing.get(key)!r} on disk vs {wanted.get(key)!r} requested"
        for key in sorted(set(existing) | set(wanted)) if existing.get(key) != wanted.get(key))
    raise ValueError(
        f"{root} holds a synthetic dataset generated with different parameters ({differences}). "
        "Pass another root, or delete the folder to regenerate it.")


# --------------------------------------------------------------------------- drawing

def _save_image(pixels: np.ndarray, path: Path, image_format: str) -> None:
    from PIL import Image

    image = Image.fromarray(pixels)
    if image_format == "png":
        image.save(path, format="PNG", optimize=False)
    else:
        image.save(path, format="JPEG", quality=92)


def _jitter(colour: Sequence[int], rng: np.random.Generator, amount: int) -> list[int]:
    offsets = rng.integers(-amount, amount + 1, 3) if amount else np.zeros(3, "int64")
    return [int(v) for v in np.clip(np.asarray(colour) + offsets, 0, 255)]


def _background(rng: np.random.Generator, height: int, width: int, level: _Level) -> np.ndarray:
    """Near-grey textured background (uint8 RGB): gradient, stripes, grey clutter, noise."""
    from PIL import Image, ImageDraw

    yy, xx = np.mgrid[0:height, 0:width].astype("float32")
    yy, xx = yy / height, xx / width
    angle = rng.uniform(0, 2 * math.pi)
    luminance = rng.uniform(70, 185) + rng.uniform(-35, 35) * (
        math.cos(angle) * xx + math.sin(angle) * yy)
    if level.stripe_amplitude:
        for _ in range(2):
            phi, cycles = rng.uniform(0, math.pi), rng.uniform(2, 12)
            luminance = luminance + rng.uniform(0.3, 1.0) * level.stripe_amplitude * np.sin(
                2 * math.pi * cycles * (math.cos(phi) * xx + math.sin(phi) * yy)
                + rng.uniform(0, 2 * math.pi))
    if level.clutter:
        canvas = Image.fromarray(np.clip(luminance, 0, 255).astype("uint8"), mode="L")
        draw = ImageDraw.Draw(canvas)
        for _ in range(level.clutter):
            points = rng.uniform(0, 1, 4) * [width, height, width, height]
            grey = int(rng.integers(40, 216))
            if rng.uniform() < 0.5:
                draw.line([(points[0], points[1]), (points[2], points[3])], fill=grey,
                          width=int(rng.integers(1, 4)))
            else:
                x0, y0 = min(points[0], points[2]), min(points[1], points[3])
                x1, y1 = max(points[0], points[2]), max(points[1], points[3])
                draw.ellipse([x0, y0, x0 + (x1 - x0) / 3 + 2, y0 + (y1 - y0) / 3 + 2], fill=grey)
        luminance = np.asarray(canvas, dtype="float32")
    luminance = luminance + rng.normal(0, level.noise_std, (height, width))
    rgb = (luminance[..., None] + rng.uniform(-10, 10, 3)
           + rng.normal(0, 2.0, (height, width, 3)))
    return np.clip(np.round(rgb), 0, 255).astype("uint8")


def _random_shape_mask(rng: np.random.Generator, shape: str, extent: float, height: int,
                       width: int, level: _Level) -> np.ndarray:
    """A hard-edged boolean mask of one shape whose circumscribed circle fits in the image."""
    from PIL import Image, ImageDraw

    radius = extent / 2
    cy = rng.uniform(radius, height - radius)
    cx = rng.uniform(radius, width - radius)
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
    else:
        if shape == "square":
            corners = 4
            angle = rng.uniform(0, math.pi / 2) if level.rotate_squares else math.pi / 4
        else:
            corners, angle = 3, rng.uniform(0, 2 * math.pi)
        draw.polygon([(cx + radius * math.cos(angle + 2 * math.pi * k / corners),
                       cy + radius * math.sin(angle + 2 * math.pi * k / corners))
                      for k in range(corners)], fill=1)
    return np.asarray(canvas, dtype=bool)


def _render_scene(rng: np.random.Generator, height: int, width: int, level: _Level,
                  min_objects: int, max_objects: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw background and objects; return pixels and per-object box/area/colour/category."""
    pixels = _background(rng, height, width, level)
    target = int(rng.integers(min_objects, max_objects + 1))
    colours = (rng.permutation(len(PALETTE)) if target <= len(PALETTE)
               else rng.integers(0, len(PALETTE), target))
    full_masks: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    categories: list[int] = []
    low, high = level.size_range
    attempts = 0
    while len(full_masks) < target:
        attempts += 1
        if attempts > 200 * max(target, 1):
            raise RuntimeError(
                f"Could not place {target} objects in a {height}x{width} image with at most "
                f"{level.max_occlusion:.0%} occlusion; lower min_objects or enlarge image_size.")
        category = SHAPE_CATEGORIES[int(rng.integers(len(SHAPE_CATEGORIES)))]
        extent = max(MIN_EXTENT, rng.uniform(low, high) * min(height, width))
        mask = _random_shape_mask(rng, category["name"], extent, height, width, level)
        if mask.sum() < MIN_VISIBLE:
            continue
        remaining = [seen & ~mask for seen in visible]
        if any(left.sum() < max(MIN_VISIBLE, (1 - level.max_occlusion) * full.sum())
               for left, full in zip(remaining, full_masks, strict=True)):
            continue
        visible = [*remaining, mask]
        full_masks.append(mask)
        categories.append(int(category["id"]))
    objects = []
    for index, (mask, category_id) in enumerate(zip(visible, categories, strict=True)):
        colour = _jitter(PALETTE[int(colours[index])], rng, level.colour_jitter)
        pixels[mask] = colour
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        objects.append({"category_id": category_id, "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": int(mask.sum()), "color": colour})
    return pixels, objects
