"""Tests for keras_efficient.weights.download (local HTTP server on 127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from keras_efficient import files
from keras_efficient.weights import download
from keras_efficient.weights.download import (
    EXTRACTED_MARKER,
    MANIFEST_NAME,
    WeightsDownloadError,
    fetch,
    file_hash,
    keras_cache_dir,
    safe_extract,
)
from tests.helpers import LocalHTTPServer, closed_port_url

PATH = "/weights/model.weights.h5"
NAME = "model.weights.h5"
DATA = bytes(range(256)) * 1000 + b"tail"  # 256004 bytes
OTHER = b"other contents " * 5000


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def cache(keras_home: Path) -> Path:
    return keras_home / "models"


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer({PATH: DATA}) as srv:
        yield srv


def leftovers(directory: Path) -> list[str]:
    """Temporary/partial files left in a directory."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def read_manifest(cache: Path) -> dict[str, dict[str, object]]:
    data = json.loads((cache / MANIFEST_NAME).read_text())
    files: dict[str, dict[str, object]] = data["files"]
    return files


# --------------------------------------------------------------------------- helpers


def test_keras_cache_dir_uses_keras_home(keras_home: Path) -> None:
    path = keras_cache_dir()
    assert path == keras_home / "models"
    assert path.is_dir()
    assert keras_cache_dir("datasets") == keras_home / "datasets"


def test_keras_cache_dir_default_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert keras_cache_dir() == tmp_path / "home" / ".keras" / "models"
    assert (tmp_path / "home" / ".keras" / "models").is_dir()


def test_file_hash_streams_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "_CHUNK_SIZE", 1000)  # force many chunks
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    assert file_hash(path) == sha256(DATA)
    assert file_hash(path, "md5") == md5(DATA)


def test_error_message_explains_manual_placement(tmp_path: Path) -> None:
    err = WeightsDownloadError("http://x/y.h5", tmp_path / "y.h5", "boom", md5="a" * 32)
    assert isinstance(err, OSError)
    text = str(err)
    assert "http://x/y.h5" in text
    assert str(tmp_path / "y.h5") in text
    assert "boom" in text
    assert "curl" in text and "save it as" in text
    assert "expected md5 " + "a" * 32 in text
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == text and clone.md5 == err.md5


@pytest.mark.parametrize("bad", ["", "..", "a/b", "../x", MANIFEST_NAME])
def test_fetch_rejects_non_plain_filenames(bad: str, server: LocalHTTPServer) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        fetch(server.url(PATH), bad, progress=False)
    assert server.count() == 0


def test_fetch_rejects_malformed_hash(server: LocalHTTPServer) -> None:
    with pytest.raises(ValueError, match="md5"):
        fetch(server.url(PATH), NAME, md5="1234", progress=False)
    assert server.count() == 0


# --------------------------------------------------------------------------- fetch


def test_first_download_verifies_md5(server: LocalHTTPServer, cache: Path) -> None:
    path = fetch(server.url(PATH), NAME, md5=md5(DATA).upper(), progress=False)
    assert path == cache / NAME
    assert path.read_bytes() == DATA
    assert server.count(PATH) == 1
    assert leftovers(cache) == []
    if os.name == "posix":  # an ordinary file for the umask, not mkstemp's 0600
        umask = os.umask(0)
        os.umask(umask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_cache_hit_makes_no_request(server: LocalHTTPServer, cache: Path) -> None:
    first = fetch(server.url(PATH), NAME, md5=md5(DATA), sha256=sha256(DATA), progress=False)
    mtime = first.stat().st_mtime_ns
    second = fetch(server.url(PATH), NAME, md5=md5(DATA), sha256=sha256(DATA), progress=False)
    assert second == first
    assert second.stat().st_mtime_ns == mtime
    assert server.count() == 1


def test_corrupted_cache_is_redownloaded(
    server: LocalHTTPServer, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache.mkdir(parents=True)
    (cache / NAME).write_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING, logger=download.__name__):
        path = fetch(server.url(PATH), NAME, md5=md5(DATA), progress=False)
    assert path.read_bytes() == DATA
    assert server.count(PATH) == 1
    message = caplog.text
    assert NAME in message
    assert md5(DATA) in message and md5(b"corrupt") in message
    assert leftovers(cache) == []


def test_truncated_download_leaves_nothing(server: LocalHTTPServer, cache: Path) -> None:
    server.truncate.add(PATH)
    url = server.url(PATH)
    with pytest.raises(WeightsDownloadError) as info:
        fetch(url, NAME, md5=md5(DATA), progress=False)
    message = str(info.value)
    assert url in message
    assert str(cache / NAME) in message
    assert "truncated" in message
    assert not (cache / NAME).exists()
    assert leftovers(cache) == []


def test_truncated_download_without_checksum_is_detected(
    server: LocalHTTPServer, cache: Path
) -> None:
    server.truncate.add(PATH)
    with pytest.raises(WeightsDownloadError, match="truncated"):
        fetch(server.url(PATH), NAME, progress=False)
    assert not (cache / NAME).exists()
    assert not (cache / MANIFEST_NAME).exists()
    assert leftovers(cache) == []


def test_failed_redownload_keeps_old_file_untouched(server: LocalHTTPServer, cache: Path) -> None:
    cache.mkdir(parents=True)
    (cache / NAME).write_bytes(b"stale")
    server.truncate.add(PATH)
    with pytest.raises(WeightsDownloadError):
        fetch(server.url(PATH), NAME, md5=md5(DATA), progress=False)
    assert (cache / NAME).read_bytes() == b"stale"
    assert leftovers(cache) == []


def test_wrong_hash_gives_clear_error_and_no_file(server: LocalHTTPServer, cache: Path) -> None:
    wrong = md5(b"something else")
    url = server.url(PATH)
    with pytest.raises(WeightsDownloadError) as info:
        fetch(url, NAME, md5=wrong, progress=False)
    message = str(info.value)
    assert f"checksum mismatch for {url}: expected md5 {wrong}, got {md5(DATA)}" in message
    assert not (cache / NAME).exists()
    assert leftovers(cache) == []


def test_wrong_sha256_gives_clear_error(server: LocalHTTPServer, cache: Path) -> None:
    wrong = sha256(b"x")
    with pytest.raises(WeightsDownloadError, match=f"expected sha256 {wrong}, got {sha256(DATA)}"):
        fetch(server.url(PATH), NAME, md5=md5(DATA), sha256=wrong, progress=False)
    assert not (cache / NAME).exists()


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_is_reported(status: int, server: LocalHTTPServer, cache: Path) -> None:
    server.errors[PATH] = status
    url = server.url(PATH)
    with pytest.raises(WeightsDownloadError) as info:
        fetch(url, NAME, md5=md5(DATA), progress=False)
    message = str(info.value)
    assert f"HTTP error {status}" in message
    assert url in message and str(cache / NAME) in message
    assert md5(DATA) in message
    assert not (cache / NAME).exists()
    assert leftovers(cache) == []


def test_missing_path_is_404(server: LocalHTTPServer) -> None:
    with pytest.raises(WeightsDownloadError, match="HTTP error 404"):
        fetch(server.url("/nope.h5"), NAME, progress=False)


def test_connection_refused(cache: Path) -> None:
    url = closed_port_url()
    with pytest.raises(WeightsDownloadError) as info:
        fetch(url, NAME, md5=md5(DATA), progress=False, timeout=5)
    assert url in str(info.value)
    assert "connection failed" in str(info.value)
    assert not (cache / NAME).exists()
    assert leftovers(cache) == []


def test_read_timeout(server: LocalHTTPServer, cache: Path) -> None:
    server.delay[PATH] = 1.0
    with pytest.raises(WeightsDownloadError, match="timed out"):
        fetch(server.url(PATH), NAME, progress=False, timeout=0.2)
    assert not (cache / NAME).exists()
    assert leftovers(cache) == []


def test_offline_preplaced_file(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url(PATH)  # nothing listens there any more

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    cache.mkdir(parents=True)
    (cache / NAME).write_bytes(DATA)
    assert fetch(url, NAME, md5=md5(DATA), progress=False) == cache / NAME
    assert fetch(url, NAME, sha256=sha256(DATA), progress=False) == cache / NAME
    # Pinned files are recorded, so checksum-less calls also work offline afterwards.
    assert fetch(url, NAME, progress=False) == cache / NAME


def test_explicit_cache_dir(server: LocalHTTPServer, tmp_path: Path, keras_home: Path) -> None:
    target = tmp_path / "elsewhere" / "deep"
    path = fetch(server.url(PATH), NAME, md5=md5(DATA), cache_dir=target, progress=False)
    assert path == target / NAME and path.read_bytes() == DATA
    assert not (keras_home / "models" / NAME).exists()


def test_keyboard_interrupt_cleans_up(
    server: LocalHTTPServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(self: object, received: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(download._Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch(server.url(PATH), NAME, md5=md5(DATA), progress=True)
    assert not (cache / NAME).exists()
    assert leftovers(cache) == []


def test_killed_download_leftover_is_removed(server: LocalHTTPServer, cache: Path) -> None:
    cache.mkdir(parents=True)
    stale = cache / f".{NAME}.staging-4194305-deadbeef"  # above pid_max: its process is gone
    stale.mkdir()
    (stale / NAME).write_bytes(DATA[:1000])
    assert fetch(server.url(PATH), NAME, md5=md5(DATA), progress=False).read_bytes() == DATA
    assert leftovers(cache) == []


def test_progress_output(server: LocalHTTPServer, capsys: pytest.CaptureFixture[str]) -> None:
    fetch(server.url(PATH), NAME, md5=md5(DATA), progress=False)
    assert capsys.readouterr().err == ""
    server.files[PATH] = OTHER
    fetch(server.url(PATH), NAME, md5=md5(OTHER), progress=True)
    err = capsys.readouterr().err
    assert NAME in err and "100%" in err


# --------------------------------------------------------------------------- TOFU manifest


def test_tofu_manifest_recorded_and_reused(server: LocalHTTPServer, cache: Path) -> None:
    url = server.url(PATH)
    path = fetch(url, NAME, progress=False)
    assert path.read_bytes() == DATA
    entry = read_manifest(cache)[NAME]
    assert entry["url"] == url
    assert entry["size"] == len(DATA)
    assert entry["sha256"] == sha256(DATA)
    assert isinstance(entry["recorded"], str) and entry["recorded"].startswith("20")
    assert fetch(url, NAME, progress=False) == path
    assert server.count(PATH) == 1
    assert leftovers(cache) == []


@pytest.mark.parametrize("tampered", [b"evil", bytes(len(DATA))], ids=["other-size", "same-size"])
def test_tofu_tampered_file_is_redownloaded(
    tampered: bytes, server: LocalHTTPServer, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.url(PATH)
    fetch(url, NAME, progress=False)
    (cache / NAME).write_bytes(tampered)
    with caplog.at_level(logging.WARNING, logger=download.__name__):
        path = fetch(url, NAME, progress=False)
    assert path.read_bytes() == DATA
    assert server.count(PATH) == 2
    assert NAME in caplog.text


def test_tofu_adopts_preplaced_file(server: LocalHTTPServer, cache: Path) -> None:
    cache.mkdir(parents=True)
    (cache / NAME).write_bytes(OTHER)
    assert fetch(server.url(PATH), NAME, progress=False).read_bytes() == OTHER
    assert server.count() == 0
    assert read_manifest(cache)[NAME]["sha256"] == sha256(OTHER)


def test_sha256_pin_overrides_manifest(server: LocalHTTPServer, cache: Path) -> None:
    url = server.url(PATH)
    fetch(url, NAME, progress=False)  # manifest now trusts DATA
    server.files[PATH] = OTHER
    path = fetch(url, NAME, sha256=sha256(OTHER), progress=False)
    assert path.read_bytes() == OTHER
    assert server.count(PATH) == 2
    assert read_manifest(cache)[NAME]["sha256"] == sha256(OTHER)
    # The manifest follows the pinned file, so a checksum-less call reuses it.
    assert fetch(url, NAME, progress=False).read_bytes() == OTHER
    assert server.count(PATH) == 2


def test_sha256_pin_rejects_file_matching_manifest(server: LocalHTTPServer, cache: Path) -> None:
    url = server.url(PATH)
    fetch(url, NAME, progress=False)  # manifest trusts DATA
    with pytest.raises(WeightsDownloadError, match="checksum mismatch"):
        fetch(url, NAME, sha256=sha256(OTHER), progress=False)
    assert server.count(PATH) == 2
    assert (cache / NAME).read_bytes() == DATA  # untouched by the failed replacement


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1, 2]", b'{"files": {"x": 3}}', b"\xff\xfe\x00"]
)
def test_corrupt_manifest_warns_and_is_rewritten(
    content: bytes, server: LocalHTTPServer, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache.mkdir(parents=True)
    (cache / MANIFEST_NAME).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger=download.__name__):
        path = fetch(server.url(PATH), NAME, progress=False)
    assert path.read_bytes() == DATA
    assert MANIFEST_NAME in caplog.text
    assert read_manifest(cache)[NAME]["sha256"] == sha256(DATA)
    assert leftovers(cache) == []


# --------------------------------------------------------------------------- safe_extract


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    compressed = path.name.endswith(("gz", "tgz"))
    with tarfile.open(path, "w:gz") if compressed else tarfile.open(path, "w") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


@pytest.mark.parametrize("archive_name", ["ckpt.tar.gz", "ckpt.tgz", "ckpt.tar"])
def test_safe_extract_normal_archive(archive_name: str, tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / archive_name,
        [
            directory("ckpt"),
            ("ckpt/model.ckpt.index", b"index"),
            ("ckpt/sub/data", b"data"),
            link("ckpt/latest", "model.ckpt.index"),
            link("ckpt/hard", "ckpt/sub/data", tarfile.LNKTYPE),
        ],
    )
    dest = tmp_path / "out"
    assert safe_extract(archive, dest) == dest
    assert (dest / "ckpt" / "model.ckpt.index").read_bytes() == b"index"
    assert (dest / "ckpt" / "sub" / "data").read_bytes() == b"data"
    assert (dest / "ckpt" / "latest").read_bytes() == b"index"
    assert (dest / "ckpt" / "hard").read_bytes() == b"data"
    assert (dest / EXTRACTED_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([archive_name, "out"])
    # Complete: returned as is without reading the archive again.
    archive.unlink()
    assert safe_extract(archive, dest) == dest


@pytest.mark.parametrize(
    ("member", "pattern"),
    [
        (("../evil", b"x"), "'../evil'.*'\\.\\.'"),
        (("ok/../../evil", b"x"), "'ok/../../evil'"),
        (("/abs/evil", b"x"), "'/abs/evil'.*absolute"),
        (link("lnk", "../../etc/passwd"), "'lnk'.*symlink"),
        (link("sub/lnk", "../../outside"), "'sub/lnk'.*symlink"),
        (link("lnk", "/etc/passwd"), "'lnk'.*symlink"),
        (link("hard", "../outside", tarfile.LNKTYPE), "'hard'.*hard link"),
        (link("dev", "", tarfile.CHRTYPE), "'dev'.*device"),
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "symlink",
        "nested-symlink",
        "abs-symlink",
        "hardlink",
        "device",
    ],
)
def test_safe_extract_rejects_unsafe_member(
    member: tarfile.TarInfo | tuple[str, bytes], pattern: str, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = make_tar(tmp_path / "bad.tar.gz", [("fine.txt", b"fine"), member])
    dest = work / "dest"
    with pytest.raises(ValueError, match=pattern):
        safe_extract(archive, dest)
    assert not dest.exists()
    assert list(work.iterdir()) == []  # no temporary or half-extracted directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz", "work"]


def test_safe_extract_corrupt_archive_leaves_nothing(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "ok.tar.gz", [("a", os.urandom(50_000))])
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:20_000])
    work = tmp_path / "work"
    with pytest.raises(ValueError, match=re.escape(str(truncated))):
        safe_extract(truncated, work / "dest")
    assert not (work / "dest").exists()
    assert not work.exists() or list(work.iterdir()) == []


def test_safe_extract_replaces_empty_dest_but_not_foreign_content(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar", [("x.txt", b"x")])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (safe_extract(archive, empty) / "x.txt").read_bytes() == b"x"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="not a complete extraction"):
        safe_extract(archive, foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "empty", "foreign"]


def test_safe_extract_interrupted_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [("x.txt", b"x"), ("y.txt", b"y")])
    original = tarfile.TarFile.extractall

    def extract_then_interrupt(self: tarfile.TarFile, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", extract_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        safe_extract(archive, tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]
