"""Task Library metadata: written into tiny classifiers and detectors, read back, still runs."""

import io
import sys
import warnings
import zipfile

import numpy as np
import pytest

pytest.importorskip("tensorflow_lite_support.metadata.metadata_schema_py_generated")

import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils
from tensorflow_lite_support.metadata import metadata_schema_py_generated as fb

from keras_efficient.export.metadata import (
    DETECTOR_OUTPUT_NAMES,
    MissingMetadataError,
    read_metadata,
    write_classifier_metadata,
    write_detector_metadata,
)

LABELS = ["cat", "dog", "bird"]
MEAN, STD = [127.5, 127.5, 127.5], [127.5, 127.5, 127.5]
D = 5  # detections


def _convert(function, configure=None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function)
    if configure is not None:
        configure(converter)
    with warnings.catch_warnings():  # int8 conversion from a concrete function
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        return bytes(converter.convert())


@pytest.fixture(scope="module")
def classifiers():
    """``{"float32": bytes, "uint8": bytes}``: a tiny softmax classifier over 3 classes."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    serve = tf.function(lambda image: model(image, training=False),
                        input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
    images = [np.random.default_rng(i).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
              for i in range(4)]

    def int8(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32

    return {"float32": _convert(serve), "uint8": _convert(serve, int8)}


@pytest.fixture(scope="module")
def fake_detector() -> bytes:
    """Four outputs shaped like TFLite_Detection_PostProcess's: boxes, classes, scores, count."""

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    def detect(image):
        mean = tf.reduce_mean(image, axis=[1, 2])  # [1, 3]
        boxes = tf.sigmoid(tf.tile(mean[:, None, :1], [1, D, 4]))
        classes = tf.floor(tf.tile(mean[:, :1], [1, D]) / 100.0)
        scores = tf.sigmoid(tf.tile(mean[:, 1:2], [1, D]))
        count = tf.reduce_sum(tf.ones_like(mean[:, :1]), axis=1) * D
        return boxes, classes, scores, count

    model = _convert(detect)
    shapes = [tuple(d["shape"]) for d in _interpreter(model).get_output_details()]
    assert shapes == [(1, D, 4), (1, D), (1, D), (1,)], shapes
    return model


def _postprocess_implements(num_classes: int) -> str:
    attrs = {"max_detections": D, "max_classes_per_detection": 1, "detections_per_class": 1,
             "num_classes": num_classes, "use_regular_nms": False, "nms_score_threshold": 0.1,
             "nms_iou_threshold": 0.5, "y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0,
             "w_scale": 5.0}
    parts = ['name: "TFLite_Detection_PostProcess"']
    for key, value in attrs.items():
        kind = "b" if isinstance(value, bool) else "i" if isinstance(value, int) else "f"
        text = str(value).lower() if isinstance(value, bool) else value
        parts.append(f'attr {{ key: "{key}" value {{ {kind}: {text} }} }}')
    return " ".join(parts)


@pytest.fixture(scope="module")
def postprocess_detector(tmp_path_factory) -> bytes:
    """A real TFLite_Detection_PostProcess op (3 classes), converted from a SavedModel: the
    converter lists its outputs out of port order."""
    anchors = tf.constant(np.random.default_rng(0).uniform(0.2, 0.8, (8, 4)), tf.float32)

    @tf.function(experimental_implements=_postprocess_implements(len(LABELS)))
    def postprocess(box_encodings, class_predictions, anchors):
        return tuple(tf.constant(0.0, name=n) for n in ("boxes", "classes", "scores", "num"))

    class Detector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
        def serve(self, image):
            mean = tf.reduce_mean(image, axis=[1, 2])
            encodings = tf.tile(mean[:, None, :1], [1, 8, 4]) / 255.0
            logits = tf.concat([tf.zeros([1, 8, 1]), tf.tile(mean[:, None, :], [1, 8, 1])], -1)
            return postprocess(encodings, logits / 255.0, anchors)

    module = Detector()
    folder = str(tmp_path_factory.mktemp("postprocess"))
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(folder)
    converter.allow_custom_ops = True
    return bytes(converter.convert())


def _in_port_order(model: bytes) -> bytes:
    """``model`` with its subgraph outputs reordered to the op's ports 0, 1, 2, 3."""
    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    subgraph = tree.subgraphs[0]
    op = next(o for o in subgraph.operators if set(subgraph.outputs) <= set(o.outputs))
    subgraph.outputs = list(op.outputs)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def _interpreter(model: bytes) -> Interpreter:
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    return interpreter


def _run(model: bytes, seed: int = 0) -> list[np.ndarray]:
    interpreter = _interpreter(model)
    detail = interpreter.get_input_details()[0]
    image = np.random.default_rng(seed).uniform(0, 255, detail["shape"])
    interpreter.set_tensor(detail["index"], image.astype(detail["dtype"]))
    interpreter.invoke()
    return [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]


def _metadata_entries(model: bytes) -> dict[str, list[bytes]]:
    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    entries: dict[str, list[bytes]] = {}
    for entry in tree.metadata:
        entries.setdefault(entry.name.decode(), []).append(
            bytes(tree.buffers[entry.buffer].data))
    return entries


def _classifier(model: bytes, **kwargs) -> bytes:
    arguments = {"labels": LABELS, "mean": MEAN, "std": STD, "name": "tiny classifier"}
    return write_classifier_metadata(model, **{**arguments, **kwargs})


def _detector(model: bytes, **kwargs) -> bytes:
    arguments = {"labels": LABELS, "mean": MEAN, "std": STD, "name": "tiny detector"}
    return write_detector_metadata(model, **{**arguments, **kwargs})


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_classifier_metadata_round_trip(classifiers, dtype, tmp_path):
    model = _classifier(classifiers[dtype], description="A test.", version="v1")
    (tmp_path / "m.tflite").write_bytes(model)
    info = read_metadata(tmp_path / "m.tflite")
    assert (info.name, info.description, info.version) == ("tiny classifier", "A test.", "v1")
    assert (info.author, info.license) == ("keras_efficient", "Apache-2.0")
    assert info.min_parser_version == "1.0.0"
    assert info.labels == tuple(LABELS)
    assert (info.mean, info.std) == (tuple(MEAN), tuple(STD))
    assert [(t.name, t.dtype, t.shape, t.content) for t in info.inputs] == [
        ("image", dtype, (1, 32, 32, 3), "ImageProperties")]
    assert info.output_roles == ("probability",)
    assert info.output_names == tuple(d["name"] for d in
                                      _interpreter(model).get_output_details())
    assert info.outputs[0].associated_files == ("labels.txt",)
    assert info.associated_files == info.packed_files == ("labels.txt",)
    assert info.output_groups == {}
    image_md = info.raw["subgraphMetadata"][0]["inputTensorMetadata"][0]
    assert image_md["content"]["contentProperties"]["colorSpace"] == fb.ColorSpaceType.RGB
    expected = ([0.0], [255.0]) if dtype == "uint8" else ([-1.0] * 3, [1.0] * 3)
    assert (image_md["stats"]["min"], image_md["stats"]["max"]) == expected
    label_md = info.raw["subgraphMetadata"][0]["outputTensorMetadata"][0]["associatedFiles"][0]
    assert label_md["type"] == fb.AssociatedFileType.TENSOR_AXIS_LABELS
    # The model itself is untouched: same outputs, bit for bit.
    for before, after in zip(_run(classifiers[dtype]), _run(model), strict=True):
        np.testing.assert_array_equal(before, after)


def test_layout_is_flatbuffer_plus_zip_and_rewriting_replaces(classifiers):
    original = classifiers["float32"]
    once = _classifier(original)
    twice = _classifier(once, labels=["a", "b", "c"], name="renamed")
    for model, labels in ((once, LABELS), (twice, ["a", "b", "c"])):
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            assert archive.namelist() == ["labels.txt"]
            assert archive.read("labels.txt") == ("\n".join(labels) + "\n").encode()
        entries = _metadata_entries(model)
        assert len(entries["TFLITE_METADATA"]) == 1
        for name, payloads in _metadata_entries(original).items():
            assert entries[name] == payloads  # min_runtime_version, CONVERSION_METADATA kept
        buffer = entries["TFLITE_METADATA"][0]
        assert fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
        assert fb.ModelMetadata.GetRootAs(buffer, 0).MinParserVersion() == b"1.0.0"
    assert read_metadata(twice).name == "renamed"
    assert read_metadata(twice).labels == ("a", "b", "c")
    assert len(flatbuffer_utils.read_model_from_bytearray(bytearray(twice)).buffers) == \
        len(flatbuffer_utils.read_model_from_bytearray(bytearray(once)).buffers)
    # Buffer data is 16-byte aligned (force_align: 16 in the TFLite schema).
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.Model.GetRootAs(twice, 0)
    for i in range(tree.BuffersLength()):
        buffer = tree.Buffers(i)
        if buffer.DataLength():
            assert buffer._tab.Vector(buffer._tab.Offset(4)) % 16 == 0


def test_classifier_label_errors(classifiers):
    with pytest.raises(ValueError, match=r"4 labels for a classifier with 3 classes"):
        _classifier(classifiers["float32"], labels=[*LABELS, "fish"])
    for labels in (["cat", "", "bird"], ["cat", "d\nog", "bird"]):
        with pytest.raises(ValueError, match="single-line"):
            _classifier(classifiers["float32"], labels=labels)
    with pytest.raises(TypeError):
        _classifier(classifiers["float32"], labels="cat")
    with pytest.raises(ValueError, match="1 or 3 values"):
        _classifier(classifiers["float32"], mean=[0.0, 0.0], std=[1.0, 1.0])


def test_read_without_metadata_and_without_schema(classifiers, monkeypatch):
    with pytest.raises(MissingMetadataError, match="TFLITE_METADATA"):
        read_metadata(classifiers["float32"])
    with pytest.raises(ValueError, match="Not a TFLite model"):
        read_metadata(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "tensorflow_lite_support.metadata", None)
    with pytest.raises(ImportError, match=r"pip install --no-deps tflite-support==0\.4\.4"):
        _classifier(classifiers["float32"])


def test_detector_metadata(fake_detector):
    model = _detector(fake_detector)
    info = read_metadata(model)
    assert info.min_parser_version == "1.2.0"  # output_tensor_groups: added in 1.2.0
    assert info.output_roles == DETECTOR_OUTPUT_NAMES
    assert info.output_groups == {"detection_result": ("location", "category", "score")}
    assert info.labels == tuple(LABELS)
    assert [t.shape for t in info.outputs] == [(1, D, 4), (1, D), (1, D), (1,)]
    outputs = info.raw["subgraphMetadata"][0]["outputTensorMetadata"]
    box = outputs[0]["content"]["contentProperties"]
    assert box == {"index": [1, 0, 3, 2], "type": fb.BoundingBoxType.BOUNDARIES,
                   "coordinateType": fb.CoordinateType.RATIO}
    assert [o["content"].get("range") for o in outputs] == [{"min": 2, "max": 2}] * 3 + [None]
    assert outputs[1]["associatedFiles"][0]["type"] == fb.AssociatedFileType.TENSOR_VALUE_LABELS
    for before, after in zip(_run(fake_detector), _run(model), strict=True):
        np.testing.assert_array_equal(before, after)


def test_detector_output_errors(classifiers, postprocess_detector):
    with pytest.raises(ValueError, match=r"needs 4 outputs.*has 1: 'Identity"):
        _detector(classifiers["float32"])
    # The converter lists the op's outputs out of port order: refused, naming each output.
    with pytest.raises(ValueError, match=r"in the order boxes .*'PartitionedCall:\d' = "):
        _detector(postprocess_detector)
    ordered = _in_port_order(postprocess_detector)
    with pytest.raises(ValueError, match=r"4 labels for a detector with 3 classes"):
        _detector(ordered, labels=[*LABELS, "fish"])
    model = _detector(ordered)
    assert read_metadata(model).output_roles == DETECTOR_OUTPUT_NAMES
    for before, after in zip(_run(ordered), _run(model), strict=True):
        np.testing.assert_array_equal(before, after)


def _library_writer(name: str):
    """tflite-support's own metadata writer module ``name``, or a skip: it imports only from
    the inner package (``tflite_support/__init__`` imports protobuf-3 code that protobuf 7
    refuses) and only where the system library libusb-1.0 is installed (its pybind modules
    link it), which CI does not install."""
    return pytest.importorskip(
        f"tensorflow_lite_support.metadata.python.metadata_writers.{name}", exc_type=ImportError)


def _without_empty(value):
    """The library packs empty Stats tables where we leave the field unset."""
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if v != {}}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


@pytest.mark.parametrize("kind", ["float32", "uint8", "detector"])
def test_same_metadata_as_tflite_supports_writers(classifiers, postprocess_detector, kind,
                                                  tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    if kind == "detector":
        library = _library_writer("object_detector")
        model, ours_writer = _in_port_order(postprocess_detector), write_detector_metadata
        description = library._MODEL_DESCRIPTION
    else:
        library = _library_writer("image_classifier")
        model, ours_writer = classifiers[kind], write_classifier_metadata
        description = library.MODEL_DESCRIPTION
    theirs = bytes(library.MetadataWriter.create_for_inference(
        model, MEAN, STD, [str(labels)]).populate())
    ours = ours_writer(model, labels=LABELS, mean=MEAN, std=STD, name=library._MODEL_NAME,
                       description=description, author="", license="")
    mine, reference = read_metadata(ours), read_metadata(theirs)
    # Every field of the tree, the minimum parser version the populator computes, the roles
    # in the model's output order, the packed labels file byte for byte.
    assert _without_empty(mine.raw) == _without_empty(reference.raw)
    assert mine == reference
    for payload in (ours, theirs):
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            assert archive.read("labels.txt") == labels.read_bytes()
