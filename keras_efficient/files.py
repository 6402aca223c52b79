"""Atomic file writes and checksums: one helper for every package (the bottom of the import
order, beside ``configs``; no TensorFlow)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike[str], payload: bytes) -> Path:
    """Write ``payload`` to ``path`` through a temporary sibling and a rename.

    A failure at any point leaves no file at ``path`` (and no temporary file behind).

    Example::

        write_bytes_atomic("export/model.tflite", payload)
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise ValueError(f"Output folder {target.parent} does not exist; create it first.")
    if not os.access(target.parent, os.W_OK):
        raise PermissionError(f"Output folder {target.parent} is not writable.")
    temporary = target.with_name(f".{os.getpid()}.{target.name}.part")
    try:
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`write_bytes_atomic` for UTF-8 text.

    Example::

        write_text_atomic("runs/mine/labels.txt", "cat\ndog\n")
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically (``default=str`` for paths and the like).

    Example::

        write_json_atomic("runs/mine/metrics.json", {"top1": 0.93})
    """
    return write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, streamed.

    Example::

        sha256_of("export/model.tflite")  # 64 hex digits
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
