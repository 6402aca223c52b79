"""Detector TFLite export: the three post-processing choices, their output contract, and the
custom op's detections against our own decoding + NMS on the same inputs."""

import csv

import keras
import numpy as np
import pytest

from keras_efficient.detection.anchors import generate_anchors
from keras_efficient.detection.box_coding import decode_boxes
from keras_efficient.detection.postprocess import NonMaxSuppression, flatten_network_outputs
from keras_efficient.export.detector_tflite import (
    DETECTION_OUTPUTS,
    PostprocessOptions,
    convert_detector,
    export_anchors,
    write_anchors_csv,
)
from keras_efficient.export.edgetpu import edgetpu_report
from keras_efficient.export.runtime import load_runtime, op_histogram, run
from keras_efficient.models.efficientdet import EfficientDet
from tests.harness import tiny_spec

SIZE = 64
NUM_CLASSES = 3
THRESHOLD = 0.05


def interpreter_for(payload):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=payload, num_threads=2)
    interpreter.allocate_tensors()
    return interpreter


def fixed_head_inputs(seed=0):
    """Logits and regressions with distinct scores, whose decoded boxes lie inside the image
    (the op does not clip, our decoder does; inside the image both agree)."""
    rng = np.random.default_rng(seed)
    anchors = generate_anchors(tiny_spec().anchor_spec((SIZE, SIZE)))
    count = anchors.shape[0]
    regressions = rng.normal(0.0, 0.15, (count, 4)).astype("float32")
    boxes = decode_boxes(regressions, anchors)
    inside = np.all((boxes >= 1.0) & (boxes <= SIZE - 1.0), axis=-1)
    logits = rng.normal(-4.0, 2.0, (count, NUM_CLASSES)).astype("float32")
    logits[~inside] = -12.0
    return logits, regressions


@keras.saving.register_keras_serializable(package="tests")
class FixedHead(keras.layers.Layer):
    """Stands in for a detector: fixed head outputs whatever the image."""

    def __init__(self, logits, regressions, **kwargs):
        super().__init__(**kwargs)
        self.logits = np.asarray(logits)
        self.regressions = np.asarray(regressions)

    def call(self, image):
        zero = keras.ops.mean(image) * 0.0
        return {"class_logits": keras.ops.convert_to_tensor(self.logits)[None] + zero,
                "box_regression": keras.ops.convert_to_tensor(self.regressions)[None] + zero}


@pytest.fixture(scope="module")
def fixed_detector():
    logits, regressions = fixed_head_inputs()
    image = keras.Input((SIZE, SIZE, 3), batch_size=1)
    model = keras.Model(image, FixedHead(logits, regressions)(image), name="fixed")
    # What an EfficientDetector carries and the export reads: its anchors and input size.
    model.image_size = (SIZE, SIZE)
    model.anchor_spec = lambda: tiny_spec().anchor_spec((SIZE, SIZE))
    return model, logits, regressions


@pytest.fixture(scope="module")
def tiny_detector():
    return EfficientDet(tiny_spec(), num_classes=NUM_CLASSES)


def our_detections(logits, regressions, max_detections=100):
    nms = NonMaxSuppression.from_anchor_spec(
        tiny_spec().anchor_spec((SIZE, SIZE)), max_detections=max_detections,
        pre_nms_top_k=None, score_threshold=THRESHOLD, iou_threshold=0.5, class_aware=False)
    boxes, scores, classes, count = (np.asarray(v) for v in nms(logits[None], regressions[None]))
    return boxes[0] / SIZE, scores[0], classes[0], int(count[0])


@pytest.mark.parametrize(("postprocess", "op_top_k"), [("custom_op", 0), ("custom_op", 200),
                                                      ("builtin_nms", 0)])
def test_postprocess_equals_our_decoding_and_nms(fixed_detector, postprocess, op_top_k):
    model, logits, regressions = fixed_detector
    options = PostprocessOptions(postprocess, score_threshold=THRESHOLD, op_top_k=op_top_k)
    payload = convert_detector(model, "float32", options=options)
    interpreter = interpreter_for(payload)
    names = [d["name"] for d in interpreter.get_output_details()]
    assert names == list(DETECTION_OUTPUTS)
    boxes, classes, scores, count = run(interpreter, np.zeros((1, SIZE, SIZE, 3), "float32"))
    want_boxes, want_scores, want_classes, want_count = our_detections(logits, regressions)
    assert want_count > 10
    if op_top_k:  # the top-k keeps every anchor above the threshold here, so nothing changes
        assert np.sum(1 / (1 + np.exp(-logits.max(axis=-1))) > THRESHOLD) <= op_top_k
    assert int(count[0]) == want_count
    np.testing.assert_allclose(scores[0, :want_count], want_scores[:want_count], atol=1e-5)
    np.testing.assert_array_equal(classes[0, :want_count].astype(int),
                                  want_classes[:want_count])
    np.testing.assert_allclose(boxes[0, :want_count], want_boxes[:want_count], atol=1e-5)
    ops = op_histogram(interpreter)
    assert ("TFLite_Detection_PostProcess" in ops) == (postprocess == "custom_op")
    assert ("TOPK_V2" in ops) == (postprocess == "builtin_nms" or op_top_k > 0)
    assert not any(op.startswith("Flex") for op in ops)


def test_custom_op_boxes_are_clipped_to_the_image():
    """Boxes that cross the image edges come out clipped to [0, 1], as automl's global mode
    (and the builtin ending) clip after NMS: every consumer then reads the same boxes."""
    rng = np.random.default_rng(3)
    anchors = generate_anchors(tiny_spec().anchor_spec((SIZE, SIZE)))
    regressions = rng.normal(0.0, 0.15, (anchors.shape[0], 4)).astype("float32")
    regressions[:, 2:] += 1.0  # boxes e times their anchor: many cross the edges
    logits = rng.normal(-4.0, 2.0, (anchors.shape[0], NUM_CLASSES)).astype("float32")
    image = keras.Input((SIZE, SIZE, 3), batch_size=1)
    model = keras.Model(image, FixedHead(logits, regressions)(image), name="crossing")
    model.image_size = (SIZE, SIZE)
    model.anchor_spec = lambda: tiny_spec().anchor_spec((SIZE, SIZE))
    payload = convert_detector(model, "float32",
                               options=PostprocessOptions(score_threshold=THRESHOLD))
    boxes, classes, scores, count = run(interpreter_for(payload),
                                        np.zeros((1, SIZE, SIZE, 3), "float32"))
    n = int(count[0])
    want_boxes, want_scores, want_classes, want_count = our_detections(logits, regressions)
    unclipped = decode_boxes(regressions, anchors)[np.argsort(-logits.max(axis=-1))[:n]]
    assert np.sum((unclipped < 0) | (unclipped > SIZE)) > 10  # the test's premise
    assert n == want_count > 20
    assert boxes[0, :n].min() == 0.0 and boxes[0, :n].max() == 1.0
    np.testing.assert_allclose(scores[0, :n], want_scores[:n], atol=1e-5)
    np.testing.assert_array_equal(classes[0, :n].astype(int), want_classes[:n])
    np.testing.assert_allclose(boxes[0, :n], want_boxes[:n], atol=1e-5)


def test_raw_export_and_anchors_file_decode_like_keras(fixed_detector, tmp_path):
    model, logits, regressions = fixed_detector
    payload = convert_detector(model, options=PostprocessOptions("none"))
    interpreter = interpreter_for(payload)
    assert [d["name"] for d in interpreter.get_output_details()] == ["box_encodings",
                                                                      "class_scores"]
    encodings, scores = run(interpreter, np.zeros((1, SIZE, SIZE, 3), "float32"))
    np.testing.assert_allclose(scores[0], 1 / (1 + np.exp(-logits)), atol=1e-6)
    path = write_anchors_csv(model, tmp_path / "anchors.csv")
    with open(path) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["yc", "xc", "h", "w"]
    anchors = np.asarray(rows[1:], dtype="float32")
    np.testing.assert_allclose(anchors, export_anchors(model), atol=1e-6)
    yc = encodings[0, :, 0] * anchors[:, 2] + anchors[:, 0]
    h = np.exp(encodings[0, :, 2]) * anchors[:, 2]
    corner = decode_boxes(regressions, generate_anchors(tiny_spec().anchor_spec((SIZE, SIZE))))
    np.testing.assert_allclose((yc - h / 2) * SIZE, corner[:, 0], atol=1e-3)


def test_int8_detector_is_integer_up_to_the_postprocess_tail(tiny_detector, tmp_path):
    images = [np.random.default_rng(i).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
              for i in range(4)]
    payload = convert_detector(tiny_detector, "int8", representative=images,
                               input_type="uint8")
    interpreter = interpreter_for(payload)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_input_details()[0]["quantization"] == (1 / 128, 127)  # Lite folded
    assert [d["name"] for d in interpreter.get_output_details()] == list(DETECTION_OUTPUTS)
    for detail in interpreter.get_tensor_details():
        assert all(int(d) > 0 for d in detail["shape_signature"]) or not len(
            detail["shape_signature"]), detail["name"]
    path = tmp_path / "det.tflite"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="CompiledModel cannot run"):
        load_runtime(path, "compiled_model")  # the custom op's outputs cannot be allocated
    report = edgetpu_report(payload)
    on_cpu = [(op.op, op.reason) for op in report.ops if not op.mapped]
    # The boxes' clip to [0, 1] after the op stays float (no QUANTIZE after the op).
    assert [op for op, _ in on_cpu] == ["DEQUANTIZE", "DEQUANTIZE", "CUSTOM", "MINIMUM",
                                        "RELU"], report.table()
    ops = op_histogram(interpreter)
    assert "TILE" not in ops and "GATHER" not in ops and "BROADCAST_TO" not in ops
    boxes, _classes, _scores, count = run(interpreter, images[0])
    assert boxes.shape == (1, 100, 4) and 0 <= int(count[0]) <= 100


def test_uint8_detector_takes_the_bytes_as_they_are():
    """Calibrated on images no brighter than 60, the uint8 input is still scale 1/128 / zero
    point 127 (Lite's normalization folded in), and the bytes fed as they are give the Keras
    head outputs on the same pixels (with the calibrated range, byte q would be read as pixel
    q / 4.25)."""
    keras.utils.set_random_seed(0)
    detector = EfficientDet(tiny_spec(), num_classes=NUM_CLASSES)
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 60, (1, SIZE, SIZE, 3)).astype("float32") for _ in range(8)]
    payload = convert_detector(detector, "int8", options=PostprocessOptions("none"),
                               representative=images, input_type="uint8")
    interpreter = interpreter_for(payload)
    detail = interpreter.get_input_details()[0]
    assert detail["dtype"] == np.uint8 and detail["quantization"] == (1 / 128, 127)
    pixels = np.round(rng.uniform(0, 60, (1, SIZE, SIZE, 3))).astype("uint8")
    interpreter.set_tensor(detail["index"], pixels)
    interpreter.invoke()
    encodings, scores = (interpreter.get_tensor(d["index"])
                         for d in interpreter.get_output_details())
    want = detector(pixels.astype("float32"))
    np.testing.assert_allclose(encodings, np.asarray(want["box_regression"]), atol=2e-3)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-np.asarray(want["class_logits"]))),
                               atol=5e-3)


def test_bad_detector_exports(tiny_detector):
    with pytest.raises(ValueError, match="postprocess must be one of"):
        PostprocessOptions("soft_nms")
    with pytest.raises(ValueError, match="iou_threshold"):
        PostprocessOptions(iou_threshold=0.0)
    classifier_like = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="not a raw EfficientDet"):
        convert_detector(classifier_like)
    with pytest.raises(ValueError, match="Representative image 0 has shape"):
        convert_detector(tiny_detector, "int8",
                         representative=[np.zeros((1, 32, 32, 3), "float32")])


@pytest.mark.parametrize(("quantization", "atol"), [("float16", 0.02), ("dynamic", 0.05)])
def test_float16_and_dynamic_detector_exports_match_keras(tiny_detector, quantization, atol):
    image = np.random.default_rng(7).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    payload = convert_detector(tiny_detector, quantization,
                               options=PostprocessOptions("none"))
    encodings, scores = run(interpreter_for(payload), image)
    expected = tiny_detector.predict(image, verbose=0)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-expected["class_logits"])), atol=atol)
    np.testing.assert_allclose(encodings, expected["box_regression"], atol=atol * 10)


def test_builtin_nms_export_reproduces_automl_global_hard_nms():
    """The builtin-NMS ending, converted and run in LiteRT, gives automl's
    ``postprocess_global`` (hard NMS, score threshold -inf as automl's TFLite export) on the
    golden head outputs (tests/detection/golden/automl_postprocess.npz, image 0). (The custom
    op gives it too, clipped: measured 100/100, max |Δ| 2.1e-7.)"""
    postprocess, top_k = "builtin_nms", 5000
    from pathlib import Path

    from keras_efficient.configs.anchors import AnchorSpec

    golden = np.load(Path(__file__).resolve().parents[1] / "detection" / "golden"
                     / "automl_postprocess.npz")
    spec = AnchorSpec(image_size=(64, 96), min_level=3, max_level=6)
    image = keras.Input((64, 96, 3), batch_size=1)
    model = keras.Model(image, FixedHead(golden["class_logits"][0],
                                         golden["box_regression"][0])(image), name="golden")
    model.image_size = (64, 96)
    model.anchor_spec = lambda: spec
    options = PostprocessOptions(postprocess, score_threshold=float("-inf"),
                                 pre_nms_top_k=top_k or 1)
    interpreter = interpreter_for(convert_detector(model, "float32", options=options))
    boxes, classes, scores, count = run(interpreter, np.zeros((1, 64, 96, 3), "float32"))
    key = f"global_hard_{top_k}"
    want = (golden[f"{key}_boxes"][0] / golden["image_scales"][0]
            / np.asarray([64, 96, 64, 96], "float32"))
    assert int(count[0]) == 100
    np.testing.assert_array_equal(np.round(classes[0]) + 1, golden[f"{key}_classes"][0])
    np.testing.assert_allclose(scores[0], golden[f"{key}_scores"][0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(boxes[0], want, rtol=0, atol=1e-6)  # measured max |Δ| 2.1e-7


def test_network_ending_is_the_heads_per_level_and_nothing_more(tiny_detector):
    """automl's network-only export: per-level raw outputs, no sigmoid/flatten/concatenation
    after the heads; flattened in order they are the detector's own outputs."""
    image = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    payload = convert_detector(tiny_detector, "float32", options=PostprocessOptions("network"))
    interpreter = interpreter_for(payload)
    names = [d["name"] for d in interpreter.get_output_details()]
    assert names == [f"class_logits_p{level}" for level in (3, 4, 5)] + [
        f"box_regression_p{level}" for level in (3, 4, 5)]
    ops = op_histogram(interpreter)
    assert "LOGISTIC" not in ops and "RESIZE_NEAREST_NEIGHBOR" not in ops
    logits, regressions = flatten_network_outputs(run(interpreter, image))
    want = tiny_detector(image)
    np.testing.assert_allclose(logits, np.asarray(want["class_logits"]), atol=1e-4)
    np.testing.assert_allclose(regressions, np.asarray(want["box_regression"]), atol=1e-4)
    # EdgeTPU exports keep RESIZE_NEAREST_NEIGHBOR (it maps there): asserted on the edgetpu
    # export of tests/export/test_pipeline.py.
