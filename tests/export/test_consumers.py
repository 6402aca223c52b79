"""Real consumers: MediaPipe Tasks runs our int8 exports (with Task Library metadata) as an
Android app would, and returns what LiteRT and our own decoding return when fed the same way
(the image stretched to the input size, raw uint8 bytes)."""

import keras
import numpy as np
import pytest

mp = pytest.importorskip("mediapipe")
pytest.importorskip("tensorflow_lite_support.metadata.metadata_schema_py_generated")

from mediapipe.tasks.python import BaseOptions, vision  # noqa: E402

from keras_efficient.batch_inference import tflite_detector  # noqa: E402
from keras_efficient.export.detector_tflite import PostprocessOptions, convert_detector  # noqa: E402
from keras_efficient.export.metadata import (  # noqa: E402
    write_classifier_metadata,
    write_detector_metadata,
)
from keras_efficient.export.runtime import load_interpreter, run  # noqa: E402
from keras_efficient.export.tflite import convert  # noqa: E402
from keras_efficient.models.efficientdet import EfficientDet  # noqa: E402
from keras_efficient.models.efficientnet import EfficientNet  # noqa: E402
from tests.harness import TINY_BACKBONE, tiny_spec  # noqa: E402

SIZE = 64
LABELS = ["circle", "square", "triangle"]
CLASS_NAMES = ["a", "b", "c", "d", "e"]


def calibration_images():
    """Dark images (pixels up to 60): a uint8 input quantized from their range would make a
    consumer that feeds raw bytes and one that applies the input scale disagree."""
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 60, (1, SIZE, SIZE, 3)).astype("float32") for _ in range(4)]


def sample_images():
    """A square image at the input size and a 64×128 one (stretched to 64×64 by the consumers).
    The wide one is constant along its rows, so that every bilinear resize (MediaPipe's and
    PIL's) gives the same bytes."""
    rng = np.random.default_rng(1)
    square = rng.integers(0, 256, (SIZE, SIZE, 3)).astype("uint8")
    wide = np.repeat(rng.integers(0, 256, (SIZE, 1, 3)), 2 * SIZE, axis=1).astype("uint8")
    return [square, wide]


def as_mp_image(pixels):
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    detector = EfficientDet(tiny_spec(), num_classes=len(LABELS))
    # The default head bias puts every score near 0.01: keep them all, 100 detections whose
    # boxes cross every edge of the image.
    options = PostprocessOptions("custom_op", score_threshold=0.0)
    payload = convert_detector(detector, "int8", options=options,
                               representative=calibration_images(), input_type="uint8")
    payload = write_detector_metadata(payload, labels=LABELS, mean=[0.0], std=[1.0],
                                      name="tiny")
    path = tmp_path_factory.mktemp("consumers") / "detector.tflite"
    path.write_bytes(payload)
    return path


def mediapipe_detections(path, pixels):
    """MediaPipe's detections as rows (x0, y0, width, height, class index, score) in pixels of
    the image. MediaPipe merges detections whose pixel boxes coincide into one with several
    categories, and leaves ``Category.index`` None when the model has a label file (its
    label-id-to-text step drops the id): each category is one row, its index from its name."""
    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(path)),
        running_mode=vision.RunningMode.IMAGE, max_results=-1, score_threshold=0.0)
    rows = []
    with vision.ObjectDetector.create_from_options(options) as detector:
        result = detector.detect(as_mp_image(pixels))
    for detection in result.detections:
        box = detection.bounding_box
        for category in detection.categories:
            assert category.index is None or LABELS[category.index] == category.category_name
            rows.append((box.origin_x, box.origin_y, box.width, box.height,
                         LABELS.index(category.category_name), category.score))
    return np.asarray(rows, dtype="float64")


def our_detections(path, pixels):
    """LiteRT and our decoding, the image stretched and fed as raw bytes (as MediaPipe does)."""
    [found] = tflite_detector(path, labels=LABELS, resize="stretch").predict_fn(
        [pixels.astype("float32")])
    y0, x0, y1, x1 = np.asarray(found["boxes"], dtype="float64").T
    return np.stack([x0, y0, x1 - x0, y1 - y0, found["classes"], found["scores"]], axis=1)


def test_mediapipe_object_detector_returns_our_detections(detector_file):
    for pixels in sample_images():
        theirs, ours = mediapipe_detections(detector_file, pixels), our_detections(
            detector_file, pixels)
        assert len(ours) == 100 and len(theirs) == len(ours), pixels.shape
        # One to one: each MediaPipe row has a row of ours with its class and score, and a box
        # whose origin and size MediaPipe truncated to whole pixels (so its far edges are
        # within 2 px of ours); ties of score are common in int8.
        unused = list(range(len(ours)))
        for row in theirs:
            same = [i for i in unused
                    if ours[i, 4] == row[4] and abs(ours[i, 5] - row[5]) < 1e-6]
            assert same, f"no detection of ours with class {row[4]} and score {row[5]}"
            best = min(same, key=lambda i: np.abs(ours[i, :4] - row[:4] - 0.5).max())
            assert np.all(np.abs(ours[best, :4] - row[:4] - 0.5) <= 0.5 + 1e-3), (row, ours[best])
            unused.remove(best)
        height, width = pixels.shape[:2]  # boxes reach the far edges: the stretch is undone
        assert (ours[:, 0] + ours[:, 2]).max() > width - 1 and (ours[:, 1] + ours[:, 3]).max(
        ) > height - 1


def test_mediapipe_image_classifier_returns_our_scores(tmp_path):
    keras.utils.set_random_seed(0)
    model = EfficientNet(TINY_BACKBONE, weights=None, classes=len(CLASS_NAMES),
                         input_shape=(SIZE, SIZE, 3))
    payload = convert(model, "int8", representative=calibration_images(), input_type="uint8")
    path = tmp_path / "classifier.tflite"
    path.write_bytes(write_classifier_metadata(payload, labels=CLASS_NAMES, mean=[0.0],
                                               std=[1.0], name="tiny"))
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(path)),
        running_mode=vision.RunningMode.IMAGE, max_results=-1)
    interpreter = load_interpreter(path)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for pixels in sample_images():
            [head] = classifier.classify(as_mp_image(pixels)).classifications
            theirs = np.zeros(len(CLASS_NAMES))
            for category in head.categories:
                assert CLASS_NAMES[category.index] == category.category_name
                theirs[category.index] = category.score
            # The wide image is constant along its rows: stretched, it is its first 64 columns.
            [ours] = run(interpreter, pixels[None, :, :SIZE].astype("float32"))
            np.testing.assert_allclose(theirs, ours[0], atol=1e-6)
            assert int(np.argmax(theirs)) == int(np.argmax(ours[0]))
