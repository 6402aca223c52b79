"""``weights="imagenet"`` for B0 end to end, against a local HTTP server on 127.0.0.1.

The weight files are generated here in the legacy Keras 2 ``.h5`` layout of the published
keras.applications files (random, non-trivial weights from a fixed seed; the Normalization layer
holds the ImageNet mean and, as in the real files, the standard deviations in its variance slot).
``KERAS_EFFICIENT_WEIGHTS_MIRROR`` points the downloads at the local server and the md5 registry
is patched to the generated files' digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from keras.src.applications import efficientnet as keras_efficientnet
from keras.src.backend import config as keras_config
from keras.src.legacy.saving import legacy_h5_format

import keras_efficient as ke
from keras_efficient.weights import registry
from keras_efficient.weights.download import WeightsDownloadError
from keras_efficient.weights.pretrained import load_pretrained
from tests.helpers import LocalHTTPServer

MEAN = np.array([0.485, 0.456, 0.406], dtype="float32")
STD = np.array([0.229, 0.224, 0.225], dtype="float32")
NOTOP_NAME = "efficientnetb0_notop.h5"
TOP_NAME = "efficientnetb0.h5"
NOTOP_PATH = "/keras-applications/" + NOTOP_NAME
TOP_PATH = "/keras-applications/" + TOP_NAME
#: Layers whose weights are compared with the generated file (a sample across the network).
SAMPLE_LAYERS = ("stem_conv", "stem_bn", "block1a_dwconv", "block1a_se_reduce",
                 "block2a_expand_conv", "block4c_project_bn", "block6d_se_expand",
                 "block7a_project_conv", "top_conv", "top_bn")


@dataclass(frozen=True)
class WeightFiles:
    notop: bytes
    top: bytes
    #: The generated weights: layer name -> arrays (Normalization under "normalization").
    layers: dict[str, list[np.ndarray]]

    @property
    def md5s(self) -> tuple[str, str]:
        """(with top, no top), the layout of ``KERAS_APPLICATIONS_MD5``."""
        return hashlib.md5(self.top).hexdigest(), hashlib.md5(self.notop).hexdigest()


def _random_weights(model: keras.Model, rng: np.random.Generator) -> None:
    """Give every weight of a keras.applications EfficientNet a non-trivial random value.

    Random kernels with random BN statistics wash the input out after a few blocks (every
    image then gives the same features), so the BN statistics are calibrated on a batch of
    random images, as if trained, and then perturbed.
    """
    batch_norms = []
    for layer in model.layers:
        if not layer.weights or isinstance(layer, keras.layers.Normalization):
            continue
        values = []
        for weight in layer.weights:
            shape, kind = tuple(weight.shape), weight.name
            if kind in ("kernel", "depthwise_kernel"):
                fan_in = np.prod(shape[:-1]) if kind == "kernel" else np.prod(shape[:2])
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            elif kind == "bias":
                value = rng.normal(0.0, 0.1, shape)
            elif kind == "gamma":
                value = rng.uniform(0.5, 1.0, shape)
            elif kind == "beta":
                value = rng.normal(0.0, 0.2, shape)
            elif kind in ("moving_mean", "moving_variance"):
                value = np.asarray(weight)  # calibrated below
            else:  # pragma: no cover - a new kind of weight must be handled explicitly
                raise AssertionError(f"unexpected weight {weight.path}")
            values.append(value.astype(weight.dtype))
        layer.set_weights(values)
        if isinstance(layer, keras.layers.BatchNormalization):
            batch_norms.append(layer)

    # Calibrate: one training-mode pass with momentum 0 stores each BN's batch statistics.
    normalization = _normalization(model)
    count = np.zeros((), dtype=normalization.weights[2].dtype)
    normalization.set_weights([MEAN, STD**2, count])  # what keras' ImageNet graph computes
    normalization.finalize_state()
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    for layer in batch_norms:
        layer.momentum = 0.0
    for layer in dropouts:
        layer.rate = 0.0
    calibration = rng.uniform(0.0, 255.0, (2, 224, 224, 3)).astype("float32")
    model(calibration, training=True)
    for layer in batch_norms:
        layer.momentum = 0.99
        gamma, beta, mean, variance = layer.get_weights()
        mean = mean + rng.normal(0.0, 0.1, mean.shape) * np.sqrt(variance)
        variance = variance * rng.uniform(0.8, 1.25, variance.shape)
        layer.set_weights([gamma, beta, mean.astype("float32"), variance.astype("float32")])
    # What the published files hold: the std in the variance slot, count 0.
    normalization.set_weights([MEAN, STD, count])
    normalization.finalize_state()


def _normalization(model: keras.Model) -> keras.layers.Layer:
    (layer,) = [x for x in model.layers if isinstance(x, keras.layers.Normalization)]
    return layer


def _legacy_h5_bytes(model: keras.Model, path: Path) -> bytes:
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return path.read_bytes()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> WeightFiles:
    """The two B0 files in the published layout, with the same backbone weights."""
    folder = tmp_path_factory.mktemp("generated")
    source = keras.applications.EfficientNetB0(weights=None, include_top=True)
    _random_weights(source, np.random.default_rng(20240611))
    # keras.applications' include_top=False model is this graph up to top_activation: the same
    # layers in the same order, without avg_pool/top_dropout/predictions.
    notop = keras.Model(source.inputs, source.get_layer("top_activation").output)
    assert len(notop.weights) == len(source.weights) - 2
    layers = {layer.name: layer.get_weights() for layer in source.layers if layer.weights}
    layers["normalization"] = _normalization(source).get_weights()
    return WeightFiles(notop=_legacy_h5_bytes(notop, folder / NOTOP_NAME),
                       top=_legacy_h5_bytes(source, folder / TOP_NAME), layers=layers)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(7).uniform(0.0, 255.0, (2, 96, 96, 3)).astype("float32")


@pytest.fixture
def server(files: WeightFiles) -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer({NOTOP_PATH: files.notop, TOP_PATH: files.top}) as srv:
        yield srv


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalHTTPServer,
          files: WeightFiles) -> Path:
    """KERAS_HOME in a tmp dir, downloads from the local server, md5s of the generated files."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv(registry.MIRROR_ENV, server.url("/"))
    monkeypatch.setitem(registry.KERAS_APPLICATIONS_MD5, "b0", files.md5s)
    return home / "models"


def outputs(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model(images, training=False))


def assert_weights_from_file(model: keras.Model, files: WeightFiles) -> None:
    """The sampled layers hold the file's values; the normalization is corrected (std²)."""
    for name in SAMPLE_LAYERS:
        for got, expected in zip(model.get_layer(name).get_weights(), files.layers[name],
                                 strict=True):
            np.testing.assert_array_equal(got, expected, err_msg=name)
    mean, variance, _ = model.get_layer("normalization").get_weights()
    np.testing.assert_array_equal(mean, MEAN)
    np.testing.assert_allclose(variance, STD**2, rtol=1e-6)


# --------------------------------------------------------------------------- module models


@pytest.fixture(scope="module")
def reference(files: WeightFiles, tmp_path_factory: pytest.TempPathFactory) -> keras.Model:
    """Our B0 without top, built once with weights="imagenet" from the local server."""
    home = tmp_path_factory.mktemp("reference_home")
    with LocalHTTPServer({NOTOP_PATH: files.notop}) as srv, pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_HOME", str(home))
        mp.setenv(registry.MIRROR_ENV, srv.url("/"))
        mp.setitem(registry.KERAS_APPLICATIONS_MD5, "b0", files.md5s)
        model = ke.EfficientNetB0(weights="imagenet", include_top=False)
        assert srv.count(NOTOP_PATH) == 1
    return model


@pytest.fixture(scope="module")
def plain() -> keras.Model:
    """Our B0 without top and weights=None, to load into without building a graph each time."""
    return ke.EfficientNetB0(weights=None, include_top=False)


@pytest.fixture(scope="module")
def plain_snapshot(plain: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w).copy() for w in plain.weights]


@pytest.fixture
def plain_weights(plain: keras.Model,
                  plain_snapshot: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
    """The weights=None values of ``plain``, put back after the test (whatever it loaded)."""
    yield plain_snapshot
    plain.set_weights(plain_snapshot)
    plain.get_layer("normalization").finalize_state()  # Normalization caches its statistics


def assert_untouched(model: keras.Model, snapshot: list[np.ndarray]) -> None:
    for weight, before in zip(model.weights, snapshot, strict=True):
        np.testing.assert_array_equal(np.asarray(weight), before, err_msg=weight.path)


@pytest.fixture(scope="module")
def reference_outputs(reference: keras.Model, images: np.ndarray) -> np.ndarray:
    result = outputs(reference, images)
    assert np.isfinite(result).all()
    # The generated weights must give non-trivial features that depend on the image.
    assert result.std() > 0.1
    assert np.abs(result[0] - result[1]).mean() > 0.1 * np.abs(result).mean()
    return result


# --------------------------------------------------------------------------- download path


def test_download_verify_load_then_cache_hit(cache: Path, server: LocalHTTPServer,
                                             files: WeightFiles,
                                             reference_outputs: np.ndarray,
                                             images: np.ndarray) -> None:
    model = ke.EfficientNetB0(weights="imagenet", include_top=False)
    assert server.count(NOTOP_PATH) == 1
    assert server.count() == 1
    cached = cache / NOTOP_NAME
    assert cached.read_bytes() == files.notop
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []
    assert_weights_from_file(model, files)

    np.testing.assert_array_equal(outputs(model, images), reference_outputs)

    again = ke.EfficientNetB0(weights="imagenet", include_top=False)
    assert server.count() == 1, "a verified cached file must be reused without network"
    for first, second in zip(model.weights, again.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(first), np.asarray(second), err_msg=first.path)


def test_with_top_downloads_the_top_file(cache: Path, server: LocalHTTPServer,
                                         files: WeightFiles) -> None:
    model = ke.EfficientNetB0(weights="imagenet", include_top=True)
    assert server.count(TOP_PATH) == 1
    assert server.count(NOTOP_PATH) == 0
    assert (cache / TOP_NAME).read_bytes() == files.top
    assert_weights_from_file(model, files)
    kernel, bias = model.get_layer("predictions").get_weights()
    np.testing.assert_array_equal(kernel, files.layers["predictions"][0])
    np.testing.assert_array_equal(bias, files.layers["predictions"][1])


def test_corrupted_cached_file_is_downloaded_again(
        cache: Path, server: LocalHTTPServer, files: WeightFiles, plain: keras.Model,
        plain_weights: list[np.ndarray], images: np.ndarray,
        reference_outputs: np.ndarray) -> None:
    cache.mkdir(parents=True)
    corrupted = bytearray(files.notop)
    corrupted[len(corrupted) // 2] ^= 0xFF
    (cache / NOTOP_NAME).write_bytes(bytes(corrupted))
    # What EfficientNetB0(weights="imagenet") does once the graph is built (saves a build).
    load_pretrained(plain, "efficientnetb0", include_top=False)
    assert server.count(NOTOP_PATH) == 1
    assert (cache / NOTOP_NAME).read_bytes() == files.notop
    np.testing.assert_array_equal(outputs(plain, images), reference_outputs)


def test_truncated_download_leaves_nothing(cache: Path, server: LocalHTTPServer,
                                          plain: keras.Model,
                                          plain_weights: list[np.ndarray]) -> None:
    # The builder calls load_pretrained once the graph is built; calling it on an existing model
    # also shows that a failed download leaves the model as it was.
    server.truncate.add(NOTOP_PATH)
    with pytest.raises(WeightsDownloadError) as info:
        load_pretrained(plain, "efficientnetb0", include_top=False)
    message = str(info.value)
    assert server.url(NOTOP_PATH) in message
    assert str(cache / NOTOP_NAME) in message
    assert "truncated" in message
    assert server.count(NOTOP_PATH) == 1
    assert list(cache.iterdir()) == []  # no file, no .part left behind
    assert_untouched(plain, plain_weights)


def test_wrong_hash_is_a_clear_error(cache: Path, server: LocalHTTPServer,
                                     monkeypatch: pytest.MonkeyPatch, files: WeightFiles,
                                     plain: keras.Model,
                                     plain_weights: list[np.ndarray]) -> None:
    wrong = "0123456789abcdef0123456789abcdef"
    monkeypatch.setitem(registry.KERAS_APPLICATIONS_MD5, "b0", (files.md5s[0], wrong))
    with pytest.raises(WeightsDownloadError) as info:
        load_pretrained(plain, "efficientnetb0", include_top=False)
    message = str(info.value)
    assert "checksum mismatch" in message
    assert wrong in message
    assert files.md5s[1] in message  # the md5 actually received
    assert server.url(NOTOP_PATH) in message
    assert list(cache.iterdir()) == []
    assert_untouched(plain, plain_weights)


def test_offline_without_file_says_where_to_put_it(cache: Path, server: LocalHTTPServer,
                                                    plain: keras.Model,
                                                    plain_weights: list[np.ndarray]) -> None:
    server.stop()
    with pytest.raises(WeightsDownloadError) as info:
        load_pretrained(plain, "efficientnetb0", include_top=False)
    message = str(info.value)
    assert "connection failed" in message
    assert f"save it as {cache / NOTOP_NAME}" in message
    assert list(cache.iterdir()) == []
    assert_untouched(plain, plain_weights)


def test_offline_with_preplaced_file(cache: Path, server: LocalHTTPServer, files: WeightFiles,
                                     images: np.ndarray, reference_outputs: np.ndarray) -> None:
    server.stop()
    cache.mkdir(parents=True)
    (cache / NOTOP_NAME).write_bytes(files.notop)
    model = ke.EfficientNetB0(weights="imagenet", include_top=False)
    np.testing.assert_array_equal(outputs(model, images), reference_outputs)
    assert server.count() == 0


# --------------------------------------------------------------------------- parity & files


def test_parity_with_keras_applications_imagenet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalHTTPServer,
        files: WeightFiles, images: np.ndarray, reference: keras.Model,
        reference_outputs: np.ndarray) -> None:
    """Same file, loaded the way keras.applications does for weights="imagenet"."""
    keras_home = tmp_path / "keras_applications_home"
    keras_home.mkdir()  # keras falls back to /tmp/.keras when KERAS_HOME is not writable
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(keras_home))  # read at import time
    monkeypatch.setattr(keras_efficientnet, "BASE_WEIGHTS_PATH", server.url("/keras-applications/"))
    monkeypatch.setitem(keras_efficientnet.WEIGHTS_HASHES, "b0", files.md5s)

    theirs = keras.applications.EfficientNetB0(weights="imagenet", include_top=False)
    assert server.count(NOTOP_PATH) == 1
    assert (keras_home / "models" / NOTOP_NAME).read_bytes() == files.notop
    expected = outputs(theirs, images)
    assert expected.shape == reference_outputs.shape == (2, 3, 3, 1280)
    np.testing.assert_allclose(reference_outputs, expected, rtol=0, atol=1e-5)

    # Two parametrizations of the same function: keras keeps the file's std in the variance slot
    # (plus a hidden rescaling), we hold the true variance.
    np.testing.assert_array_equal(_normalization(theirs).get_weights()[1], STD)
    np.testing.assert_allclose(reference.get_layer("normalization").get_weights()[1], STD**2,
                               rtol=1e-6)


def test_legacy_h5_path_equals_imagenet(tmp_path: Path, files: WeightFiles, images: np.ndarray,
                                        reference_outputs: np.ndarray) -> None:
    path = tmp_path / NOTOP_NAME
    path.write_bytes(files.notop)
    model = ke.EfficientNetB0(weights=str(path), include_top=False)
    assert_weights_from_file(model, files)
    np.testing.assert_array_equal(outputs(model, images), reference_outputs)


def test_fine_tuned_weights_round_trip(tmp_path: Path, reference: keras.Model,
                                       images: np.ndarray,
                                       reference_outputs: np.ndarray) -> None:
    path = tmp_path / "ft.weights.h5"
    reference.save_weights(str(path))
    fresh = ke.EfficientNetB0(weights=str(path), include_top=False)
    for ours, theirs in zip(fresh.weights, reference.weights, strict=True):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=ours.path)
    # The corrected variance (std²) is loaded as is, not squared a second time.
    np.testing.assert_allclose(fresh.get_layer("normalization").get_weights()[1], STD**2,
                               rtol=1e-6)
    np.testing.assert_array_equal(outputs(fresh, images), reference_outputs)


def test_weights_none_graph_has_the_imagenet_structure(
        reference: keras.Model, plain: keras.Model, images: np.ndarray,
        reference_outputs: np.ndarray) -> None:
    assert [layer.name for layer in plain.layers] == [layer.name for layer in reference.layers]
    assert ([(w.path, tuple(w.shape)) for w in plain.weights]
            == [(w.path, tuple(w.shape)) for w in reference.weights])
    # Same normalization from the start: ImageNet mean and variance (std²).
    for got, expected in zip(plain.get_layer("normalization").get_weights(),
                             reference.get_layer("normalization").get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    # ...and different (random) weights elsewhere, so the outputs differ.
    assert np.abs(outputs(plain, images) - reference_outputs).max() > 1e-3
