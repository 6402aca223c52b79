"""Bad weight files and caches: a clear error naming the file and the fix, nothing half-written.

Tiny models only; downloads come from a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

import keras_efficient as ke
from keras_efficient import files
from keras_efficient.configs.efficientdet import get_efficientdet_spec
from keras_efficient.weights import registry
from keras_efficient.weights.detector_checkpoint import efficientdet_name_map
from keras_efficient.weights.download import (
    MANIFEST_NAME,
    CacheDirError,
    CorruptArchiveError,
    fetch,
    keras_cache_dir,
)
from keras_efficient.weights.loading import UnreadableWeightsFileError
from keras_efficient.weights.pretrained import fetch_checkpoint
from tests.helpers import LocalHTTPServer, save_name_based_checkpoint

TINY = get_efficientdet_spec("lite0").with_(input_size=128, fpn_filters=16, fpn_cells=1,
                                            head_repeats=1)
TINY_D0 = get_efficientdet_spec("d0").with_(input_size=128, fpn_filters=16, fpn_cells=1,
                                            head_repeats=1)
TARBALL = "efficientdet-lite0.tgz"
TARBALL_PATH = "/cloud-tpu-checkpoints/efficientdet/coco/" + TARBALL
CONVERTED = "efficientdet-lite0_coco.weights.h5"
SMALL = (32, 32, 3)


@pytest.fixture(autouse=True)
def _no_array_deprecation() -> Iterator[None]:
    """pytest.warns re-emits the warnings it did not match, past the keras.* filters in setup.cfg.

    A fixture, not a ``filterwarnings`` mark: it also works under ``-p no:warnings``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        yield


def tiny_detector(**kwargs) -> keras.Model:
    return ke.EfficientDet(TINY, **kwargs)


def classifier(builder=ke.EfficientNetLite0, **kwargs) -> keras.Model:
    return builder(include_top=False, weights=kwargs.pop("weights", None), input_shape=SMALL,
                   **kwargs)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- unreadable files


@pytest.fixture(scope="module")
def good_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "lite0.weights.h5"
    classifier().save_weights(path)
    return path


def bad_copies(good: Path, folder: Path, suffix: str) -> dict[str, Path]:
    data = good.read_bytes()
    contents = {"empty": b"", "junk": b"<html>404 Not Found</html>",
                "truncated": data[: len(data) // 2]}
    paths = {}
    for kind, payload in contents.items():
        paths[kind] = folder / f"{kind}{suffix}"
        paths[kind].write_bytes(payload)
    return paths


@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_unreadable_classifier_weights_name_the_file_and_the_fix(good_file, tmp_path, suffix):
    for kind, path in bad_copies(good_file, tmp_path, suffix).items():
        with pytest.raises(UnreadableWeightsFileError) as info:
            classifier(weights=str(path))
        message = str(info.value)
        assert isinstance(info.value, ValueError), kind
        assert str(path) in message and "not a readable HDF5 weights file" in message, kind
        assert "empty, truncated" in message and "Download it again" in message, kind
        assert "save it again" in message, kind


def test_unreadable_detector_weights_name_the_file(good_file, tmp_path):
    for kind, path in bad_copies(good_file, tmp_path, ".weights.h5").items():
        with pytest.raises(UnreadableWeightsFileError, match="not a readable HDF5") as info:
            tiny_detector(num_classes=3, weights=str(path))
        assert str(path) in str(info.value), kind


def test_unreadable_keras_archive(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"PK but not really")
    with pytest.raises(UnreadableWeightsFileError, match=r"not a readable Keras \.keras archive"):
        classifier(weights=str(path))


# --------------------------------------------------------------------------- another variant


def test_other_variant_is_one_clear_error_without_keras_warnings(good_file, recwarn):
    with pytest.raises(ValueError, match="weight layers do not match the file") as info:
        classifier(ke.EfficientNetB0, weights=str(good_file))
    message = str(info.value)
    assert str(good_file) in message and "another variant" in message
    assert "List of objects" not in message and len(message) < 1000
    texts = [str(w.message) for w in recwarn]
    assert not [t for t in texts if "nested container" in t or "could not be loaded" in t]


def test_other_detector_variant_is_one_clear_error(tmp_path, recwarn):
    path = tmp_path / "tiny_lite0.weights.h5"
    tiny_detector(num_classes=3).save_weights(path)
    with pytest.raises(ValueError, match="weight layers do not match") as info:
        ke.EfficientDet(TINY_D0, num_classes=3, weights=str(path))
    assert str(path) in str(info.value)
    assert not [w for w in recwarn if "nested container" in str(w.message)]


def test_matching_file_still_loads_and_keeps_other_warnings(good_file):
    model = classifier(weights=str(good_file))
    reference = classifier()
    reference.load_weights(good_file)
    for a, b in zip(model.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------- cache directory


def test_keras_home_is_a_file(tmp_path, monkeypatch):
    home = tmp_path / "not_a_dir"
    home.write_text("x")
    monkeypatch.setenv("KERAS_HOME", str(home))
    with pytest.raises(CacheDirError) as info:
        keras_cache_dir()
    assert str(home / "models") in str(info.value) and "KERAS_HOME" in str(info.value)
    assert isinstance(info.value, OSError)
    with pytest.raises(CacheDirError, match="KERAS_HOME"):
        fetch("http://127.0.0.1:9/x.bin", "x.bin", progress=False)
    with pytest.raises(CacheDirError, match="cache_dir="):
        fetch("http://127.0.0.1:9/x.bin", "x.bin", cache_dir=home, progress=False)
    assert home.read_text() == "x"


def test_detector_coco_with_keras_home_a_file(tmp_path, monkeypatch):
    home = tmp_path / "not_a_dir"
    home.write_text("x")
    monkeypatch.setenv("KERAS_HOME", str(home))
    with pytest.raises(CacheDirError, match=str(home / "models")):
        tiny_detector(weights="coco")


def test_unwritable_cache_dir_is_named(tmp_path, monkeypatch):
    """A directory that refuses new files (simulated: tests may run as root)."""
    with LocalHTTPServer({"/x.bin": b"data"}) as server:
        def refuse(target):
            raise PermissionError(13, "Permission denied", str(Path(target).parent))

        monkeypatch.setattr(files, "make_staging_folder", refuse)
        with pytest.raises(CacheDirError) as info:
            fetch(server.url("/x.bin"), "x.bin", cache_dir=tmp_path, progress=False)
    message = str(info.value)
    assert str(tmp_path) in message and "Permission denied" in message
    assert "KERAS_HOME" in message and "x.bin" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_read_only_cache_dir_is_named(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        with LocalHTTPServer({"/x.bin": b"data"}) as server, pytest.raises(CacheDirError):
            fetch(server.url("/x.bin"), "x.bin", cache_dir=cache, progress=False)
    finally:
        cache.chmod(0o755)


# --------------------------------------------------------------------------- weights="coco"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> bytes:
    """A checkpoint for ``TINY`` with the official names, packed like the published tarball."""
    model = tiny_detector()
    rng = np.random.default_rng(0)
    tensors = {}
    for layer_name, sources in efficientdet_name_map(TINY).items():
        for weight, source in zip(model.get_layer(layer_name).weights, sources, strict=True):
            # Few distinct values: the tarball compresses well, the weights still differ.
            values = rng.integers(-3, 4, tuple(weight.shape)) * 0.1
            tensors[source] = values.astype("float32")
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    prefix = save_name_based_checkpoint(folder / "model", tensors)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("efficientdet-lite0/checkpoint")
        data = b'model_checkpoint_path: "model"\n'
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for path in sorted(Path(prefix).parent.iterdir()):
            tar.add(path, arcname=f"efficientdet-lite0/{path.name}")
    return buffer.getvalue()


@pytest.fixture
def server(tarball) -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer({TARBALL_PATH: tarball}) as srv:
        yield srv


@pytest.fixture
def cache(tmp_path, monkeypatch, server) -> Path:
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv(registry.MIRROR_ENV, server.url("/"))
    return home / "models"


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.weights]


def assert_same(a: keras.Model, b: keras.Model) -> None:
    for x, y in zip(weights_of(a), weights_of(b), strict=True):
        np.testing.assert_array_equal(x, y)


# One damage in the default tier: the three take the same rebuild path.
@pytest.mark.parametrize("damage", ["truncate", pytest.param("junk", marks=pytest.mark.slow),
                                    pytest.param("empty", marks=pytest.mark.slow)])
def test_corrupt_converted_cache_is_rebuilt(cache, server, damage):
    first = tiny_detector(weights="coco")
    converted = cache / CONVERTED
    data = converted.read_bytes()
    converted.write_bytes({"truncate": data[: len(data) // 2], "junk": b"not hdf5",
                           "empty": b""}[damage])
    with pytest.warns(UserWarning, match="cached converted COCO weights .* cannot be used") as rec:
        second = tiny_detector(weights="coco")
    message = str(rec[0].message)
    assert str(converted) in message and "removed it" in message
    assert "converted the checkpoint" in message
    assert_same(first, second)
    with h5py.File(converted, "r"):  # rebuilt, readable
        pass
    assert server.count() == 1, "the verified checkpoint is reused, not downloaded again"
    assert leftovers(cache) == []  # no temporary files
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        third = tiny_detector(weights="coco")  # and now it loads silently from the cache
    assert_same(first, third)


def test_converted_cache_that_cannot_be_written_only_warns(cache, server, monkeypatch):
    def refuse(self, filepath, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(filepath))

    monkeypatch.setattr(keras.Model, "save_weights", refuse)
    with pytest.warns(UserWarning, match="could not cache the converted weights") as rec:
        model = tiny_detector(weights="coco")
    message = str(rec[0].message)
    assert str(cache / CONVERTED) in message and "KERAS_HOME" in message
    assert not (cache / CONVERTED).exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(CONVERTED)]
    prefix = fetch_checkpoint(registry.coco_weights("efficientdet-lite0"), progress=False)
    reference = ke.EfficientDet(TINY, weights=prefix)  # a checkpoint load writes no cache
    assert_same(model, reference)


def manifest_entries(cache: Path) -> dict:
    return json.loads((cache / MANIFEST_NAME).read_text())["files"]


def test_corrupt_trusted_archive_is_removed_and_downloaded_again(cache, server, tarball):
    cache.mkdir(parents=True)
    (cache / TARBALL).write_bytes(tarball[: len(tarball) // 2])  # placed by hand, adopted
    with pytest.warns(UserWarning, match="trusted on first use") as rec:
        model = tiny_detector(weights="coco")
    message = str(rec[0].message)
    assert str(cache / TARBALL) in message and MANIFEST_NAME in message
    assert "downloading it again" in message
    assert server.count(TARBALL_PATH) == 1
    assert (cache / TARBALL).read_bytes() == tarball
    assert manifest_entries(cache)[TARBALL]["size"] == len(tarball)
    assert (cache / CONVERTED).is_file()
    assert float(np.std(np.asarray(model.get_layer("class_net_predict").bias))) > 0.01


def test_archive_still_corrupt_after_download_is_removed_with_the_fix(cache, server, tarball):
    server.files[TARBALL_PATH] = tarball[: len(tarball) // 2]  # a broken upstream file
    with pytest.warns(UserWarning, match="trusted on first use"), \
            pytest.raises(CorruptArchiveError) as info:
        tiny_detector(weights="coco")
    message = str(info.value)
    assert str(cache / TARBALL) in message and "downloaded again" in message
    assert "were removed" in message and "curl" in message and "tar tzf" in message
    assert server.count(TARBALL_PATH) == 2
    assert not (cache / TARBALL).exists()
    assert TARBALL not in manifest_entries(cache)
    assert not (cache / CONVERTED).exists()
    assert leftovers(cache) == []  # no staging folder of the extraction
    # The next call starts afresh: once upstream is fixed, it downloads and loads.
    server.files[TARBALL_PATH] = tarball
    tiny_detector(weights="coco")
    assert server.count(TARBALL_PATH) == 3


def test_corrupt_pinned_archive_is_not_downloaded_again(cache, server, tarball, monkeypatch):
    broken = tarball[: len(tarball) // 2]
    server.files[TARBALL_PATH] = broken
    monkeypatch.setitem(registry._PINS, TARBALL, hashlib.sha256(broken).hexdigest())
    with pytest.raises(CorruptArchiveError, match="pinned checksum"):
        fetch_checkpoint(registry.coco_weights("efficientdet-lite0"), progress=False)
    assert server.count(TARBALL_PATH) == 1
