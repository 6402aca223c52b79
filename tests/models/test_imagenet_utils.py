"""``decode_predictions`` (class index served from a local HTTP server) and ``preprocess_input``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import keras_efficient as ke
from keras_efficient.models import imagenet
from keras_efficient.weights import registry
from keras_efficient.weights.download import WeightsDownloadError
from tests.helpers import LocalHTTPServer

INDEX_PATH = "/download.tensorflow.org/data/imagenet_class_index.json"
INDEX_NAME = "imagenet_class_index.json"
#: Synthetic labels in keras' format: {"0": ["n01440764", "tench"], ...}.
CLASS_INDEX = {str(i): [f"n{10_000_000 + 7 * i:08d}", f"class_{i:04d}"] for i in range(1000)}
INDEX_BYTES = json.dumps(CLASS_INDEX).encode("utf-8")


def wnid(i: int) -> str:
    return f"n{10_000_000 + 7 * i:08d}"


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer({INDEX_PATH: INDEX_BYTES}) as srv:
        yield srv


def use_md5(monkeypatch: pytest.MonkeyPatch, md5: str) -> None:
    entry = dataclasses.replace(registry.IMAGENET_CLASS_INDEX, md5=md5)
    monkeypatch.setattr(registry, "IMAGENET_CLASS_INDEX", entry)
    monkeypatch.setattr(imagenet, "IMAGENET_CLASS_INDEX", entry)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalHTTPServer) -> Path:
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv(registry.MIRROR_ENV, server.url("/"))
    use_md5(monkeypatch, hashlib.md5(INDEX_BYTES).hexdigest())
    monkeypatch.setattr(imagenet, "_CLASS_INDEX", None)  # restored after the test
    return home / "models"


def test_top_k_in_descending_order(cache: Path, server: LocalHTTPServer) -> None:
    preds = np.zeros((2, 1000), dtype="float32")
    preds[0, [3, 999, 0, 500]] = [0.1, 0.4, 0.2, 0.3]
    preds[1, 42] = 0.9
    preds[1, 7] = 0.05
    results = ke.decode_predictions(preds, top=3)
    assert results == [
        [(wnid(999), "class_0999", pytest.approx(0.4)), (wnid(500), "class_0500",
                                                         pytest.approx(0.3)),
         (wnid(0), "class_0000", pytest.approx(0.2))],
        [(wnid(42), "class_0042", pytest.approx(0.9)), (wnid(7), "class_0007",
                                                        pytest.approx(0.05)),
         results[1][2]],
    ]
    assert results[1][2][2] == 0.0
    assert all(isinstance(score, float) for row in results for _, _, score in row)
    assert server.count(INDEX_PATH) == 1
    assert (cache / INDEX_NAME).read_bytes() == INDEX_BYTES


def test_default_top_5_and_full_ranking(cache: Path) -> None:
    scores = np.random.default_rng(3).permutation(1000).astype("float32")[None] / 1000
    (five,) = ke.decode_predictions(scores)
    order = np.argsort(-scores[0])
    assert [entry[0] for entry in five] == [wnid(i) for i in order[:5]]
    (everything,) = ke.decode_predictions(scores, top=1000)
    assert [entry[1] for entry in everything] == [f"class_{i:04d}" for i in order]


def test_class_index_is_downloaded_once(cache: Path, server: LocalHTTPServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    preds = np.eye(1000, dtype="float32")[[5]]
    assert ke.decode_predictions(preds, top=1) == [[(wnid(5), "class_0005", 1.0)]]
    assert ke.decode_predictions(preds, top=1) == [[(wnid(5), "class_0005", 1.0)]]
    assert server.count() == 1
    # A new process (no index in memory) uses the verified file in the cache.
    monkeypatch.setattr(imagenet, "_CLASS_INDEX", None)
    server.stop()
    assert ke.decode_predictions(preds, top=1) == [[(wnid(5), "class_0005", 1.0)]]


def test_wrong_md5_is_an_error(cache: Path, server: LocalHTTPServer,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    use_md5(monkeypatch, "f" * 32)
    with pytest.raises(WeightsDownloadError, match="checksum mismatch"):
        ke.decode_predictions(np.ones((1, 1000)))
    assert not (cache / INDEX_NAME).exists()
    assert imagenet._CLASS_INDEX is None


@pytest.mark.parametrize("shape", [(1000,), (2, 999), (2, 1001), (1, 1000, 1), (0,)])
def test_wrong_shape_is_a_value_error(shape: tuple[int, ...], cache: Path,
                                      server: LocalHTTPServer) -> None:
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        ke.decode_predictions(np.zeros(shape))
    assert server.count() == 0  # checked before anything is downloaded


@pytest.mark.parametrize("top", [0, -1, 1001])
def test_top_out_of_range_is_a_value_error(top: int, cache: Path) -> None:
    with pytest.raises(ValueError, match="top"):
        ke.decode_predictions(np.zeros((1, 1000)), top=top)


def test_preprocess_input_is_the_identity() -> None:
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    original = images.copy()
    assert ke.preprocess_input(images) is images
    assert ke.preprocess_input(images, data_format="channels_last") is images
    np.testing.assert_array_equal(images, original)
    batch = [[[1.0, 2.0, 3.0]]]
    assert ke.preprocess_input(batch) is batch
