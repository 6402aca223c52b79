"""Official EfficientNet-Lite TF checkpoints: conversion by name, and ``weights="imagenet"``.

A name-based checkpoint with the official variable names and shapes of efficientnet-lite0 is
generated here with ``tf.raw_ops.SaveV2`` (values from a fixed seed, an
``/ExponentialMovingAverage`` copy with different values for every variable, and some training
state), then packed like the published tarball and served from a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_efficient as ke
from keras_efficient.configs import EFFICIENTNET_VARIANTS
from keras_efficient.weights import registry
from keras_efficient.weights.checkpoint import CheckpointMismatchError, efficientnet_name_map
from keras_efficient.weights.download import MANIFEST_NAME, file_hash
from keras_efficient.weights.loading import load_weights_file
from keras_efficient.weights.pretrained import fetch_checkpoint
from tests.helpers import LocalHTTPServer

SCOPE = "efficientnet-lite0"
EMA = "/ExponentialMovingAverage"
TARBALL = "efficientnet-lite0.tar.gz"
TARBALL_PATH = "/cloud-tpu-checkpoints/efficientnet/lite/" + TARBALL

#: Official names and shapes of a sample of efficientnet-lite0 variables, written out by hand
#: (tensorflow/tpu efficientnet_builder, lite0: stem 32, block 0 without expansion, 16 blocks,
#: no squeeze-excite, head 1280).
OFFICIAL_SHAPES = {
    f"{SCOPE}/stem/conv2d/kernel": (3, 3, 3, 32),
    f"{SCOPE}/stem/tpu_batch_normalization/gamma": (32,),
    # block 0: no expansion -> depthwise, its BN, then the projection conv and its BN.
    f"{SCOPE}/blocks_0/depthwise_conv2d/depthwise_kernel": (3, 3, 32, 1),
    f"{SCOPE}/blocks_0/tpu_batch_normalization/gamma": (32,),
    f"{SCOPE}/blocks_0/conv2d/kernel": (1, 1, 32, 16),
    f"{SCOPE}/blocks_0/tpu_batch_normalization_1/moving_mean": (16,),
    # block 1: expansion conv + BN, depthwise + BN, projection conv + BN.
    f"{SCOPE}/blocks_1/conv2d/kernel": (1, 1, 16, 96),
    f"{SCOPE}/blocks_1/tpu_batch_normalization/beta": (96,),
    f"{SCOPE}/blocks_1/depthwise_conv2d/depthwise_kernel": (3, 3, 96, 1),
    f"{SCOPE}/blocks_1/tpu_batch_normalization_1/moving_mean": (96,),
    f"{SCOPE}/blocks_1/conv2d_1/kernel": (1, 1, 96, 24),
    f"{SCOPE}/blocks_1/tpu_batch_normalization_2/moving_variance": (24,),
    f"{SCOPE}/blocks_3/depthwise_conv2d/depthwise_kernel": (5, 5, 144, 1),
    f"{SCOPE}/blocks_15/conv2d_1/kernel": (1, 1, 1152, 320),
    f"{SCOPE}/head/conv2d/kernel": (1, 1, 320, 1280),
    f"{SCOPE}/head/tpu_batch_normalization/moving_variance": (1280,),
    f"{SCOPE}/head/dense/kernel": (1280, 1000),
    f"{SCOPE}/head/dense/bias": (1000,),
}
#: stem 1+4, block 0 1+4+1+4, blocks 1-15 3x(1+4), head 1+4+2.
OFFICIAL_COUNT = 5 + 10 + 15 * 15 + 7
#: Layers compared one by one in the tests below (all layers are compared where cheap).
SAMPLE_LAYERS = ("stem_conv", "stem_bn", "block1a_dwconv", "block1a_bn", "block1a_project_conv",
                 "block2a_expand_conv", "block2a_project_bn", "block4c_bn", "block7a_project_conv",
                 "top_conv", "top_bn", "predictions")

_KINDS = {
    "Conv2D": ("conv2d", ("kernel",)),
    "DepthwiseConv2D": ("depthwise_conv2d", ("depthwise_kernel",)),
    "BatchNormalization": ("tpu_batch_normalization",
                           ("gamma", "beta", "moving_mean", "moving_variance")),
}


def official_names(model: keras.Model, scope: str = SCOPE) -> dict[str, list[str]]:
    """Layer name -> official variable names, derived independently of the library.

    TF1 layers are named by creation order inside their variable scope (``conv2d``,
    ``conv2d_1``, ...; ``tpu_batch_normalization``, ``_1``, ``_2``); blocks are numbered
    globally (``blocks_0`` ...) in construction order, which is the Keras layer order.
    """
    names: dict[str, list[str]] = {}
    blocks: dict[str, int] = {}
    counters: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name == "predictions":
            names[layer.name] = [f"{scope}/head/dense/kernel", f"{scope}/head/dense/bias"]
            continue
        if layer.name.startswith("stem_"):
            prefix = f"{scope}/stem"
        elif layer.name.startswith("top_"):
            prefix = f"{scope}/head"
        else:
            block = layer.name.split("_")[0]  # "block2a"
            prefix = f"{scope}/blocks_{blocks.setdefault(block, len(blocks))}"
        kind, variables = _KINDS[type(layer).__name__]
        count = counters[prefix][kind]
        counters[prefix][kind] += 1
        layer_scope = f"{prefix}/{kind}" + (f"_{count}" if count else "")
        names[layer.name] = [f"{layer_scope}/{variable}" for variable in variables]
    return names


def save_checkpoint(prefix: Path, tensors: dict[str, np.ndarray]) -> str:
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[name]) for name in names])
    assert Path(str(prefix) + ".index").is_file()
    return str(prefix)


@dataclass(frozen=True)
class Checkpoint:
    prefix: str
    names: dict[str, list[str]]  # layer -> official names
    raw: dict[str, np.ndarray]
    ema: dict[str, np.ndarray]

    def tensors(self) -> dict[str, np.ndarray]:
        """Everything the checkpoint holds: variables, EMA copies and training state."""
        tensors = dict(self.raw)
        tensors.update({name + EMA: value for name, value in self.ema.items()})
        tensors["global_step"] = np.array(123_456, dtype=np.int64)
        for name in (f"{SCOPE}/stem/conv2d/kernel", f"{SCOPE}/head/dense/kernel",
                     f"{SCOPE}/blocks_4/tpu_batch_normalization_1/gamma"):
            tensors[name + "/RMSProp"] = np.ones_like(self.raw[name])
            tensors[name + "/RMSProp_1"] = np.zeros_like(self.raw[name])
        return tensors


@pytest.fixture(scope="module")
def lite() -> keras.Model:
    """Lite0 with top and weights=None; failing loads below must leave it untouched."""
    return ke.EfficientNetLite0(weights=None)


@pytest.fixture(scope="module")
def lite_snapshot(lite: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w).copy() for w in lite.weights]


@pytest.fixture
def lite_weights(lite: keras.Model, lite_snapshot: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
    """The weights ``lite`` must keep; restored after the test, so a failure does not spread."""
    yield lite_snapshot
    lite.set_weights(lite_snapshot)


@pytest.fixture(scope="module")
def ckpt(lite: keras.Model, tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    names = official_names(lite)
    raw_rng, ema_rng = np.random.default_rng(1), np.random.default_rng(2)
    raw, ema = {}, {}
    for layer_name, variables in names.items():
        for weight, variable in zip(lite.get_layer(layer_name).weights, variables, strict=True):
            shape = tuple(weight.shape)
            raw[variable] = raw_rng.uniform(0.5, 1.5, shape).astype("float32")
            ema[variable] = ema_rng.uniform(-1.5, -0.5, shape).astype("float32")
    folder = tmp_path_factory.mktemp("lite0_checkpoint")
    checkpoint = Checkpoint("", names, raw, ema)
    prefix = save_checkpoint(folder / "model.ckpt", checkpoint.tensors())
    return Checkpoint(prefix, names, raw, ema)


def assert_loaded_ema(model: keras.Model, ckpt: Checkpoint,
                      layers: tuple[str, ...] | None = None) -> None:
    for layer_name in layers or tuple(ckpt.names):
        layer = model.get_layer(layer_name)
        for weight, variable in zip(layer.weights, ckpt.names[layer_name], strict=True):
            np.testing.assert_array_equal(np.asarray(weight), ckpt.ema[variable],
                                          err_msg=f"{weight.path} <- {variable}")


def assert_untouched(model: keras.Model, snapshot: list[np.ndarray]) -> None:
    for weight, before in zip(model.weights, snapshot, strict=True):
        np.testing.assert_array_equal(np.asarray(weight), before, err_msg=weight.path)


# --------------------------------------------------------------------------- names


def test_official_names_and_shapes(ckpt: Checkpoint) -> None:
    assert len(ckpt.raw) == OFFICIAL_COUNT
    for name, shape in OFFICIAL_SHAPES.items():
        assert name in ckpt.raw, name
        assert ckpt.raw[name].shape == shape, name
    # Lite has no squeeze-excite and no Normalization layer.
    assert not [name for name in ckpt.raw if "/se/" in name]
    # The library's map names exactly the same variables for the same layers.
    library = efficientnet_name_map(EFFICIENTNET_VARIANTS["efficientnetlite0"], include_top=True)
    assert library == ckpt.names


def test_checkpoint_file_holds_official_names(ckpt: Checkpoint) -> None:
    stored = tf.train.load_checkpoint(ckpt.prefix).get_variable_to_shape_map()
    for name, shape in OFFICIAL_SHAPES.items():
        assert tuple(stored[name]) == shape
        assert tuple(stored[name + EMA]) == shape
    assert "global_step" in stored
    assert f"{SCOPE}/head/dense/kernel/RMSProp" in stored


# --------------------------------------------------------------------------- weights=<prefix>


def test_prefix_loads_the_ema_values_into_every_layer(ckpt: Checkpoint) -> None:
    model = ke.EfficientNetLite0(weights=ckpt.prefix)
    assert_loaded_ema(model, ckpt)
    # Spot checks against the hand-written names, and that the raw values were not used.
    np.testing.assert_array_equal(model.get_layer("block1a_dwconv").weights[0],
                                  ckpt.ema[f"{SCOPE}/blocks_0/depthwise_conv2d/depthwise_kernel"])
    np.testing.assert_array_equal(model.get_layer("block2a_project_bn").moving_variance,
                                  ckpt.ema[f"{SCOPE}/blocks_1/tpu_batch_normalization_2"
                                           "/moving_variance"])
    np.testing.assert_array_equal(model.get_layer("block2a_expand_conv").kernel,
                                  ckpt.ema[f"{SCOPE}/blocks_1/conv2d/kernel"])
    assert not np.array_equal(model.get_layer("predictions").kernel,
                              ckpt.raw[f"{SCOPE}/head/dense/kernel"])


def test_prefix_without_top_ignores_the_dense_head(ckpt: Checkpoint) -> None:
    model = ke.EfficientNetLite0(weights=ckpt.prefix, include_top=False)
    assert "predictions" not in [layer.name for layer in model.layers]
    assert_loaded_ema(model, ckpt, tuple(name for name in ckpt.names if name != "predictions"))


@pytest.mark.parametrize("case", ["extra", "missing", "shape"])
def test_mismatch_is_reported_and_nothing_assigned(
        case: str, ckpt: Checkpoint, lite: keras.Model, lite_weights: list[np.ndarray],
        tmp_path: Path) -> None:
    tensors = ckpt.tensors()
    if case == "extra":  # e.g. a squeeze-excite variable of a B0 checkpoint
        name = f"{SCOPE}/blocks_7/se/conv2d/kernel"
        tensors[name] = np.ones((1, 1, 480, 20), "float32")
        expected = ["not used by the model", name]
    elif case == "missing":
        name = f"{SCOPE}/blocks_5/tpu_batch_normalization_1/beta"
        del tensors[name], tensors[name + EMA]
        expected = ["lacks", name, "block4a_bn"]
    else:
        name = f"{SCOPE}/blocks_2/depthwise_conv2d/depthwise_kernel"
        assert tensors[name].shape == (3, 3, 144, 1)
        tensors[name] = tensors[name + EMA] = np.ones((5, 5, 144, 1), "float32")
        expected = [name, "(5, 5, 144, 1)", "(3, 3, 144, 1)"]
    prefix = save_checkpoint(tmp_path / "model.ckpt", tensors)
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights_file(lite, prefix)
    for text in expected:
        assert text in str(info.value)
    assert_untouched(lite, lite_weights)


# --------------------------------------------------------------------------- weights="imagenet"


@pytest.fixture(scope="module")
def tarball(ckpt: Checkpoint) -> bytes:
    """The checkpoint packed like the published tarball: ``efficientnet-lite0/model.ckpt.*``."""
    buffer = io.BytesIO()
    folder = Path(ckpt.prefix).parent
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        tar.add(folder, arcname="efficientnet-lite0", recursive=False)
        extra = {"checkpoint": b'model_checkpoint_path: "model.ckpt"\n',
                 "efficientnet-lite0-fp32.tflite": b"not a model"}
        for name, data in extra.items():
            info = tarfile.TarInfo(f"efficientnet-lite0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=f"efficientnet-lite0/{path.name}")
    return buffer.getvalue()


@pytest.fixture
def server(tarball: bytes) -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer({TARBALL_PATH: tarball}) as srv:
        yield srv


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalHTTPServer) -> Path:
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv(registry.MIRROR_ENV, server.url("/"))
    return home / "models"


def test_imagenet_downloads_extracts_and_loads_then_reuses(
        cache: Path, server: LocalHTTPServer, ckpt: Checkpoint, tarball: bytes) -> None:
    model = ke.EfficientNetLite0(weights="imagenet")
    assert server.count(TARBALL_PATH) == 1
    assert_loaded_ema(model, ckpt)
    assert (cache / TARBALL).read_bytes() == tarball
    manifest = json.loads((cache / MANIFEST_NAME).read_text())["files"][TARBALL]
    assert manifest["size"] == len(tarball)
    assert manifest["sha256"] == file_hash(cache / TARBALL)
    (extracted,) = cache.glob("efficientnet-lite0_extracted*")
    assert (extracted / "efficientnet-lite0" / "model.ckpt.index").is_file()

    again = ke.EfficientNetLite0(weights="imagenet", include_top=False)
    assert server.count() == 1, "a cached tarball matching the manifest must be reused"
    assert_loaded_ema(again, ckpt, SAMPLE_LAYERS[:-1])


def test_imagenet_tampered_tarball_is_downloaded_again(
        cache: Path, server: LocalHTTPServer, ckpt: Checkpoint, tarball: bytes) -> None:
    fetch_checkpoint(registry.imagenet_weights("efficientnetlite0", include_top=True),
                     progress=False)
    assert server.count(TARBALL_PATH) == 1
    tampered = bytearray(tarball)
    tampered[len(tampered) // 3] ^= 0x01
    (cache / TARBALL).write_bytes(bytes(tampered))

    model = ke.EfficientNetLite0(weights="imagenet")
    assert server.count(TARBALL_PATH) == 2
    assert (cache / TARBALL).read_bytes() == tarball
    assert_loaded_ema(model, ckpt, SAMPLE_LAYERS)


def _tiny_tarball(folder: Path, value: float) -> bytes:
    """A one-variable checkpoint packed like the published tarball."""
    prefix = save_checkpoint(folder / "model.ckpt", {"v": np.array(value, "float32")})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(Path(prefix).parent.iterdir()):
            tar.add(path, arcname=f"efficientnet-lite0/{path.name}")
    return buffer.getvalue()


def test_archive_downloaded_again_is_extracted_again(
        cache: Path, server: LocalHTTPServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-downloaded archive with other contents never reuses the old extraction."""
    first = _tiny_tarball(tmp_path / "first", 1.0)
    second = _tiny_tarball(tmp_path / "second", 2.0)
    server.files[TARBALL_PATH] = first
    entry = registry.imagenet_weights("efficientnetlite0", include_top=True)
    prefix = fetch_checkpoint(entry, progress=False)
    assert tf.train.load_checkpoint(prefix).get_tensor("v") == 1.0

    # The user pins the sha256 of a newer archive: the cached one is replaced...
    server.files[TARBALL_PATH] = second
    monkeypatch.setitem(registry._PINS, TARBALL, hashlib.sha256(second).hexdigest())
    prefix = fetch_checkpoint(entry, progress=False)
    assert server.count(TARBALL_PATH) == 2
    assert (cache / TARBALL).read_bytes() == second
    # ...and the checkpoint loaded is the new one, not the extraction of the old archive.
    assert tf.train.load_checkpoint(prefix).get_tensor("v") == 2.0
