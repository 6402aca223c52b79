"""Atomic file writes, staging folders and checksums: one helper for every package (the bottom
of the import order, beside ``configs``; no TensorFlow).

Temporary files and staging folders are named after their target and the writing process
(``.<pid>.<name>.part``, ``.<name>.staging-<pid>-<random>``), so that what a killed run left
behind is recognisably ours and is removed by the next write to the same target.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# A staging folder of this process's pid older than this is a previous process's (pid reuse).
_IMPORTED_AT = time.time()


def check_output_parent(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path whose folder exists and is writable, or a clear error.

    Example::

        check_output_parent("export/model.tflite")  # ValueError if export/ does not exist
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise ValueError(f"Output folder {target.parent} does not exist; create it first.")
    if not os.access(target.parent, os.W_OK):
        raise PermissionError(f"Output folder {target.parent} is not writable.")
    return target


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as gone).

    Example::

        pid_alive(os.getpid())  # True
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _left_by_a_dead_run(path: Path, pid: int) -> bool:
    if pid == os.getpid():
        try:
            return path.lstat().st_mtime < _IMPORTED_AT
        except OSError:
            return False
    return not pid_alive(pid)


def remove_stale(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and staging folders that killed runs left beside ``target``.

    Only names this module gives (``.<pid>.<name>.part``, ``.<name>.staging-<pid>-<hex>``)
    whose process is gone are touched; a live run's are kept. Returns what was removed.

    Example::

        remove_stale("export/lite0")  # [Path("export/.lite0.staging-4242-1f2e3d4c")]
    """
    target = Path(target)
    patterns = (re.compile(re.escape(f".{target.name}.staging-") + r"(\d+)-[0-9a-f]{8}"),
                re.compile(r"\.(\d+)\." + re.escape(target.name) + r"\.part"))
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    for entry in entries:
        match = next((m for p in patterns if (m := p.fullmatch(entry.name))), None)
        path = Path(entry.path)
        if match is None or not _left_by_a_dead_run(path, int(match.group(1))):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def make_staging_folder(target: str | os.PathLike[str]) -> Path:
    """A new hidden folder ``.<name>.staging-<pid>-<hex>`` beside ``target``, after removing
    the stale ones of killed runs; its mode follows the umask, like the folder it becomes.

    Example::

        staging = make_staging_folder("export/lite0")  # fill it, then publish_folder(...)
    """
    target = check_output_parent(target)
    remove_stale(target)
    while True:
        folder = target.with_name(f".{target.name}.staging-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


@contextlib.contextmanager
def staging_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """:func:`make_staging_folder`, removed on exit (unless it was published by then).

    Example::

        with staging_folder("export/lite0") as staging:
            (staging / "labels.txt").write_text("cat\\n")
            publish_folder(staging, "export/lite0")
    """
    folder = make_staging_folder(target)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish_folder(staging: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Rename a finished staging folder to ``target``, which must not exist.

    Example::

        publish_folder(staging, "export/lite0")
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} appeared while the export ran; nothing was replaced.")
    os.replace(staging, target)
    return target


def write_bytes_atomic(path: str | os.PathLike[str], payload: bytes) -> Path:
    """Write ``payload`` to ``path`` through a temporary sibling and a rename.

    A failure at any point leaves no file at ``path`` (and no temporary file behind); the
    temporary files of killed writers to the same path are removed first.

    Example::

        write_bytes_atomic("export/model.tflite", payload)
    """
    target = check_output_parent(path)
    remove_stale(target)
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


_CHUNK_SIZE = 1 << 20


def file_digests(path: str | os.PathLike[str], *algorithms: str) -> dict[str, str]:
    """Hex digests of a file under one or more ``hashlib`` algorithms, in one streamed pass.

    Example::

        file_digests("efficientnetb0.h5", "md5", "sha256")  # {"md5": "902e...", "sha256": ...}
    """
    hashers = {name: hashlib.new(name, usedforsecurity=name != "md5") for name in algorithms}
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_SIZE):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path to write ``path`` through, renamed onto ``path`` when the block succeeds.

    The temporary has the same name, inside a :func:`make_staging_folder` beside ``path`` (so
    writers that go by the suffix, such as ``model.save_weights``, accept it); on an exception
    ``path`` is left as it was and the staging folder is removed.

    Example::

        with atomic_path("cache/lite0_coco.weights.h5") as temporary:
            model.save_weights(temporary)
    """
    target = Path(path)
    with staging_folder(target) as folder:
        temporary = folder / target.name
        yield temporary
        os.replace(temporary, target)
