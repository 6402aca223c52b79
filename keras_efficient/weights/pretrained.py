"""Fetch, verify and load the published ImageNet weights of a variant."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from keras_efficient.configs.efficientdet import EfficientDetSpec
from keras_efficient.configs.efficientnet import get_efficientnet_scaling
from keras_efficient.weights.checkpoint import checkpoint_prefix, load_efficientnet_checkpoint
from keras_efficient.weights.detector_checkpoint import load_efficientdet_checkpoint
from keras_efficient.weights.download import fetch, file_hash, keras_cache_dir, safe_extract
from keras_efficient.weights.loading import load_weights_file
from keras_efficient.weights.registry import WeightFile, coco_weights, imagenet_weights


def fetch_weight_file(entry: WeightFile, progress: bool = True) -> Path:
    """Download (or reuse from the Keras cache) and verify one registry file.

    Example::

        path = fetch_weight_file(imagenet_weights("efficientnetb0", include_top=True))
    """
    return fetch(entry.resolved_url, entry.filename, md5=entry.md5,
                 sha256=entry.pinned_sha256, progress=progress)


def fetch_checkpoint(entry: WeightFile, progress: bool = True) -> str:
    """Download and safely extract a checkpoint tarball; return the checkpoint prefix.

    Example::

        prefix = fetch_checkpoint(coco_weights("efficientdet-lite0"))
    """
    archive = fetch_weight_file(entry, progress=progress)
    stem = entry.filename.removesuffix(".tar.gz").removesuffix(".tgz")
    # The extraction is keyed by the verified archive's content: an archive downloaded again
    # with other contents (a new sha256 pin, a changed upstream file) must never reuse the
    # extraction of the previous one.
    digest = file_hash(archive, "sha256")[:16]
    folder = safe_extract(archive, archive.parent / f"{stem}_extracted_{digest}")
    candidates = [Path(root) for root, _, files in os.walk(folder)
                  if any(name.endswith(".index") for name in files)]
    for candidate in sorted(candidates):
        prefix = checkpoint_prefix(candidate)
        if prefix is not None:
            return prefix
    raise ValueError(
        f"The archive {archive} holds no TF checkpoint (no '*.index' file); delete it from the "
        "cache so that it is downloaded again."
    )


def load_pretrained(model: Any, variant: str, include_top: bool) -> None:
    """Load the ImageNet weights of ``variant`` into ``model``.

    Example::

        load_pretrained(model, "efficientnetlite0", include_top=True)  # weights="imagenet"
    """
    entry = imagenet_weights(variant, include_top)
    if entry.format == "keras_h5":
        load_weights_file(model, fetch_weight_file(entry))
        return
    prefix = fetch_checkpoint(entry)
    load_efficientnet_checkpoint(model, prefix, get_efficientnet_scaling(variant), include_top)


COCO_CLASSES = 90


def load_coco(model: Any, spec: EfficientDetSpec, num_classes: int,
              fusion: str | None = None) -> None:
    """Load the official COCO detector weights, converting the checkpoint once.

    The converted weights (90 classes) are cached as ``<name>_coco.weights.h5`` beside the
    tarball and written atomically. With another ``num_classes`` everything but the class
    predictor is loaded, and a warning says so.

    Example::

        load_coco(detector, get_efficientdet_spec("lite0"), num_classes=90)  # weights="coco"
    """
    if fusion is not None and fusion != spec.fusion:
        raise ValueError(
            f"The COCO weights of {spec.name} were trained with fusion={spec.fusion!r}; "
            f"received fusion={fusion!r}. Drop the override or use weights=None."
        )
    entry = coco_weights(spec.name)
    prefix = fetch_checkpoint(entry)
    if num_classes != COCO_CLASSES:
        load_efficientdet_checkpoint(model, prefix, spec, skip_class_predictor=True)
        warnings.warn(
            f"Loaded the COCO weights of {spec.name} except the class predictor "
            f"({COCO_CLASSES} classes -> {num_classes}), which keeps its initial weights.",
            stacklevel=3,
        )
        return
    converted = keras_cache_dir() / f"{spec.name}_coco.weights.h5"
    if converted.exists():
        model.load_weights(converted)
        return
    load_efficientdet_checkpoint(model, prefix, spec)
    temporary = converted.with_name(f".{os.getpid()}.{converted.name}")
    try:
        model.save_weights(temporary)
        os.replace(temporary, converted)
    finally:
        temporary.unlink(missing_ok=True)
