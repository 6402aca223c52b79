"""Real consumers: MediaPipe Tasks runs our int8 exports (with Task Library metadata) as an
Android app would, and returns what LiteRT and our own decoding return when fed the same way
(the image stretched to the input size, raw uint8 bytes)."""

import numpy as np
import pytest

mp = pytest.importorskip("mediapipe")
pytest.importorskip("tensorflow_lite_support.metadata.metadata_schema_py_generated")

from mediapipe.tasks.python import BaseOptions, vision  # noqa: E402

from keras_efficient.export.runtime import load_interpreter, run  # noqa: E402
from tests.harness import CONSUMER_CLASS_NAMES as CLASS_NAMES  # noqa: E402
from tests.harness import CONSUMER_LABELS as LABELS  # noqa: E402
from tests.harness import CONSUMER_SIZE as SIZE  # noqa: E402
from tests.harness import (  # noqa: E402
    assert_same_detections,
    consumer_classifier_export,
    consumer_detector_export,
    our_stretched_detections,
)


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
    path = tmp_path_factory.mktemp("consumers") / "detector.tflite"
    path.write_bytes(consumer_detector_export())
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


def test_mediapipe_object_detector_returns_our_detections(detector_file):
    for pixels in sample_images():
        theirs = mediapipe_detections(detector_file, pixels)
        ours = our_stretched_detections(detector_file, pixels, LABELS)
        assert len(ours) == 100 and len(theirs) == len(ours), pixels.shape
        # MediaPipe truncates each box's origin and size to whole pixels, so its far edges are
        # within 2 px of ours.
        assert_same_detections(theirs, ours, low=[0.0] * 4, high=[1.0] * 4)
        height, width = pixels.shape[:2]  # boxes reach the far edges: the stretch is undone
        assert (ours[:, 0] + ours[:, 2]).max() > width - 1 and (ours[:, 1] + ours[:, 3]).max(
        ) > height - 1


def test_mediapipe_image_classifier_returns_our_scores(tmp_path):
    path = tmp_path / "classifier.tflite"
    path.write_bytes(consumer_classifier_export())
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
