"""Property tests: box coding round trip, zero regressions, NMS against a numpy reference."""

import keras
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.detection.anchors import generate_anchors
from keras_efficient.detection.box_coding import decode_boxes, encode_boxes, iou_matrix
from keras_efficient.detection.postprocess import NonMaxSuppression, select_candidates

coordinate = st.floats(min_value=-500, max_value=500, allow_nan=False, width=32)
extent = st.floats(min_value=1, max_value=400, allow_nan=False, width=32)


BOX_COUNT = st.integers(1, 16)


@st.composite
def boxes(draw, count=BOX_COUNT):
    n = draw(count)
    y = np.array(draw(st.lists(coordinate, min_size=n, max_size=n)), "float32")
    x = np.array(draw(st.lists(coordinate, min_size=n, max_size=n)), "float32")
    h = np.array(draw(st.lists(extent, min_size=n, max_size=n)), "float32")
    w = np.array(draw(st.lists(extent, min_size=n, max_size=n)), "float32")
    return np.stack([y, x, y + h, x + w], axis=-1)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_encode_decode_round_trip(data):
    targets = data.draw(boxes())
    anchors = data.draw(boxes(count=st.just(len(targets))))
    decoded = decode_boxes(encode_boxes(targets, anchors), anchors)
    np.testing.assert_allclose(decoded, targets, atol=2e-3 * max(1.0, np.abs(targets).max()))


def test_decode_of_zero_regressions_returns_the_anchors():
    anchors = generate_anchors(AnchorSpec(image_size=(320, 320)))
    decoded = decode_boxes(np.zeros_like(anchors), anchors)
    np.testing.assert_allclose(decoded, anchors, atol=1e-4)


def numpy_greedy_nms(boxes_: np.ndarray, scores: np.ndarray, iou_threshold: float,
                     score_threshold: float, limit: int) -> list[int]:
    """The textbook algorithm: take the best remaining box, drop those overlapping it."""
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > score_threshold]
    ious = iou_matrix(boxes_, boxes_)
    keep: list[int] = []
    for i in order:
        if all(ious[i, j] <= iou_threshold for j in keep):
            keep.append(int(i))
        if len(keep) == limit:
            break
    return keep


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_hard_nms_matches_numpy_reference_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    spec = AnchorSpec(image_size=(64, 64), min_level=5, max_level=5)  # 2x2 cells x 9 = 36
    anchors = generate_anchors(spec)
    regressions = rng.normal(0, 0.3, (1, len(anchors), 4)).astype("float32")
    logits = rng.normal(0, 2, (1, len(anchors), 1)).astype("float32")
    layer = NonMaxSuppression.from_anchor_spec(spec, max_detections=10, iou_threshold=0.5,
                                               score_threshold=0.3, pre_nms_top_k=None)
    out_boxes, out_scores, _, count = (keras.ops.convert_to_numpy(t)
                                       for t in layer(logits, regressions))
    decoded = decode_boxes(regressions[0], anchors)  # per-class mode: automl does not clip
    scores = 1 / (1 + np.exp(-logits[0, :, 0]))
    expected = numpy_greedy_nms(decoded, scores, 0.5, 0.3, 10)
    assert int(count[0]) == len(expected)
    np.testing.assert_allclose(out_scores[0, :len(expected)], scores[expected], rtol=1e-5)
    np.testing.assert_allclose(out_boxes[0, :len(expected)], decoded[expected], atol=1e-3)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.sampled_from([5, 17, 36, 100]))
def test_class_aware_candidates_equal_brute_force_top_k(seed, k):
    rng = np.random.default_rng(seed)
    spec = AnchorSpec(image_size=(64, 64), min_level=5, max_level=5)  # 36 anchors
    logits = rng.normal(0, 2, (2, spec.num_anchors, 4)).astype("float32")
    anchors, classes, values = (keras.ops.convert_to_numpy(t)
                                for t in select_candidates(logits, k))
    scores = 1 / (1 + np.exp(-values))
    flat = logits.reshape(2, -1)
    for b in range(2):
        best = np.argsort(-flat[b], kind="stable")[:k]
        np.testing.assert_allclose(scores[b], 1 / (1 + np.exp(-flat[b][best])), rtol=1e-6)
        assert sorted(zip(anchors[b], classes[b], strict=True)) == sorted(
            zip(best // 4, best % 4, strict=True))
