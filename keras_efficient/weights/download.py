"""Download, verify and cache pretrained weight files; extract archives safely.

Files are cached under ``$KERAS_HOME/models`` (default ``~/.keras/models``) as by
``keras.utils.get_file``, which this module does not use because, as of Keras 3.12
(``keras/src/utils/file_utils.py``), it cannot keep what the weights need:

* it downloads with ``urlretrieve`` straight onto the cache path, without a timeout of its own:
  a failed re-download deletes the good old file and a stalled server hangs. Here a download is
  streamed into a staging file (:func:`keras_efficient.files.atomic_path`) with a socket timeout,
  checked, and only then renamed over the cached file;
* it checks one hash (md5 or sha256, guessed from its length), leaves a mismatching download in
  the cache, and reuses any file it finds when no hash is given. Here both published sums are
  checked, and files without any (the TF checkpoints) are trusted on first use: their size and
  sha256 go into :data:`MANIFEST_NAME` and are checked on every reuse;
* its progress bar always prints (to stdout) and its errors are bare ``Exception``; here
  progress goes to stderr and can be turned off, and errors name the URL, the cause and the fix;
* it extracts in place, again on every call, skipping unsafe members with a warning.
  :func:`safe_extract` refuses such an archive and renames a complete extraction into place.

It also imports Keras and TensorFlow; this module needs only the standard library.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import logging
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

from keras_efficient.files import atomic_path, file_digests, make_staging_folder, write_json_atomic

__all__ = [
    "MANIFEST_NAME",
    "CacheDirError",
    "CorruptArchiveError",
    "WeightsDownloadError",
    "discard",
    "fetch",
    "file_hash",
    "keras_cache_dir",
    "safe_extract",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "keras_efficient_manifest.json"
"""Trust-on-first-use manifest kept in each cache directory."""

EXTRACTED_MARKER = ".keras_efficient_extracted"
"""Marker written last into a directory produced by :func:`safe_extract`."""

_CHUNK_SIZE = 1 << 20
_MANIFEST_FORMAT = 1
_USER_AGENT = "keras_efficient-weights/1 (+python-urllib)"
_HEX_LENGTHS = {"md5": 32, "sha256": 64}
_HEX_RE = re.compile(r"[0-9a-f]+")
# tarfile extraction filters exist from Python 3.10.12 / 3.11.4 on.
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
_FILTER_ERRORS: tuple[type[Exception], ...] = (tarfile.FilterError,) if _HAS_DATA_FILTER else ()


class CacheDirError(OSError):
    """The weights cache directory cannot be created or written.

    The message names the directory, the cause and the fix (``KERAS_HOME`` or ``cache_dir``).

    Example::

        try:
            fetch(url, "efficientnetb0.h5")
        except CacheDirError as error:
            print(error.path)  # the directory that could not be used
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"The weights cache directory {self.path} cannot be used: {reason}. Set KERAS_HOME"
            " to a writable directory (weights are cached in $KERAS_HOME/models), pass"
            " cache_dir= to point at one, or make this one a writable directory."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self.path), self.reason))


def _make_dir(path: Path) -> Path:
    """``mkdir -p path``, raising :class:`CacheDirError` when that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheDirError(path, f"{type(exc).__name__}: {exc}") from exc
    return path


def keras_cache_dir(subdir: str = "models") -> Path:
    """Return ``$KERAS_HOME/<subdir>`` (default ``~/.keras/<subdir>``), creating it.

    As in Keras, when ``KERAS_HOME`` is unset and the home directory is not
    writable, ``<tmp>/.keras/<subdir>`` is used instead. A ``KERAS_HOME`` that
    cannot hold the directory (a file, say) raises :class:`CacheDirError`.

    Example::

        keras_cache_dir()  # ~/.keras/models (or $KERAS_HOME/models)
    """
    keras_home = os.environ.get("KERAS_HOME")
    if keras_home:
        return _make_dir(Path(keras_home).expanduser() / subdir)
    path = Path.home() / ".keras" / subdir
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = _make_dir(Path(tempfile.gettempdir()) / ".keras" / subdir)
    return path


class WeightsDownloadError(OSError):
    """A weight file could not be downloaded or verified.

    The message names the URL, the cache path, the cause, and how to place
    the file by hand (for offline machines or blocked networks).

    Example::

        try:
            EfficientNetB0(weights="imagenet")
        except WeightsDownloadError as error:
            print(error.url, error.path)  # where to put the file by hand
    """

    def __init__(
        self,
        url: str,
        path: str | os.PathLike[str],
        reason: str,
        md5: str | None = None,
        sha256: str | None = None,
    ) -> None:
        self.url = url
        self.path = Path(path)
        self.reason = reason
        self.md5 = md5
        self.sha256 = sha256
        expected = [f"{name} {value}" for name, value in _sums(md5, sha256).items()]
        if expected:
            check = "; expected " + ", ".join(expected)
        else:
            check = (
                "; no checksum is published for it, so its sha256 is recorded on first use"
                f" in {self.path.parent / MANIFEST_NAME}"
            )
        super().__init__(
            f"Could not fetch {url} into {self.path}: {reason}. To install it by hand,"
            f" download {url} with a browser or `curl -L -o '{self.path}' '{url}'`"
            f" and save it as {self.path}{check}."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.url, str(self.path), self.reason, self.md5, self.sha256))


def file_hash(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Return the hex digest of a file, read in chunks (``algorithm`` as in hashlib).

    Example::

        file_hash("efficientnetb0.h5", "md5")  # "902e53a9f72be733fc0bcb005b3ebbac"
    """
    return file_digests(path, algorithm)[algorithm]


def _sums(md5: str | None, sha256: str | None) -> dict[str, str]:
    """The given checksums by algorithm name."""
    return {name: value for name, value in (("md5", md5), ("sha256", sha256)) if value}


def _normalize_hash(value: str | None, algorithm: str) -> str | None:
    if value is None:
        return None
    normalized = value.strip().lower()
    if len(normalized) != _HEX_LENGTHS[algorithm] or not _HEX_RE.fullmatch(normalized):
        raise ValueError(
            f"{algorithm} must be {_HEX_LENGTHS[algorithm]} hexadecimal digits, got {value!r}"
        )
    return normalized


def _check_filename(filename: str) -> None:
    if (
        not filename
        or filename in (".", "..", MANIFEST_NAME)
        or "/" in filename
        or "\\" in filename
        or "\0" in filename
        or (os.altsep is not None and os.altsep in filename)
    ):
        raise ValueError(f"filename must be a plain file name in the cache dir, got {filename!r}")


# --------------------------------------------------------------------------- manifest
# Trust on first use: get_file reuses any cached file when no hash is published; the size and
# sha256 recorded at the first download catch a truncated or replaced file on every later use.


def _load_manifest(cache_dir: Path) -> dict[str, dict[str, Any]]:
    """Read the TOFU manifest; anything unreadable is logged and treated as empty."""
    path = cache_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        logger.warning("Ignoring unreadable or corrupt weights manifest %s: %s", path, exc)
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        logger.warning("Ignoring weights manifest %s: unexpected structure", path)
        return {}
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in files.items():
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("size"), int)
            and isinstance(entry.get("sha256"), str)
        ):
            entries[name] = entry
        else:
            logger.warning("Ignoring malformed entry %r in weights manifest %s", name, path)
    return entries


def _save_manifest(cache_dir: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Write the manifest atomically; a failure only logs a warning (the files are in place)."""
    try:
        files = dict(sorted(entries.items()))
        write_json_atomic(cache_dir / MANIFEST_NAME, {"format": _MANIFEST_FORMAT, "files": files})
    except OSError as exc:
        logger.warning("Could not update weights manifest in %s: %s", cache_dir, exc)


def _record(cache_dir: Path, filename: str, url: str, size: int, sha256: str) -> None:
    """Record (or refresh) a file's manifest entry."""
    entries = _load_manifest(cache_dir)
    now = _dt.datetime.now(_dt.timezone.utc)  # noqa: UP017 - datetime.UTC needs 3.11
    entries[filename] = {
        "url": url,
        "size": size,
        "sha256": sha256,
        "recorded": now.isoformat(timespec="seconds"),
    }
    _save_manifest(cache_dir, entries)


def discard(path: str | os.PathLike[str]) -> bool:
    """Remove a cached file and its trust record from the manifest beside it.

    Returns whether the file existed. Used when a trusted-on-first-use file turns out unusable,
    so that the next :func:`fetch` downloads and records it afresh.

    Example::

        discard(keras_cache_dir() / "efficientdet-lite0.tgz")  # file and manifest entry gone
    """
    path = Path(path)
    existed = path.exists()
    path.unlink(missing_ok=True)
    entries = _load_manifest(path.parent)
    if entries.pop(path.name, None) is not None:
        _save_manifest(path.parent, entries)
    return existed


# --------------------------------------------------------------------------- cache check


def _cached_file_ok(
    target: Path, url: str, md5: str | None, sha256: str | None, cache_dir: Path
) -> bool:
    """Whether an existing cached file can be used without touching the network."""
    expected = _sums(md5, sha256)
    if expected:
        actual = file_digests(target, *{*expected, "sha256"})
        bad = [name for name in expected if actual[name] != expected[name]]
        if bad:
            logger.warning(
                "Cached file %s does not match its checksum (%s); downloading it again from %s",
                target,
                ", ".join(f"expected {n} {expected[n]}, got {actual[n]}" for n in bad),
                url,
            )
            return False
        # Keep the manifest in line with a verified file (e.g. one placed by hand).
        entry = _load_manifest(cache_dir).get(target.name)
        if entry is None or entry["sha256"] != actual["sha256"]:
            _record(cache_dir, target.name, url, target.stat().st_size, actual["sha256"])
        return True

    entry = _load_manifest(cache_dir).get(target.name)
    if entry is None:
        # Trust on first use also covers a file placed by hand: adopt and record it.
        digest = file_hash(target)
        logger.info("Recording sha256 %s of existing file %s (trust on first use)", digest, target)
        _record(cache_dir, target.name, url, target.stat().st_size, digest)
        return True
    size = target.stat().st_size
    if size != entry["size"]:
        logger.warning(
            "Cached file %s has size %d but %s recorded size %d (sha256 %s);"
            " downloading it again from %s",
            target, size, MANIFEST_NAME, entry["size"], entry["sha256"], url,
        )
        return False
    digest = file_hash(target)
    if digest != entry["sha256"]:
        logger.warning(
            "Cached file %s does not match %s: expected sha256 %s, got %s;"
            " downloading it again from %s",
            target, MANIFEST_NAME, entry["sha256"], digest, url,
        )
        return False
    return True


# --------------------------------------------------------------------------- download


def _format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


class _Progress:
    """Compact progress line on stderr (redrawn in place on a TTY, throttled otherwise).

    Not keras.utils.Progbar: that one writes to stdout and shows no file name.
    """

    def __init__(self, label: str, total: int | None, enabled: bool, stream: IO[str]) -> None:
        self.label, self.total, self.enabled, self.stream = label, total, enabled, stream
        isatty = getattr(stream, "isatty", None)
        self.interactive = bool(isatty and isatty())
        self.interval = 0.5 if self.interactive else 10.0
        self.last = time.monotonic()
        self.shown = False

    def _emit(self, received: int) -> None:
        amount = _format_bytes(received)
        if self.total:
            amount += f" / {_format_bytes(self.total)} ({100.0 * received / self.total:.0f}%)"
        prefix, end = ("\r\x1b[K", "") if self.interactive else ("", "\n")
        self.stream.write(f"{prefix}Downloading {self.label}: {amount}{end}")
        self.stream.flush()
        self.shown = True

    def update(self, received: int) -> None:
        now = time.monotonic()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            self._emit(received)

    def close(self, received: int, ok: bool) -> None:
        if self.enabled and ok:
            self._emit(received)
        if self.enabled and self.interactive and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _content_length(response: Any) -> int | None:
    try:
        length = int(response.headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None
    return length if length >= 0 else None


def _stream_to(url: str, path: Path, label: str, progress: bool, timeout: float) -> int:
    """Stream ``url`` into the file ``path``, flushed to disk; return its size."""
    request = urllib.request.Request(
        url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    )
    received = 0
    with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as out:
        total = _content_length(response)
        bar = _Progress(label, total, progress, sys.stderr)
        ok = False
        try:
            while chunk := response.read(_CHUNK_SIZE):
                out.write(chunk)
                received += len(chunk)
                bar.update(received)
            if total is not None and received != total:  # servers that do not say it themselves
                raise http.client.IncompleteRead(b"", total - received)
            out.flush()
            os.fsync(out.fileno())
            ok = True
        finally:
            bar.close(received, ok)
    return received


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP error {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        text = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else reason
        return f"connection failed ({text})"
    if isinstance(exc, http.client.IncompleteRead):
        missing = f", {exc.expected} more bytes expected" if exc.expected else ""
        return f"download truncated: the connection closed early{missing}"
    if isinstance(exc, TimeoutError):
        return f"timed out ({exc})"
    return f"{type(exc).__name__}: {exc}"


def _download(
    url: str, target: Path, *, md5: str | None, sha256: str | None, progress: bool, timeout: float
) -> tuple[int, str]:
    """Download ``url`` atomically to ``target``; return (size, sha256).

    Through a staging file renamed only once verified: an interrupted, truncated or mismatching
    download (KeyboardInterrupt included) leaves nothing behind and the old file untouched.
    """
    try:
        with atomic_path(target) as temporary:
            try:
                size = _stream_to(url, temporary, target.name, progress, timeout)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise WeightsDownloadError(url, target, _describe(exc), md5, sha256) from exc
            digests = file_digests(temporary, "md5", "sha256")
            for name, expected in _sums(md5, sha256).items():
                if digests[name] != expected:
                    reason = (f"checksum mismatch for {url}: expected {name} {expected},"
                              f" got {digests[name]} ({size} bytes received)")
                    raise WeightsDownloadError(url, target, reason, md5, sha256)
    except WeightsDownloadError:
        raise
    except OSError as exc:  # the staging file cannot be made or renamed into place
        raise CacheDirError(target.parent, f"cannot write {target.name} into it ({exc})"
                            ) from exc
    return size, digests["sha256"]


def fetch(
    url: str,
    filename: str,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Return the path of ``filename`` in the cache, downloading ``url`` if needed.

    A cached file that matches the given ``md5``/``sha256`` is returned without
    any network access. Without checksums, the size and sha256 recorded in
    :data:`MANIFEST_NAME` at first use are checked instead (a pinned ``sha256``
    overrides the manifest). A mismatching file is logged and downloaded again;
    it stays untouched until a verified replacement is renamed over it.

    Args:
        url: Where to download the file from (``http``, ``https``, ``file``).
        filename: Plain file name inside the cache directory.
        md5: Expected hex md5 digest, if published.
        sha256: Expected hex sha256 digest, if published.
        cache_dir: Directory to use; default :func:`keras_cache_dir`.
        progress: Print a progress line to stderr while downloading.
        timeout: Socket timeout in seconds for connecting and each read.

    Raises:
        WeightsDownloadError: The download failed or did not match its checksum
            (``KeyboardInterrupt`` propagates unchanged). No partial file is kept.
        CacheDirError: The cache directory cannot be created or written to.
        ValueError: ``filename`` is not a plain name or a checksum is malformed.

    Example::

        path = fetch("https://storage.googleapis.com/keras-applications/efficientnetb0.h5",
                     "efficientnetb0.h5", md5="902e53a9f72be733fc0bcb005b3ebbac")
    """
    _check_filename(filename)
    md5 = _normalize_hash(md5, "md5")
    sha256 = _normalize_hash(sha256, "sha256")
    directory = keras_cache_dir() if cache_dir is None else _make_dir(Path(cache_dir).expanduser())
    target = directory / filename

    if target.is_file() and _cached_file_ok(target, url, md5, sha256, directory):
        return target

    size, digest = _download(
        url, target, md5=md5, sha256=sha256, progress=progress, timeout=timeout
    )
    _record(directory, filename, url, size, digest)
    return target


# --------------------------------------------------------------------------- extraction
# Our own rules, not get_file's (which skips unsafe members with a warning and extracts the
# rest): an archive with any unsafe member is refused before anything is written, and
# tarfile's filter="data" is kept as a second line.


def _is_absolute(name: str) -> bool:
    return (
        name.startswith(("/", "\\"))
        or PurePosixPath(name).is_absolute()
        or bool(PureWindowsPath(name).drive)
    )


def _escapes(name: str) -> bool:
    """Whether a relative archive path leaves the extraction root once normalized."""
    normalized = posixpath.normpath(name.replace("\\", "/"))
    return normalized == ".." or normalized.startswith("../")


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = member.name

    def reject(why: str) -> ValueError:
        return ValueError(f"refusing to extract {archive}: member {name!r} {why}")

    if not name or "\0" in name:
        raise reject("has an invalid name")
    if _is_absolute(name):
        raise reject("has an absolute path")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise reject("contains a '..' path component")
    if member.issym():
        link = member.linkname
        if _is_absolute(link) or _escapes(posixpath.join(posixpath.dirname(name), link)):
            raise reject(f"is a symlink pointing outside the destination ({link!r})")
    elif member.islnk():
        link = member.linkname
        if _is_absolute(link) or _escapes(link):
            raise reject(f"is a hard link pointing outside the destination ({link!r})")
    elif member.ischr() or member.isblk() or member.isfifo():
        raise reject("is a device file or FIFO")
    elif not (member.isfile() or member.isdir()):
        raise reject(f"has unsupported type {member.type!r}")


def _is_complete(directory: Path) -> bool:
    return directory.is_dir() and (directory / EXTRACTED_MARKER).is_file()


def _dest_is_free(dest: Path) -> bool:
    """Whether ``dest`` may be (re)placed; raise if it holds foreign content.

    Returns False when ``dest`` already is a complete extraction.
    """
    if _is_complete(dest):
        return False
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise FileExistsError(f"{dest} exists and is not a directory; remove it and retry")
    if dest.is_dir() and any(dest.iterdir()):
        raise FileExistsError(
            f"{dest} exists but is not a complete extraction (no {EXTRACTED_MARKER} marker);"
            " remove it and retry"
        )
    return True


class CorruptArchiveError(ValueError):
    """An archive cannot be read: truncated, corrupt or not a tar archive at all.

    Example::

        try:
            safe_extract("efficientdet-lite0.tgz", dest)
        except CorruptArchiveError as error:
            print(error.archive)  # delete it and download it again
    """

    def __init__(self, archive: str | os.PathLike[str], message: str) -> None:
        self.archive = Path(archive)
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self.archive), str(self)))


_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error)


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except _TAR_ERRORS as exc:
        raise CorruptArchiveError(archive, f"{archive} is not a readable tar archive: {exc}"
                                  ) from exc


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract a ``.tar``/``.tar.gz``/``.tgz`` archive into ``dest`` safely and atomically.

    Members with absolute paths, ``..`` components, links pointing outside
    ``dest``, or device files are rejected with a ``ValueError`` naming the
    member before anything is written; extraction also uses ``tarfile``'s
    ``filter="data"``. The archive is unpacked into a staging folder beside
    ``dest``, a marker file (:data:`EXTRACTED_MARKER`) is written last, and the
    folder is renamed to ``dest``. A ``dest`` holding a complete extraction
    is returned as is (the archive is not read); an empty ``dest`` directory is
    replaced; any other existing ``dest`` raises ``FileExistsError``. An unreadable
    archive raises :class:`CorruptArchiveError` (a ``ValueError``); a ``dest``
    folder that cannot be written, :class:`CacheDirError`.

    Example::

        folder = safe_extract("efficientnet-lite0.tar.gz", cache / "efficientnet-lite0_extracted")
    """
    archive = Path(archive)
    dest = Path(dest)
    if not _dest_is_free(dest):
        return dest
    with _open_tar(archive) as tar:
        try:
            members = tar.getmembers()
        except (*_TAR_ERRORS, OSError) as exc:
            raise CorruptArchiveError(archive, f"{archive} is corrupt or truncated: {exc}"
                                      ) from exc
        for member in members:
            _check_member(member, archive)
        _make_dir(dest.parent)
        try:
            tmp = make_staging_folder(dest)
        except OSError as exc:
            raise CacheDirError(dest.parent, f"cannot extract {archive.name} into it ({exc})"
                                ) from exc
        try:
            try:
                if _HAS_DATA_FILTER:
                    tar.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - old patch releases; members were checked above
                    tar.extractall(tmp, members=members)
            except _FILTER_ERRORS as exc:
                tarinfo = getattr(exc, "tarinfo", None)
                member_name = tarinfo.name if tarinfo is not None else "?"
                raise ValueError(
                    f"refusing to extract {archive}: member {member_name!r} rejected ({exc})"
                ) from exc
            except _TAR_ERRORS as exc:
                raise CorruptArchiveError(archive, f"{archive} is corrupt or truncated: {exc}"
                                          ) from exc
            info = {"archive": archive.name, "size": archive.stat().st_size,
                    "members": len(members)}
            # The folder's rename makes the extraction atomic; the marker only needs to be last.
            (tmp / EXTRACTED_MARKER).write_text(json.dumps(info), encoding="utf-8")
            _install_dir(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _install_dir(tmp: Path, dest: Path) -> None:
    """Rename a finished extraction to ``dest``, replacing an empty folder and tolerating a
    concurrent winner (which ``files.publish_folder``, refusing any existing target, does not).
    """
    if not _dest_is_free(dest):  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if dest.is_dir():
        dest.rmdir()  # empty, checked above
    try:
        os.rename(tmp, dest)
    except OSError:
        if not _is_complete(dest):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # lost a race with a concurrent extraction
