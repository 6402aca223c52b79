"""What to export: a trained detector from a training folder, a named variant, or a fresh one.

Each function returns an :class:`~keras_efficient.export.pipeline.ExportJob` with the model
(a detector carries its spec and label map), its representative images and, for detectors, a
held-out COCO-format set for the AP check.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from keras_efficient.configs.names import is_detector
from keras_efficient.data.coco import CocoDataset
from keras_efficient.data.representative import representative_images
from keras_efficient.data.synthetic import make_detection_dataset
from keras_efficient.export.pipeline import ExportJob
from keras_efficient.export.tflite import static_image_size
from keras_efficient.export.verify import HeldOutSet
from keras_efficient.models.variants import get_model
from keras_efficient.training.run_folder import load_trained_detector


def _held_out(annotations: str | os.PathLike[str], max_images: int) -> HeldOutSet:
    data = CocoDataset(annotations)
    image_dir = Path(data.records[0].path).parent if data.records else Path(annotations).parent
    return HeldOutSet(annotations, image_dir, data.category_ids, max_images=max_images)


def _resolve(path: str | os.PathLike[str], train_dir: Path) -> Path:
    """A path from ``train_config.json``: as written (relative to where training ran) when it
    exists from here, else relative to the first parent of ``train_dir`` where it exists."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    for base in train_dir.resolve().parents:
        if (base / candidate).exists():
            return base / candidate
    raise ValueError(f"{candidate} (from {train_dir / 'train_config.json'}) does not exist here "
                     "or under any parent of the training folder; run from the folder training "
                     "ran in, or pass eval_json/representative paths explicitly.")


def trained_detector_job(train_dir: str | os.PathLike[str], *, count: int = 100,
                         eval_json: str | os.PathLike[str] | None = None,
                         eval_images: int = 50) -> ExportJob:
    """The detector that ``train_detector`` (or ``make demo``) left in ``train_dir``.

    Calibrates on its training images; measures AP on ``eval_json`` or, when not given, on the
    ``val`` split beside the training annotations (the layout of the synthetic and COCO sets).

    Example::

        job = trained_detector_job("runs/demo/train")
        export_job(job, load_recipe("android-int8"), "export/demo")
    """
    folder = Path(train_dir)
    run = load_trained_detector(folder)
    config, model = run.config, run.model
    if config is None:
        raise ValueError(f"{folder} is a saved detector, not a training folder: export it "
                         "with variant_job-style representative images instead (keras-efficient "
                         "export needs the training folder to find its images).")
    train_json = _resolve(config.train_json, folder)
    if eval_json is None:
        candidate = train_json.with_name(train_json.name.replace("train", "val"))
        eval_json = candidate if candidate.is_file() and candidate != train_json else None
    images = list(representative_images(train_json, static_image_size(model), count=count,
                                        pad_value=model.pad_value, resize=model.resize))
    return ExportJob(model, images, weights_origin=str(run.weights_path),
                     held_out=None if eval_json is None else _held_out(eval_json, eval_images))


def variant_job(name: str, *, weights: str | None, representative: str | os.PathLike[str],
                count: int = 100, eval_json: str | os.PathLike[str] | None = None,
                eval_images: int = 50, num_classes: int | None = None) -> ExportJob:
    """A named variant (``lite0``, ``b0``, ``efficientdet-lite0`` ...) with ``weights``.

    ``representative``: an image folder or COCO json to calibrate on; ``eval_json``: a
    COCO-format set for the detector AP check.

    Example::

        job = variant_job("b0", weights="imagenet", representative="photos/")
    """
    detector = is_detector(name)
    kwargs: dict[str, Any] = {"weights": weights}
    if num_classes is not None:
        kwargs["num_classes" if detector else "classes"] = num_classes
    model = get_model(name, **kwargs)
    pad = {"pad_value": model.pad_value, "resize": model.resize} if detector else {}
    images = list(representative_images(representative, static_image_size(model), count=count,
                                         **pad))
    if not detector:
        return ExportJob(model, images, weights_origin=weights or "random")
    return ExportJob(model, images, weights_origin=weights or "random",
                     held_out=None if eval_json is None else _held_out(eval_json, eval_images))


def fresh_detector_job(name: str = "efficientdet-lite0", *, num_classes: int = 3,
                       count: int = 16) -> ExportJob:
    """A freshly built (random-weight) detector calibrated on synthetic images.

    For trying the export path offline without trained weights; its accuracy means nothing.
    The synthetic images live in a temporary folder that is removed when the job is garbage
    collected or the program exits.

    Example::

        rows = benchmark(fresh_detector_job(), "bench-out")  # offline, no trained weights
    """
    model = get_model(name, num_classes=num_classes)
    folder = Path(tempfile.mkdtemp(prefix="keras_efficient_export_"))
    data = make_detection_dataset(folder / "data", num_train=count, num_val=4,
                                  image_size=static_image_size(model))
    images = list(representative_images(data.train_json, static_image_size(model), count=count,
                                        pad_value=model.pad_value, resize=model.resize))
    val = data.coco("val")
    job = ExportJob(model, images, weights_origin="random",
                    labels=val.class_names, category_ids=val.category_ids,
                    held_out=_held_out(data.val_json, 4))
    weakref.finalize(job, shutil.rmtree, folder, ignore_errors=True)
    return job
