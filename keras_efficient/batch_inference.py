"""Run a detector or a classifier over one's own image files: what ``keras-efficient detect``
and ``keras-efficient classify`` do.

Images are named by files, folders (searched recursively for image files) and glob patterns.
Detections come back in each image's own pixels with the dataset's category names and ids, and
are written as a COCO-results JSON (``detections.json``, loadable by pycocotools' ``loadRes``)
plus one drawn PNG per image. A detector is a Keras model (a training run's folder or a named
variant with weights) or an exported ``.tflite`` file run in LiteRT, so the deployed file can be
checked on the same photos.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_efficient.configs.efficientdet import check_resize
from keras_efficient.data.decode import IMAGE_SUFFIXES, ImageDecodeError, read_image
from keras_efficient.data.transforms import PadValue, load_image
from keras_efficient.data.visualize import LEGIBLE_SIZE, draw_detections
from keras_efficient.files import write_json_atomic

Detections = list[dict[str, Any]]


def expand_images(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders searched recursively for
    image suffixes, glob patterns (``photos/*.jpg``, ``**`` allowed) expanded; sorted within
    each input, duplicates dropped, order of the inputs kept.

    Example::

        expand_images(["cat.jpg", "holiday/", "scans/*.png"])
    """
    found: dict[Path, None] = {}
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*")
                             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not matches:
                raise ValueError(f"No image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in the "
                                 f"folder {path}.")
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True)
                             if Path(p).is_file())
            if not matches:
                raise ValueError(f"The pattern {text!r} matches no file.")
        else:
            raise ValueError(f"No such image file or folder: {text}.")
        found.update(dict.fromkeys(matches))
    if not found:
        raise ValueError("No images given: name image files, folders or glob patterns.")
    return list(found)


def check_readable(paths: Sequence[Path], *, on_error: str = "raise"
                   ) -> tuple[list[Path], list[tuple[int, int]], list[str]]:
    """Decode every image once before any model work or output: ``(readable paths, their
    (height, width) as displayed, problems)``. ``on_error="raise"`` raises naming the first
    file that cannot be decoded; ``"skip"`` leaves it out and lists the problem.

    Example::

        paths, sizes, skipped = check_readable(expand_images(["photos/"]), on_error="skip")
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'; received {on_error!r}.")
    good, sizes, problems = [], [], []
    for path in paths:
        try:
            height, width = read_image(path).shape[:2]
        except ImageDecodeError as error:
            if on_error == "raise":
                raise
            problems.append(str(error))
            continue
        good.append(path)
        sizes.append((int(height), int(width)))
    if not good:
        raise ValueError(f"None of the {len(paths)} images can be decoded"
                         + (f"; first problem: {problems[0]}" if problems else "."))
    return good, sizes, problems


@dataclasses.dataclass(frozen=True)
class Detector:
    """A detector ready to run on images: ``predict_fn(images) -> detections`` in each image's
    pixels (``boxes`` ymin, xmin, ymax, xmax; ``scores``; 0-based ``classes``) and the names
    and dataset category ids of its classes.

    Example::

        detector = keras_detector(run.model)
        [found] = detector.predict_fn([load_image("photo.jpg")])
    """

    name: str
    predict_fn: Callable[[list[np.ndarray]], Detections]
    labels: list[str]
    category_ids: list[int]

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"

    def category_id(self, index: int) -> int:
        return self.category_ids[index] if 0 <= index < len(self.category_ids) else index + 1


def keras_detector(model: Any, *, labels: Sequence[str] | None = None,
                   category_ids: Sequence[int] | None = None, score_threshold: float = 0.05,
                   max_detections: int = 100) -> Detector:
    """A raw Keras EfficientDet with the serving post-processing (best class per anchor,
    class-agnostic NMS), boxes mapped to each image's pixels; class names and category ids
    are the detector's own (its label map) unless given.

    Example::

        detector = keras_detector(load_trained_detector("runs/mine").model)
    """
    from keras_efficient.detection.inference import inference_model
    from keras_efficient.evaluation.predict import predict

    inference = inference_model(model, class_aware=False, max_detections=max_detections,
                                score_threshold=score_threshold)
    return Detector(model.name, lambda images: predict(inference, images),
                    list(labels if labels is not None else model.labels),
                    list(category_ids if category_ids is not None else model.category_ids))


def tflite_labels(path: Path) -> list[str] | None:
    """Class names of an exported ``.tflite``: its Task Library metadata, else the
    ``labels.txt`` the export wrote beside it, else ``None``."""
    try:
        from keras_efficient.export.metadata import read_metadata

        labels = list(read_metadata(path).labels)
        if labels:
            return labels
    except (ImportError, ValueError):  # no metadata (or no schema installed): try labels.txt
        pass
    beside = path.with_name("labels.txt")
    if beside.is_file():
        return [line for line in beside.read_text().splitlines() if line]
    return None


def manifest_preprocessing(file: Path) -> tuple[str, list[float]]:
    """The resize mode and pad value the export's ``manifest.json`` (beside ``file``) records
    for its detector (manifests written before the resize mode was recorded: letterbox).

    Example::

        manifest_preprocessing(Path("runs/export/mine-android-int8/model_int8.tflite"))
        # ("letterbox", [127.0, 127.0, 127.0])
    """
    manifest = file.parent / "manifest.json"
    try:
        preprocessing = json.loads(manifest.read_text())["preprocessing"]
        pad = [float(v) for v in preprocessing["pad_value"]]
        resize = "stretch" if str(preprocessing.get("resize")) == "stretch" else "letterbox"
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"Feeding {file} as its detector was trained needs the detector's resize mode and pad "
            f"value (its mean colour, 0 after its normalization), which the .tflite file does "
            f"not hold and {manifest} does not give ({type(error).__name__}: {error}). Keep the "
            "export's manifest.json beside the file, pass --train-dir (the training run it was "
            "exported from), or choose --resize stretch (as the Task Library and MediaPipe "
            "feed).") from error
    return resize, pad


def tflite_detector(path: str | os.PathLike[str], *, labels: Sequence[str] | None = None,
                    category_ids: Sequence[int] | None = None,
                    resize: str | None = None, pad_value: PadValue | None = None) -> Detector:
    """An exported detector (post-processing ``custom_op`` or ``builtin_nms``) run in LiteRT.

    ``resize="letterbox"`` feeds the image as a letterbox-trained Keras model takes it (aspect
    kept, padded bottom/right with ``pad_value``); ``"stretch"`` as the Android Task Library
    and MediaPipe do (the whole image resized to the input, aspect not kept); ``None`` (default)
    as the detector was trained, read with the pad value from the export's ``manifest.json``
    beside the file (refused when there is none). uint8-input models get the pixels as bytes
    (:func:`~keras_efficient.export.verify.tflite_detector_predict_fn`, the export check's own
    feeding). Class names come from ``labels``, the file's metadata or the ``labels.txt``
    beside it; category ids from ``category_ids``, else index + 1.

    Example::

        detector = tflite_detector("runs/export/mine-android-int8/model_int8.tflite",
                                   resize="stretch")
    """
    from keras_efficient.export.detector_tflite import PostprocessOptions
    from keras_efficient.export.runtime import load_interpreter
    from keras_efficient.export.verify import tflite_detector_predict_fn

    if resize is not None:
        check_resize(resize)
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"No such .tflite file: {file}.")
    outputs = load_interpreter(file).get_output_details()
    if len(outputs) != 4:
        raise ValueError(
            f"{file} has {len(outputs)} outputs, not the 4 of a detector export with "
            "post-processing (boxes, classes, scores, count): it is a classifier or a "
            "postprocess='none' export. Export the detector with postprocess 'custom_op' or "
            "'builtin_nms' (the android-int8 and edgetpu recipes do).")
    names = list(labels) if labels is not None else tflite_labels(file)
    names = names or []
    ids = (list(category_ids) if category_ids is not None
           else [i + 1 for i in range(len(names))])
    pad: PadValue = 0.0  # unused when stretching
    if resize is None or (resize == "letterbox" and pad_value is None):
        recorded, recorded_pad = manifest_preprocessing(file)
        resize = resize or recorded
        pad = recorded_pad if pad_value is None else pad_value
    elif pad_value is not None:
        pad = pad_value
    predict_fn = tflite_detector_predict_fn(file, PostprocessOptions(), pad_value=pad,
                                            resize=resize)
    return Detector(file.name, predict_fn, names, ids)


def _png_names(paths: Sequence[Path]) -> list[str]:
    """One PNG name per image: ``<stem>.png``, with the position added where stems repeat."""
    stems = [path.stem for path in paths]
    return [f"{stem}.png" if stems.count(stem) == 1 else f"{stem}_{i + 1}.png"
            for i, stem in enumerate(stems)]


def detect_images(detector: Detector, inputs: Sequence[str | os.PathLike[str]],
                  output_dir: str | os.PathLike[str], *, score_threshold: float = 0.3,
                  draw: bool = True, draw_size: int = LEGIBLE_SIZE,
                  progress: bool = True, on_error: str = "raise") -> Detections:
    """Detect objects in every image ``inputs`` names; write ``detections.json`` (COCO
    results: ``image_id``, ``category_id``, ``bbox`` [x, y, w, h] in the image's pixels,
    ``score``, plus ``file_name`` and ``category_name``), ``images.json`` (id, file, size) and
    one drawn PNG per image (``draw_size``: the long side small images are upscaled to).
    Returns the results list.

    Every image is decoded once before any work, so a bad file fails the call with nothing
    written, or, with ``on_error="skip"`` (the CLI's default), is left out, reported on stderr
    and listed in ``images.json``'s sibling ``skipped.json``.

    Example::

        run = load_trained_detector("runs/mine")
        detect_images(keras_detector(run.model), ["photos/"], "runs/mine/detections",
                      score_threshold=0.4)
    """
    import keras

    paths, sizes, skipped = check_readable(expand_images(inputs), on_error=on_error)
    _report_skipped(skipped)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"The output {out} exists and is not a folder; pass another --output.")
    out.mkdir(parents=True, exist_ok=True)
    bar = keras.utils.Progbar(len(paths), unit_name="image") if progress else None
    results: Detections = []
    images = []
    for image_id, (path, png, (height, width)) in enumerate(
            zip(paths, _png_names(paths), sizes, strict=True), start=1):
        image = load_image(path)
        [found] = detector.predict_fn([image])
        keep = np.asarray(found["scores"]) >= score_threshold
        boxes = np.asarray(found["boxes"]).reshape(-1, 4)[keep]
        scores = np.asarray(found["scores"])[keep]
        classes = np.asarray(found["classes"]).astype(int)[keep]
        for (ymin, xmin, ymax, xmax), cls, score in zip(boxes, classes, scores, strict=True):
            results.append({
                "image_id": image_id, "category_id": detector.category_id(int(cls)),
                "bbox": [round(float(v), 2) for v in (xmin, ymin, xmax - xmin, ymax - ymin)],
                "score": round(float(score), 5), "file_name": str(path),
                "category_name": detector.label(int(cls))})
        entry = {"id": image_id, "file_name": str(path), "height": height, "width": width,
                 "detections": int(keep.sum())}
        if draw:
            draw_detections(image, boxes, classes.tolist(), scores.tolist(),
                            labels=detector.labels or None,
                            path=out / png, min_size=draw_size)
            entry["drawn"] = png
        images.append(entry)
        if bar is not None:
            bar.add(1)
    write_json_atomic(out / "images.json", images)
    write_json_atomic(out / "detections.json", results)
    if skipped:
        write_json_atomic(out / "skipped.json", skipped)
    return results


def _report_skipped(skipped: Sequence[str]) -> None:
    import sys

    if skipped:
        print(f"skipped {len(skipped)} unreadable image{'s' * (len(skipped) > 1)}:",
              file=sys.stderr)
        for problem in skipped:
            print(f"  {problem}", file=sys.stderr)


def classify_images(model: Any, inputs: Sequence[str | os.PathLike[str]], *,
                    labels: Sequence[str] | None = None, top: int = 5,
                    progress: bool = True, on_error: str = "raise") -> list[dict[str, Any]]:
    """Top-``top`` classes of every image ``inputs`` names, each resized (bilinear, aspect not
    kept, as ``keras.utils.load_img(target_size=...)``) to the model's input size.

    Returns one dict per image: ``file`` and ``top``, a list of ``(index, name, probability)``;
    names come from ``labels`` (class numbers without them). ``on_error`` as in
    :func:`detect_images`.

    Example::

        for row in classify_images(EfficientNetB0(weights="imagenet"), ["photos/"],
                                   labels=cached_imagenet_class_names()):
            print(row["file"], row["top"][0])
    """
    import keras
    from PIL import Image

    paths, sizes, skipped = check_readable(expand_images(inputs), on_error=on_error)
    _report_skipped(skipped)
    height, width = model.input_shape[1:3]
    bar = keras.utils.Progbar(len(paths), unit_name="image") if progress else None
    rows = []
    for path, (image_h, image_w) in zip(paths, sizes, strict=True):
        image = load_image(path)
        target = (width or image_w, height or image_h)
        if (image.shape[1], image.shape[0]) != target:
            image = np.asarray(Image.fromarray(image.astype("uint8")).resize(
                target, Image.Resampling.BILINEAR), "float32")
        probabilities = np.asarray(model.predict(image[None], verbose=0))[0]
        count = min(top, probabilities.shape[-1])
        best = np.argsort(probabilities)[::-1][:count]
        rows.append({"file": str(path), "top": [
            (int(i), labels[i] if labels is not None and i < len(labels) else f"class {i}",
             float(probabilities[i])) for i in best]})
        if bar is not None:
            bar.add(1)
    return rows
