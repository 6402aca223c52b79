"""Atomic file writes and checksums shared by every exporter."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


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
