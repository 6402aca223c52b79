"""Official EfficientDet checkpoints (google/automl): conversion by name, and ``weights="coco"``.

Name-based checkpoints with the official variable names (REFERENCE §3.3) are generated here with
``tf.raw_ops.SaveV2`` for D0 (fast fusion: ``WSM`` scalars) and Lite0 (sum fusion: no ``WSM``),
values from a fixed seed, an ``/ExponentialMovingAverage`` copy with different values for every
variable, and training state. The Lite0 one is then packed like the published tarball and served
from a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_efficient as ke
from keras_efficient.configs.efficientdet import EFFICIENTDET_VARIANTS
from keras_efficient.weights import pretrained, registry
from keras_efficient.weights.checkpoint import CheckpointMismatchError
from keras_efficient.weights.detector_checkpoint import (
    efficientdet_name_map,
    load_efficientdet_checkpoint,
)
from tests.helpers import LocalHTTPServer, save_name_based_checkpoint

EMA = "/ExponentialMovingAverage"
D0 = EFFICIENTDET_VARIANTS["efficientdet-d0"]
LITE0 = EFFICIENTDET_VARIANTS["efficientdet-lite0"]
TARBALL = "efficientdet-lite0.tgz"
TARBALL_PATH = "/cloud-tpu-checkpoints/efficientdet/coco/" + TARBALL
CONVERTED = "efficientdet-lite0_coco.weights.h5"
PRIOR_BIAS = -np.log(99.0)

#: Official D0 variable names written out by hand (automl efficientdet, TF1 scopes), with the
#: layer and weight index of our model that must receive them.
OFFICIAL_D0 = {
    "resample_p6/conv2d/kernel": ("resample_p6_conv", 0),
    "resample_p6/conv2d/bias": ("resample_p6_conv", 1),
    "resample_p6/bn/gamma": ("resample_p6_bn", 0),
    "resample_p6/bn/moving_variance": ("resample_p6_bn", 3),
    "fpn_cells/cell_0/fnode0/WSM": ("fpn_cell0_node0_fusion", (0, 0)),
    "fpn_cells/cell_0/fnode0/WSM_1": ("fpn_cell0_node0_fusion", (0, 1)),
    "fpn_cells/cell_0/fnode4/WSM_2": ("fpn_cell0_node4_fusion", (0, 2)),
    "fpn_cells/cell_2/fnode7/WSM_1": ("fpn_cell2_node7_fusion", (0, 1)),
    "fpn_cells/cell_1/fnode3/op_after_combine8/conv/depthwise_kernel":
        ("fpn_cell1_node3_conv", 0),
    "fpn_cells/cell_1/fnode3/op_after_combine8/conv/pointwise_kernel":
        ("fpn_cell1_node3_conv", 1),
    "fpn_cells/cell_0/fnode0/op_after_combine5/conv/bias": ("fpn_cell0_node0_conv", 2),
    "fpn_cells/cell_2/fnode7/op_after_combine12/bn/moving_mean": ("fpn_cell2_node7_bn", 2),
    "fpn_cells/cell_0/fnode1/resample_0_2_6/conv2d/kernel":
        ("fpn_cell0_node1_resample_0_2_conv", 0),
    "fpn_cells/cell_0/fnode5/resample_0_2_10/conv2d/bias":
        ("fpn_cell0_node5_resample_0_2_conv", 1),
    "fpn_cells/cell_0/fnode3/resample_0_0_8/bn/beta": ("fpn_cell0_node3_resample_0_0_bn", 1),
    "fpn_cells/cell_0/fnode4/resample_0_1_9/bn/moving_mean":
        ("fpn_cell0_node4_resample_0_1_bn", 2),
    "class_net/class-0/depthwise_kernel": ("class_net_conv0", 0),
    "class_net/class-0/pointwise_kernel": ("class_net_conv0", 1),
    "class_net/class-2-bn-7/beta": ("class_net_bn2_p7", 1),
    "class_net/class-1-bn-3/gamma": ("class_net_bn1_p3", 0),
    "class_net/class-predict/pointwise_kernel": ("class_net_predict", 1),
    "class_net/class-predict/bias": ("class_net_predict", 2),
    "box_net/box-predict/depthwise_kernel": ("box_net_predict", 0),
    "box_net/box-predict/bias": ("box_net_predict", 2),
    "box_net/box-2-bn-5/moving_variance": ("box_net_bn2_p5", 3),
    "efficientnet-b0/stem/conv2d/kernel": ("stem_conv", 0),
    "efficientnet-b0/blocks_0/tpu_batch_normalization_1/gamma": ("block1a_project_bn", 0),
    "efficientnet-b0/blocks_15/conv2d_1/kernel": ("block7a_project_conv", 0),
    "efficientnet-b0/blocks_15/se/conv2d/kernel": ("block7a_se_reduce", 0),
}
#: Their shapes, by hand (B0 taps: P3 40, P4 112, P5 320 channels; width 64; 9 anchors).
OFFICIAL_D0_SHAPES = {
    "resample_p6/conv2d/kernel": (1, 1, 320, 64),
    "fpn_cells/cell_0/fnode0/WSM": (),
    "fpn_cells/cell_0/fnode4/WSM_2": (),
    "fpn_cells/cell_1/fnode3/op_after_combine8/conv/depthwise_kernel": (3, 3, 64, 1),
    "fpn_cells/cell_0/fnode1/resample_0_2_6/conv2d/kernel": (1, 1, 320, 64),
    "fpn_cells/cell_0/fnode4/resample_0_1_9/bn/moving_mean": (64,),
    "class_net/class-0/pointwise_kernel": (1, 1, 64, 64),
    "class_net/class-predict/bias": (90 * 9,),
    "box_net/box-predict/depthwise_kernel": (3, 3, 64, 1),
    "box_net/box-predict/bias": (4 * 9,),
    "efficientnet-b0/blocks_15/conv2d_1/kernel": (1, 1, 1152, 320),
}
OFFICIAL_LITE0 = {
    "resample_p6/conv2d/kernel": ("resample_p6_conv", 0),
    "fpn_cells/cell_0/fnode2/resample_0_1_7/conv2d/kernel":
        ("fpn_cell0_node2_resample_0_1_conv", 0),
    "fpn_cells/cell_2/fnode6/op_after_combine11/bn/gamma": ("fpn_cell2_node6_bn", 0),
    "class_net/class-2-bn-6/moving_mean": ("class_net_bn2_p6", 2),
    "box_net/box-0/pointwise_kernel": ("box_net_conv0", 1),
    "efficientnet-lite0/blocks_15/conv2d_1/kernel": ("block7a_project_conv", 0),
}
#: Names that must not exist: no WSM without weighted fusion, no projections after cell 0,
#: no backbone head, and no suffix 5+n for other nodes.
ABSENT_LITE0 = ("fpn_cells/cell_0/fnode0/WSM",
                "fpn_cells/cell_1/fnode1/resample_0_2_6/conv2d/kernel",
                "efficientnet-lite0/head/conv2d/kernel",
                "efficientdet-lite0/stem/conv2d/kernel")
ABSENT_D0 = ("fpn_cells/cell_0/fnode0/WSM_2",
             "fpn_cells/cell_0/fnode0/resample_0_3_5/conv2d/kernel",
             "fpn_cells/cell_0/fnode3/op_after_combine5/conv/bias",
             "efficientnet-b0/head/conv2d/kernel",
             "efficientnet-b0/head/dense/kernel")


def flat_names(name_map: dict) -> dict[str, tuple[str, int, int | None]]:
    """Checkpoint name -> (layer, weight index, element index of a stacked scalar or None)."""
    flat = {}
    for layer, sources in name_map.items():
        for index, source in enumerate(sources):
            if isinstance(source, str):
                flat[source] = (layer, index, None)
            else:
                for element, name in enumerate(source):
                    flat[name] = (layer, index, element)
    return flat


@dataclass(frozen=True)
class Checkpoint:
    prefix: str
    flat: dict[str, tuple[str, int, int | None]]
    raw: dict[str, np.ndarray]
    ema: dict[str, np.ndarray]

    def tensors(self) -> dict[str, np.ndarray]:
        tensors = dict(self.raw)
        tensors.update({name + EMA: value for name, value in self.ema.items()})
        tensors["global_step"] = np.array(52_000, dtype=np.int64)
        for name in list(self.raw)[:3]:
            tensors[name + "/Momentum"] = np.zeros_like(self.raw[name])
        return tensors

    def expected(self, layer: str, index: int) -> np.ndarray:
        """The EMA value(s) that weight ``index`` of ``layer`` must hold after loading."""
        names = [(name, element) for name, (lay, idx, element) in self.flat.items()
                 if lay == layer and idx == index]
        if names[0][1] is None:
            return self.ema[names[0][0]]
        return np.stack([self.ema[name] for name, _ in sorted(names, key=lambda n: n[1])])


def make_checkpoint(model: keras.Model, spec, folder: Path) -> Checkpoint:
    flat = flat_names(efficientdet_name_map(spec))
    raw_rng, ema_rng = np.random.default_rng(1), np.random.default_rng(2)
    raw, ema = {}, {}
    for name in sorted(flat):
        layer, index, element = flat[name]
        weight = model.get_layer(layer).weights[index]
        shape = () if element is not None else tuple(weight.shape)
        raw[name] = raw_rng.uniform(5.0, 6.0, shape).astype("float32")
        if element is not None:  # WSM: some negative, so that relu matters
            value = ema_rng.uniform(-0.5, 1.5, shape)
        elif name.endswith(("/gamma", "/moving_variance")):
            value = ema_rng.uniform(0.5, 1.5, shape)
        else:
            value = ema_rng.normal(0.0, 0.3, shape)
        ema[name] = value.astype("float32")
    checkpoint = Checkpoint("", flat, raw, ema)
    prefix = save_name_based_checkpoint(folder / "model", checkpoint.tensors())
    return Checkpoint(prefix, flat, raw, ema)


def assert_loaded(model: keras.Model, ckpt: Checkpoint, skip: tuple[str, ...] = ()) -> int:
    checked = set()
    for layer, index, _ in ckpt.flat.values():
        if layer in skip or (layer, index) in checked:
            continue
        checked.add((layer, index))
        weight = model.get_layer(layer).weights[index]
        np.testing.assert_array_equal(np.asarray(weight), ckpt.expected(layer, index),
                                      err_msg=weight.path)
    return len(checked)


def snapshot(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w).copy() for w in model.weights]


@pytest.fixture(scope="module")
def d0() -> keras.Model:
    return ke.EfficientDet("d0", num_classes=90)


@pytest.fixture(scope="module")
def lite0() -> keras.Model:
    return ke.EfficientDet("lite0", num_classes=90)


@pytest.fixture(scope="module")
def d0_ckpt(d0, tmp_path_factory) -> Checkpoint:
    return make_checkpoint(d0, D0, tmp_path_factory.mktemp("d0_checkpoint"))


@pytest.fixture(scope="module")
def lite0_ckpt(lite0, tmp_path_factory) -> Checkpoint:
    return make_checkpoint(lite0, LITE0, tmp_path_factory.mktemp("lite0_checkpoint"))


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(("model", "spec", "official", "absent"), [
    ("d0", D0, OFFICIAL_D0, ABSENT_D0), ("lite0", LITE0, OFFICIAL_LITE0, ABSENT_LITE0)])
def test_official_names_are_mapped_to_the_right_weights(request, model, spec, official, absent):
    model = request.getfixturevalue(model)
    flat = flat_names(efficientdet_name_map(spec))
    for name, (layer, index) in official.items():
        element = index[1] if isinstance(index, tuple) else None
        index = index[0] if isinstance(index, tuple) else index
        assert flat.get(name) == (layer, index, element), name
    for name in absent:
        assert name not in flat, name
    # Every weight of every layer (but the Normalization statistics) has a source, once.
    fusion = [layer for layer in model.layers if layer.name.endswith("_fusion") and layer.weights]
    stacked = sum(int(layer.weights[0].shape[0]) for layer in fusion)
    norm = 3 if spec is D0 else 0
    assert len(flat) == len(model.weights) - norm - len(fusion) + stacked
    assert stacked == (3 * 19 if spec is D0 else 0)


def owning(model: keras.Model) -> set[str]:
    return {layer.name for layer in model.layers if layer.weights}


def test_name_map_covers_exactly_the_weight_layers(d0, lite0):
    assert set(efficientdet_name_map(D0)) == owning(d0) - {"normalization"}
    assert set(efficientdet_name_map(LITE0)) == owning(lite0)
    # A fusion override changes which WSM variables are expected.
    assert "fpn_cell0_node0_fusion" in efficientdet_name_map(LITE0, fusion="fast")
    assert "fpn_cell0_node0_fusion" not in efficientdet_name_map(D0, fusion="sum")


def test_name_map_skips_the_projections_the_builder_skips():
    # Backbone P3 of Lite0 has 40 channels: with a 40-wide BiFPN it is fused unprojected
    # (as in automl), so the checkpoint has no resample_0_0_8 variables for it.
    spec = LITE0.with_(fpn_filters=40, input_size=256)
    model = ke.EfficientDet(spec)
    names = efficientdet_name_map(spec)
    assert set(names) == owning(model)
    assert "fpn_cell0_node3_resample_0_0_conv" not in names
    assert names["fpn_cell0_node4_resample_0_1_conv"] == [
        "fpn_cells/cell_0/fnode4/resample_0_1_9/conv2d/kernel",
        "fpn_cells/cell_0/fnode4/resample_0_1_9/conv2d/bias"]


def test_d0_official_shapes(d0, d0_ckpt):
    for name, shape in OFFICIAL_D0_SHAPES.items():
        assert d0_ckpt.raw[name].shape == shape, name
        layer, index = OFFICIAL_D0[name]
        if isinstance(index, tuple):
            assert tuple(d0.get_layer(layer).weights[index[0]].shape) == (3 if "fnode4" in name
                                                                          else 2,)
        else:
            assert tuple(d0.get_layer(layer).weights[index].shape) == shape, name


def test_checkpoint_file_holds_official_names(d0_ckpt):
    stored = tf.train.load_checkpoint(d0_ckpt.prefix).get_variable_to_shape_map()
    for name, shape in OFFICIAL_D0_SHAPES.items():
        assert tuple(stored[name]) == shape
        assert tuple(stored[name + EMA]) == shape
    assert "global_step" in stored


# --------------------------------------------------------------------------- weights=<prefix>


def test_d0_prefix_loads_ema_values(d0_ckpt):
    model = ke.EfficientDet("d0", weights=d0_ckpt.prefix)
    assert assert_loaded(model, d0_ckpt) == len(model.weights) - 3
    ema = d0_ckpt.ema
    # Spot checks against the hand-written names.
    np.testing.assert_array_equal(
        model.get_layer("fpn_cell0_node4_fusion").get_weights()[0],
        [ema[f"fpn_cells/cell_0/fnode4/WSM{s}"] for s in ("", "_1", "_2")])
    np.testing.assert_array_equal(
        model.get_layer("fpn_cell1_node0_fusion").get_weights()[0],
        [ema["fpn_cells/cell_1/fnode0/WSM"], ema["fpn_cells/cell_1/fnode0/WSM_1"]])
    bn = model.get_layer("class_net_bn1_p3")
    np.testing.assert_array_equal(bn.gamma, ema["class_net/class-1-bn-3/gamma"])
    np.testing.assert_array_equal(model.get_layer("class_net_bn2_p7").beta,
                                  ema["class_net/class-2-bn-7/beta"])
    np.testing.assert_array_equal(model.get_layer("resample_p6_conv").kernel,
                                  ema["resample_p6/conv2d/kernel"])
    np.testing.assert_array_equal(model.get_layer("fpn_cell0_node1_resample_0_2_conv").kernel,
                                  ema["fpn_cells/cell_0/fnode1/resample_0_2_6/conv2d/kernel"])
    np.testing.assert_array_equal(model.get_layer("block7a_project_conv").kernel,
                                  ema["efficientnet-b0/blocks_15/conv2d_1/kernel"])
    np.testing.assert_array_equal(model.get_layer("class_net_predict").bias,
                                  ema["class_net/class-predict/bias"])
    assert not np.array_equal(model.get_layer("resample_p6_conv").kernel,
                              d0_ckpt.raw["resample_p6/conv2d/kernel"])
    # The Normalization layer is not in the checkpoint and keeps the ImageNet statistics.
    np.testing.assert_allclose(model.get_layer("normalization").get_weights()[0],
                               [0.485, 0.456, 0.406], rtol=1e-6)


def test_leftover_variable_is_reported_and_nothing_assigned(d0, d0_ckpt, tmp_path):
    tensors = d0_ckpt.tensors()
    extra = "fpn_cells/cell_3/fnode0/op_after_combine5/bn/gamma"  # a D1 cell
    tensors[extra] = np.ones(64, "float32")
    prefix = save_name_based_checkpoint(tmp_path / "model", tensors)
    before = snapshot(d0)
    with pytest.raises(CheckpointMismatchError, match="not used by the model") as info:
        load_efficientdet_checkpoint(d0, prefix, D0)
    assert extra in str(info.value)
    assert "1 checkpoint variables" in str(info.value)  # only that one
    for weight, value in zip(d0.weights, before, strict=True):
        np.testing.assert_array_equal(np.asarray(weight), value, err_msg=weight.path)


@pytest.mark.parametrize(("missing", "layer"), [
    ("class_net/class-1-bn-6/moving_mean", "class_net_bn1_p6"),
    ("fpn_cells/cell_2/fnode5/WSM_1", "fpn_cell2_node5_fusion"),
    ("fpn_cells/cell_0/fnode5/resample_0_2_10/conv2d/kernel", "fpn_cell0_node5_resample_0_2_conv"),
])
def test_missing_variable_is_reported_and_nothing_assigned(d0, d0_ckpt, tmp_path, missing,
                                                           layer):
    tensors = d0_ckpt.tensors()
    del tensors[missing], tensors[missing + EMA]
    prefix = save_name_based_checkpoint(tmp_path / "model", tensors)
    before = snapshot(d0)
    with pytest.raises(CheckpointMismatchError) as info:
        load_efficientdet_checkpoint(d0, prefix, D0)
    assert missing in str(info.value)
    assert layer in str(info.value)
    for weight, value in zip(d0.weights, before, strict=True):
        np.testing.assert_array_equal(np.asarray(weight), value, err_msg=weight.path)


def test_other_num_classes_loads_all_but_the_class_predictor(d0_ckpt):
    model = ke.EfficientDet("d0", num_classes=20, weights=d0_ckpt.prefix)
    assert assert_loaded(model, d0_ckpt, skip=("class_net_predict",)) > 300
    predict = model.get_layer("class_net_predict")
    assert tuple(predict.bias.shape) == (20 * 9,)
    np.testing.assert_allclose(np.asarray(predict.bias), PRIOR_BIAS, rtol=1e-6)
    np.testing.assert_array_equal(model.get_layer("class_net_conv2").pointwise_kernel,
                                  d0_ckpt.ema["class_net/class-2/pointwise_kernel"])
    np.testing.assert_array_equal(model.get_layer("box_net_predict").bias,
                                  d0_ckpt.ema["box_net/box-predict/bias"])
    np.testing.assert_array_equal(model.get_layer("fpn_cell2_node7_fusion").get_weights()[0],
                                  d0_ckpt.expected("fpn_cell2_node7_fusion", 0))


# --------------------------------------------------------------------------- weights="coco"


def pack(ckpt: Checkpoint, extra: dict[str, bytes] | None = None) -> bytes:
    """The checkpoint packed like the published tarball: ``efficientdet-lite0/model.*``."""
    buffer = io.BytesIO()
    folder = Path(ckpt.prefix).parent
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        tar.add(folder, arcname="efficientdet-lite0", recursive=False)
        files = {"efficientdet-lite0/checkpoint": b'model_checkpoint_path: "model"\n',
                 **(extra or {})}
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=f"efficientdet-lite0/{path.name}")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tarball(lite0_ckpt) -> bytes:
    return pack(lite0_ckpt)


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


def test_coco_url_is_the_published_location():
    entry = registry.coco_weights("efficientdet-lite0")
    assert entry.url == "https://storage.googleapis.com" + TARBALL_PATH
    assert entry.filename == TARBALL


def test_coco_downloads_converts_caches_and_reuses(cache, server, lite0_ckpt, tarball,
                                                   monkeypatch):
    first = ke.EfficientDetLite0(weights="coco")
    assert server.count(TARBALL_PATH) == 1
    assert assert_loaded(first, lite0_ckpt) == len(first.weights)
    assert (cache / TARBALL).read_bytes() == tarball
    assert (cache / CONVERTED).is_file()

    def no_conversion(*args, **kwargs):
        raise AssertionError("the converted weights must be loaded from the cache")

    monkeypatch.setattr(pretrained, "load_efficientdet_checkpoint", no_conversion)
    second = ke.EfficientDetLite0(weights="coco")
    assert server.count() == 1, "nothing may be downloaded again"
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    x = np.random.default_rng(0).uniform(0, 255, (1, 320, 320, 3)).astype("float32")
    out1, out2 = first(x), second(x)
    for key in ("class_logits", "box_regression"):
        np.testing.assert_array_equal(np.asarray(out1[key]), np.asarray(out2[key]))
    assert float(np.std(np.asarray(out1["class_logits"]))) > 0.01


def test_coco_with_other_num_classes_warns(cache, server, lite0_ckpt):
    with pytest.warns(UserWarning, match="except the class predictor"):
        model = ke.EfficientDetLite0(num_classes=5, weights="coco")
    assert server.count(TARBALL_PATH) == 1
    assert assert_loaded(model, lite0_ckpt, skip=("class_net_predict",)) > 200
    predict = model.get_layer("class_net_predict")
    assert tuple(predict.bias.shape) == (5 * 9,)
    np.testing.assert_allclose(np.asarray(predict.bias), PRIOR_BIAS, rtol=1e-6)


def test_coco_tarball_with_path_traversal_is_refused(cache, server, lite0_ckpt, tmp_path):
    server.files[TARBALL_PATH] = pack(lite0_ckpt, {"../evil": b"owned"})
    with pytest.raises(ValueError, match=r"refusing to extract .*'\.\./evil'"):
        ke.EfficientDetLite0(weights="coco")
    assert not [path for path in tmp_path.parent.rglob("evil")]
    assert not (cache / "efficientdet-lite0_extracted").exists()
    assert not [path for path in cache.iterdir() if path.name.startswith(".")]  # no staging
    assert not (cache / CONVERTED).exists()
