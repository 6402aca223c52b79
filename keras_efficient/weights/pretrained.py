"""Fetch, verify and load the published ImageNet weights of a variant."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keras_efficient.configs.efficientnet import get_efficientnet_scaling
from keras_efficient.weights.checkpoint import checkpoint_prefix, load_efficientnet_checkpoint
from keras_efficient.weights.download import fetch, keras_cache_dir, safe_extract
from keras_efficient.weights.loading import load_weights_file
from keras_efficient.weights.registry import WeightFile, imagenet_weights


def fetch_weight_file(entry: WeightFile, progress: bool = True) -> Path:
    """Download (or reuse from the Keras cache) and verify one registry file."""
    return fetch(entry.resolved_url, entry.filename, md5=entry.md5,
                 sha256=entry.pinned_sha256, progress=progress)


def fetch_checkpoint(entry: WeightFile, progress: bool = True) -> str:
    """Download and safely extract a checkpoint tarball; return the checkpoint prefix."""
    archive = fetch_weight_file(entry, progress=progress)
    stem = entry.filename.removesuffix(".tar.gz").removesuffix(".tgz")
    folder = safe_extract(archive, keras_cache_dir() / f"{stem}_extracted")
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
    """Load the ImageNet weights of ``variant`` into ``model``."""
    entry = imagenet_weights(variant, include_top)
    if entry.format == "keras_h5":
        load_weights_file(model, fetch_weight_file(entry))
        return
    prefix = fetch_checkpoint(entry)
    load_efficientnet_checkpoint(model, prefix, get_efficientnet_scaling(variant), include_top)
