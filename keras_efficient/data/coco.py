"""COCO instances json -> validated per-image records with contiguous class indices.

Category ids in COCO files are arbitrary (COCO itself uses 1..90 with gaps); the network predicts
contiguous indices. Sorted category ids map to 0..C-1; ``label_map`` keeps index -> {id, name} so
predictions map back to ids for evaluation and to names for humans.

Broken inputs are found here, once, instead of as a crash in the middle of training: by default
one ``ValueError`` lists every problem (up to 20 shown) and says how to skip them instead.
``on_error="skip"`` drops the bad *annotations* (the rest of the image is still useful) and the
images whose file is missing, unreadable or of another size than the json says (nothing of them
can be used), counting each reason in ``skipped`` and logging one warning.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from keras_efficient.data.decode import displayed_size
from keras_efficient.files import write_text_atomic

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
MAX_LISTED = 20
# Formats both PIL (header check) and tf.io.decode_image (the pipeline) read.
DECODABLE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"})

# reason key -> what it means; the keys are those of ``CocoDataset.skipped``.
REASONS: dict[str, str] = {
    "missing_file": "image file not found",
    "unreadable_file": "image file unreadable or not JPEG/PNG/GIF/BMP/WebP/TIFF",
    "size_mismatch": "image file size differs from the json's height/width",
    "unknown_image_id": "annotation refers to an image id not in 'images'",
    "unknown_category": "annotation has a category id not in 'categories'",
    "malformed_box": "bbox is not 4 numbers",
    "non_finite_box": "bbox has NaN or infinity",
    "non_positive_size": "bbox has zero or negative width/height",
    "outside_image": "bbox lies outside the image (beyond the tolerance)",
}
IMAGE_REASONS = frozenset({"missing_file", "unreadable_file", "size_mismatch"})


def _require_pycocotools() -> Any:
    try:
        from pycocotools.coco import COCO
    except ImportError as error:
        raise ImportError(
            "Reading COCO datasets needs pycocotools: `pip install pycocotools` (or install this "
            "package with the extra: `pip install 'keras_efficient[coco]'`).") from error
    return COCO


@dataclass(frozen=True)
class ImageRecord:
    """One image and its valid annotations.

    ``boxes`` are ``[K, 4]`` float32 (ymin, xmin, ymax, xmax) in pixels of the original image
    (continuous coordinates: a box covering pixel columns 3..5 has xmin 3, xmax 6); ``classes``
    ``[K]`` int32 contiguous indices; ``is_crowd`` ``[K]`` bool (training drops crowd boxes).

    Example::

        record = CocoDataset("annotations/instances_val.json")[0]
        record.boxes, record.classes  # [K, 4] (ymin, xmin, ymax, xmax) pixels, [K] indices
    """

    image_id: int
    file_name: str
    path: str
    height: int
    width: int
    boxes: np.ndarray
    classes: np.ndarray
    is_crowd: np.ndarray


class CocoDataset:
    """A COCO instances json (path or already-loaded dict) read with pycocotools and validated.

    Args:
      annotations: path to an instances json, or its content as a dict.
      image_dir: folder the ``file_name`` entries are relative to. Default for a path: the first
        of ``<json dir>/../<split>``, ``<json dir>/<split>`` (``split`` from
        ``instances_<split>.json``), ``<json dir>``, ``<json dir>/..`` that holds the first
        listed image. Required for a dict.
      on_error: ``"raise"`` (default) or ``"skip"``; see the module docstring.
      verify_images: open each image's header (cheap: no decoding) to catch unreadable files and
        sizes that disagree with the json. ``False`` only checks that the files exist.
      tolerance: how far, in pixels, a box may extend past the image border before it is an
        error; boxes within it are clipped to the image.

    Attributes: ``coco`` (the pycocotools ``COCO``, the unmodified ground truth for evaluation),
    ``records`` (list of :class:`ImageRecord`), ``label_map`` (index -> {"id", "name"}),
    ``class_names``, ``category_ids`` (index -> id), ``skipped`` (reason -> count).

    Example::

        data = CocoDataset("annotations/instances_train.json", on_error="skip")
        data.num_classes, data.class_names, data.skipped  # e.g. 80, [...], {"missing_file": 2}
        data.write_label_file("runs/mine/labels.txt")  # and labels.json with the category ids
    """

    def __init__(self, annotations: str | os.PathLike[str] | Mapping[str, Any],
                 image_dir: str | os.PathLike[str] | None = None, *,
                 on_error: OnError | str = "raise", verify_images: bool = True,
                 tolerance: float = 1.0) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip'; received {on_error!r}.")
        coco_class = _require_pycocotools()
        self.annotation_file: Path | None = None
        if isinstance(annotations, Mapping):
            if image_dir is None:
                raise ValueError("image_dir is required when annotations is a dict.")
            data = copy.deepcopy(dict(annotations))
        else:
            self.annotation_file = Path(annotations)
            try:
                data = json.loads(self.annotation_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise ValueError(f"Cannot read COCO annotations {self.annotation_file}: "
                                 f"{error}") from error
        source = str(self.annotation_file) if self.annotation_file else "<dict>"
        _check_structure(data, source)
        self.coco = coco_class()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()
        self.image_dir = (Path(image_dir) if image_dir is not None
                          else _default_image_dir(self.annotation_file, data))

        categories = sorted(data["categories"], key=lambda c: int(c["id"]))
        self.category_ids: list[int] = [int(c["id"]) for c in categories]
        self.class_names: list[str] = [str(c["name"]) for c in categories]
        self.label_map: dict[int, dict[str, Any]] = {
            index: {"id": cid, "name": name}
            for index, (cid, name) in enumerate(zip(self.category_ids, self.class_names,
                                                    strict=True))}
        index_of = {cid: index for index, cid in enumerate(self.category_ids)}

        problems: list[tuple[str, str, str]] = []   # (file name, reason key, detail)
        images: dict[int, dict[str, Any]] = {}
        usable: set[int] = set()
        for image in data["images"]:
            image_id = int(image["id"])
            images[image_id] = image
            problem = self._check_image(image, verify_images)
            if problem is None:
                usable.add(image_id)
            else:
                problems.append((str(image["file_name"]), *problem))

        per_image: dict[int, list[tuple[list[float], int, bool]]] = {i: [] for i in images}
        for annotation in data.get("annotations", []):
            image_id = int(annotation["image_id"])
            if image_id not in images:
                problems.append((f"<image id {image_id}>", "unknown_image_id",
                                 f"annotation {annotation.get('id')} refers to image id "
                                 f"{image_id}, which 'images' does not list"))
                continue
            image = images[image_id]
            if image_id not in usable:  # a dropped image's annotations are not counted again
                continue
            checked = _check_annotation(annotation, image, index_of, tolerance)
            if isinstance(checked, _Problem):
                problems.append((str(image["file_name"]), checked.reason, checked.detail))
            else:
                per_image[image_id].append(checked)

        self.skipped: dict[str, int] = dict(Counter(reason for _, reason, _ in problems))
        if problems and on_error == "raise":
            raise ValueError(_problem_message(source, problems))
        if problems:
            summary = ", ".join(f"{reason}: {count}" for reason, count in self.skipped.items())
            logger.warning("Skipped problems in COCO annotations %s (%s); images kept: %d of %d.",
                           source, summary, len(usable), len(images))

        self.records: list[ImageRecord] = []
        for image_id, image in images.items():
            if image_id not in usable:
                continue
            entries = per_image[image_id]
            self.records.append(ImageRecord(
                image_id=image_id, file_name=str(image["file_name"]),
                path=str(self.image_dir / str(image["file_name"])),
                height=int(image["height"]), width=int(image["width"]),
                boxes=np.asarray([e[0] for e in entries], "float32").reshape(-1, 4),
                classes=np.asarray([e[1] for e in entries], "int32"),
                is_crowd=np.asarray([e[2] for e in entries], bool)))

    def _check_image(self, image: Mapping[str, Any], verify: bool) -> tuple[str, str] | None:
        """(reason, detail) when the image file cannot be used, else None."""
        path = self.image_dir / str(image["file_name"])
        if not path.is_file():
            return "missing_file", f"no file at {path}"
        if not verify:
            return None
        from PIL import Image

        try:
            with Image.open(path) as opened:
                image_format = opened.format
            displayed, stored = displayed_size(path)
        except (OSError, ValueError) as error:
            return "unreadable_file", f"cannot read {path}: {error}"
        if image_format not in DECODABLE_FORMATS:
            return "unreadable_file", (f"{path} is {image_format}, not "
                                       f"{'/'.join(sorted(DECODABLE_FORMATS))}")
        expected = (int(image["height"]), int(image["width"]))
        if displayed != expected:
            hint = ""
            if stored == expected:
                hint = (" — the json gives the size as stored, but the file's EXIF orientation "
                        f"rotates it to {displayed[0]}x{displayed[1]} as displayed (and as "
                        "decoded here, like COCO tools and phones); give the displayed size "
                        "(and boxes) in the json")
            return "size_mismatch", (f"file is {displayed[0]}x{displayed[1]} (HxW, as "
                                     f"displayed) but the json says {expected[0]}x{expected[1]}"
                                     f"{hint}")
        return None

    # ------------------------------------------------------------------ convenience

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.records[index]

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    @property
    def image_ids(self) -> list[int]:
        """Ids of the kept images (give these to COCOeval's ``params.imgIds``)."""
        return [record.image_id for record in self.records]

    def category_id(self, index: int) -> int:
        """Contiguous class index -> COCO category id."""
        return self.category_ids[index]

    def write_label_file(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``path`` (one class name per line, index order) and ``path`` with ``.json``
        (``[{"index", "id", "name"}, ...]``); both atomically. Returns the two paths.

        The text file is what TFLite metadata and most on-device label readers expect; the json
        keeps the category ids needed to map predictions back to COCO.
        """
        text_path = Path(path)
        json_path = text_path.with_suffix(".json")
        if text_path.suffix == ".json":
            raise ValueError(f"Give the text label file's path (e.g. labels.txt); the .json is "
                             f"written beside it. Received {text_path}.")
        bad = [name for name in self.class_names if "\n" in name or "\r" in name]
        if bad:
            raise ValueError(f"Category names with line breaks cannot go in a label file: {bad}.")
        entries = [{"index": index, **entry} for index, entry in self.label_map.items()]
        text_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(text_path, "".join(f"{name}\n" for name in self.class_names))
        write_text_atomic(json_path, json.dumps(entries, indent=1) + "\n")
        return text_path, json_path

    def __repr__(self) -> str:
        return (f"CocoDataset({self.annotation_file or '<dict>'}, images={len(self.records)}, "
                f"classes={self.num_classes}, skipped={self.skipped})")


# ---------------------------------------------------------------------------- helpers

def _check_structure(data: Any, source: str) -> None:
    """Errors that no skipping can fix: not COCO-shaped at all."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{source} is not a COCO instances file: it needs an 'images' list.")
    if not isinstance(data.get("categories"), list) or not data["categories"]:
        raise ValueError(f"{source} has no 'categories': the class list cannot be built.")
    if not isinstance(data.get("annotations", []), list):
        raise ValueError(f"{source}: 'annotations' must be a list.")
    for key, rows, fields in (("images", data["images"], ("id", "file_name", "height", "width")),
                              ("categories", data["categories"], ("id", "name")),
                              ("annotations", data.get("annotations", []),
                               ("image_id", "category_id", "bbox"))):
        for row in rows:
            missing = [f for f in fields if not isinstance(row, dict) or f not in row]
            if missing:
                raise ValueError(f"{source}: an entry of '{key}' lacks {missing}: {row!r:.200}")
        if key == "annotations":
            continue
        duplicates = [i for i, n in Counter(row["id"] for row in rows).items() if n > 1]
        if duplicates:
            raise ValueError(f"{source}: duplicate {key} ids {duplicates[:10]}.")


@dataclass(frozen=True)
class _Problem:
    reason: str
    detail: str


def _check_annotation(annotation: Mapping[str, Any], image: Mapping[str, Any],
                      index_of: Mapping[int, int], tolerance: float
                      ) -> tuple[list[float], int, bool] | _Problem:
    """((ymin, xmin, ymax, xmax) clipped to the image, class index, crowd) or the problem."""
    name = f"annotation {annotation.get('id')}"
    category = annotation["category_id"]
    if category not in index_of:
        return _Problem("unknown_category",
                        f"{name} has category id {category!r}, not in 'categories'")
    box = annotation["bbox"]
    if (not isinstance(box, list | tuple) or len(box) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)):
        return _Problem("malformed_box", f"{name} has bbox {box!r:.80}, not [x, y, width, height]")
    x, y, w, h = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return _Problem("non_finite_box", f"{name} has non-finite bbox {box}")
    if w <= 0 or h <= 0:
        return _Problem("non_positive_size", f"{name} has bbox {box} with zero or negative size")
    height, width = float(image["height"]), float(image["width"])
    if x < -tolerance or y < -tolerance or x + w > width + tolerance \
            or y + h > height + tolerance:
        return _Problem("outside_image",
                        f"{name} has bbox {box} outside the {int(width)}x{int(height)} (WxH) image")
    ymin, xmin = max(y, 0.0), max(x, 0.0)
    ymax, xmax = min(y + h, height), min(x + w, width)
    if ymax <= ymin or xmax <= xmin:
        return _Problem("outside_image", f"{name} has bbox {box}, empty once clipped to the image")
    return [ymin, xmin, ymax, xmax], int(index_of[category]), bool(annotation.get("iscrowd", 0))


def _problem_message(source: str, problems: list[tuple[str, str, str]]) -> str:
    counts = Counter(reason for _, reason, _ in problems)
    lines = [f"  {file_name}: {REASONS[reason]} ({detail})"
             for file_name, reason, detail in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"  ... and {len(problems) - MAX_LISTED} more")
    summary = ", ".join(f"{reason}: {count}" for reason, count in counts.items())
    return (f"{len(problems)} problem(s) in COCO annotations {source} ({summary}):\n"
            + "\n".join(lines)
            + "\nFix the data, or skip them (`--on-error skip` on the command line, "
              "on_error='skip' in Python) to drop the bad annotations and the "
              "missing/unreadable images (counted in dataset.skipped).")


def _default_image_dir(annotation_file: Path | None, data: Mapping[str, Any]) -> Path:
    assert annotation_file is not None
    folder = annotation_file.resolve().parent
    stem = annotation_file.stem
    split = stem.split("_", 1)[1] if stem.startswith("instances_") and "_" in stem else None
    candidates = ([folder.parent / split, folder / split] if split else []) + [folder,
                                                                              folder.parent]
    first = str(data["images"][0]["file_name"]) if data["images"] else None
    for candidate in candidates:
        if first is not None and (candidate / first).is_file():
            return candidate
    return next(c for c in candidates if c.is_dir())
