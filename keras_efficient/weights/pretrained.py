"""Fetch, verify and load the published ImageNet weights of a variant."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from keras_efficient.configs.efficientdet import EfficientDetSpec
from keras_efficient.configs.efficientnet import get_efficientnet_scaling
from keras_efficient.files import atomic_path
from keras_efficient.weights.checkpoint import checkpoint_prefix, load_efficientnet_checkpoint
from keras_efficient.weights.detector_checkpoint import load_efficientdet_checkpoint
from keras_efficient.weights.download import (
    MANIFEST_NAME,
    CorruptArchiveError,
    discard,
    fetch,
    file_hash,
    keras_cache_dir,
    safe_extract,
)
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

    An unreadable archive without a published or pinned checksum (trusted on first use) is
    removed with its manifest record and downloaded once more, with a warning; if that one is
    unreadable too, it is removed as well and a :class:`CorruptArchiveError` says what to do.

    Example::

        prefix = fetch_checkpoint(coco_weights("efficientdet-lite0"))
    """
    archive = fetch_weight_file(entry, progress=progress)
    try:
        return _extract_checkpoint(archive, entry)
    except CorruptArchiveError as error:
        if entry.md5 is not None or entry.pinned_sha256 is not None:
            raise CorruptArchiveError(
                archive, f"{error}. It matches its published or pinned checksum, so the "
                "checksum names a broken file: check the sha256 given to pin_sha256 (or remove "
                "the pin) and delete the file so that it is downloaded again."
            ) from error
        first = error
    manifest = archive.parent / MANIFEST_NAME
    discard(archive)
    warnings.warn(
        f"{first}. It had no published checksum (trusted on first use), so it and its record "
        f"in {manifest} were removed; downloading it again from {entry.resolved_url}.",
        stacklevel=2,
    )
    archive = fetch_weight_file(entry, progress=progress)
    try:
        return _extract_checkpoint(archive, entry)
    except CorruptArchiveError as error:
        discard(archive)
        raise CorruptArchiveError(
            archive, f"{error}. It was downloaded again from {entry.resolved_url} and is still "
            f"unreadable, so it and its record in {manifest} were removed: the server may be "
            "sending a broken or incomplete file. Try again later, or download it by hand "
            f"(`curl -L -o '{archive}' '{entry.resolved_url}'`), check it with `tar tzf`, and "
            f"place it at {archive}."
        ) from error


def _extract_checkpoint(archive: Path, entry: WeightFile) -> str:
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
    tarball and written atomically. A cached file that cannot be read is removed and the
    checkpoint converted again; a cache that cannot be written only warns. With another
    ``num_classes`` everything but the class predictor is loaded, and a warning says so.

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
    if converted.exists() and _load_converted(model, converted, prefix):
        return
    load_efficientdet_checkpoint(model, prefix, spec)
    _cache_converted(model, converted, prefix)


#: Layers that checkpoint conversion leaves alone (restored if a bad cached file touched them).
_UNCONVERTED = ("normalization",)


def _load_converted(model: Any, converted: Path, prefix: str) -> bool:
    """Load the cached converted weights; False (file removed, warned) when they are unusable."""
    kept = {layer.name: layer.get_weights() for layer in model.layers
            if layer.name in _UNCONVERTED and layer.weights}
    try:
        load_weights_file(model, converted)
        return True
    except ValueError as error:  # unreadable (truncated, not HDF5) or not this detector's
        reason = error
    for name, values in kept.items():
        layer = model.get_layer(name)
        layer.set_weights(values)
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
    try:
        converted.unlink(missing_ok=True)
        done = "removed it"
    except OSError as error:
        done = f"could not remove it ({error})"
    warnings.warn(
        f"The cached converted COCO weights {converted} cannot be used ({reason}); {done} and "
        f"converted the checkpoint {prefix} again.",
        stacklevel=4,
    )
    return False


def _cache_converted(model: Any, converted: Path, prefix: str) -> None:
    """Save the converted weights atomically; a failure only warns (the model is loaded)."""
    try:
        with atomic_path(converted) as temporary:  # keeps the name: save_weights wants .weights.h5
            model.save_weights(temporary)
    except OSError as error:
        warnings.warn(
            f"Loaded the COCO weights from the checkpoint {prefix}, but could not cache the "
            f"converted weights as {converted} ({type(error).__name__}: {error}); they will be "
            f"converted again next time. Make {converted.parent} writable, or set KERAS_HOME "
            "to a writable directory.",
            stacklevel=4,
        )
