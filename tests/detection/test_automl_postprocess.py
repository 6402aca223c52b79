"""Post-processing identical to google/automl's (issue 10): ``postprocess_global`` and
``postprocess_per_class`` on the same head outputs give the same top-100 detections.

``golden/automl_postprocess.npz`` holds fixed random head outputs for a small non-square
config (64 × 96 input, P3–P6, 6 classes, batch 2) and automl's own outputs for them, recorded
once by ``golden/make_automl_postprocess_golden.py`` (hard and gaussian NMS, ``max_nms_inputs``
0 and 5000; automl's class ids are ours + 1, its boxes already multiplied by the image scale).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.detection.anchors import generate_anchors, normalized_center_size
from keras_efficient.detection.inference import (
    AUTOML_NMS,
    ToOriginalPixels,
    default_nms_method,
    inference_model,
)
from keras_efficient.detection.postprocess import (
    NonMaxSuppression,
    builtin_nms_detections,
    map_boxes_to_original,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "automl_postprocess.npz"
SPEC = AnchorSpec(image_size=(64, 96), min_level=3, max_level=6)
CASES = [(mode, method, k) for mode in ("global", "per_class")
         for method in ("hard", "gaussian") for k in (0, 5000)]


def ours(golden, mode: str, method: str, k: int, clip: str | None = None) -> list[np.ndarray]:
    """Our layer with automl's settings for ``method``, boxes mapped to original pixels."""
    layer = NonMaxSuppression.from_anchor_spec(
        SPEC, mode=mode, method="soft" if method == "gaussian" else "hard",
        pre_nms_top_k=k or None, soft_nms_sigma=0.5, iou_threshold=0.5, clip=clip,
        # automl: score_thresh 0. -> 0.001 for gaussian, -inf for hard.
        score_threshold=0.001 if method == "gaussian" else -np.inf)
    boxes, scores, classes, count = (keras.ops.convert_to_numpy(t) for t in
                                     layer(golden["class_logits"], golden["box_regression"]))
    sizes = np.zeros((2, 2), "float32")  # unused: automl does not clip to the original image
    mapped = map_boxes_to_original(boxes, golden["network_scales"], sizes, clip=False)
    return [mapped, scores, classes, count]


def rank_agreement(mine: list[np.ndarray], want: list[np.ndarray], image: int) -> int:
    """Ranks (of the top 100) where box, score and class all agree."""
    boxes, scores, classes, _ = (m[image] for m in mine)
    want_boxes, want_scores, want_classes, _ = (w[image] for w in want)
    same = ((classes + 1 == want_classes) & (np.abs(scores - want_scores) <= 1e-6)
            & np.all(np.abs(boxes - want_boxes) <= 1e-4, axis=-1))
    return int(same.sum())


@pytest.mark.parametrize(("mode", "method", "k"), CASES)
def test_modes_reproduce_automl(mode, method, k):
    golden = np.load(GOLDEN)
    key = f"{mode}_{method}_{k}"
    want = [golden[f"{key}_{part}"] for part in ("boxes", "scores", "classes", "count")]
    mine = ours(golden, mode, method, k)
    np.testing.assert_array_equal(mine[3], want[3])
    assert [rank_agreement(mine, want, i) for i in range(2)] == [100, 100]
    # Measured: bit-identical (max |Δ| 0 for boxes and scores) on TF 2.21.
    np.testing.assert_allclose(mine[0], want[0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(mine[1], want[1], rtol=0, atol=1e-6)


def test_clipping_before_nms_is_not_automl():
    # The pre-issue-10 order (clip, then NMS) stays available but is not automl's: measured
    # 5 and 7 of 100 ranks agree here (the old code as a whole: 1 to 7 in every case above).
    golden = np.load(GOLDEN)
    want = [golden[f"global_hard_0_{part}"] for part in ("boxes", "scores", "classes", "count")]
    mine = ours(golden, "global", "hard", 0, clip="before_nms")
    assert max(rank_agreement(mine, want, i) for i in range(2)) < 50


def test_to_original_pixels_clip_is_a_switch():
    boxes = np.asarray([[[-3.0, 10.0, 70.0, 100.0]]], "float32")
    info = np.asarray([[0.5, 100.0, 150.0]], "float32")
    clipped = keras.ops.convert_to_numpy(ToOriginalPixels()(boxes, info))
    raw = keras.ops.convert_to_numpy(ToOriginalPixels(clip=False)(boxes, info))
    np.testing.assert_allclose(raw[0, 0], [-6.0, 20.0, 140.0, 200.0])
    np.testing.assert_allclose(clipped[0, 0], [0.0, 20.0, 100.0, 150.0])
    assert ToOriginalPixels.from_config(ToOriginalPixels(clip=False).get_config()).clip is False


class _Planted(keras.layers.Layer):
    """The golden's first image's head outputs, whatever the input."""

    def __init__(self, logits: np.ndarray, regressions: np.ndarray) -> None:
        super().__init__()
        self.logits, self.regressions = logits, regressions

    def call(self, image):
        zero = keras.ops.mean(image) * 0.0
        return {"class_logits": keras.ops.convert_to_tensor(self.logits)[None] + zero,
                "box_regression": keras.ops.convert_to_tensor(self.regressions)[None] + zero}


def planted_detector(golden, pretrained: str | None) -> keras.Model:
    image = keras.Input((64, 96, 3), batch_size=1)
    model = keras.Model(image, _Planted(golden["class_logits"][0],
                                        golden["box_regression"][0])(image))
    model.image_size = (64, 96)
    model.anchor_spec = lambda: SPEC
    model.pretrained = pretrained
    model.resize = "letterbox"
    return model


@pytest.mark.parametrize(("mode", "k"), [("per_class", 5000), ("global", 0)])
def test_coco_detectors_default_to_automls_modes(mode, k):
    golden = np.load(GOLDEN)
    detector = planted_detector(golden, "coco")
    assert default_nms_method(detector) == AUTOML_NMS["method"] == "soft"
    model = inference_model(detector, mode=mode, clip_to_original=False)
    nms = model.get_layer("nms")
    assert (nms.method, nms.soft_nms_sigma, nms.effective_iou_threshold, nms.score_threshold,
            nms.pre_nms_top_k or 0) == ("soft", 0.5, 0.5, 0.001, k)
    info = np.asarray([[golden["network_scales"][0], 0.0, 0.0]], "float32")
    out = model.predict([np.zeros((1, 64, 96, 3), "float32"), info], verbose=0)
    key = f"{mode}_gaussian_{k}"
    np.testing.assert_array_equal(out["classes"][0] + 1, golden[f"{key}_classes"][0])
    np.testing.assert_allclose(out["scores"][0], golden[f"{key}_scores"][0], atol=1e-6)
    np.testing.assert_allclose(out["boxes"][0], golden[f"{key}_boxes"][0], atol=1e-4)
    assert inference_model(planted_detector(golden, None)).get_layer("nms").method == "hard"


@pytest.mark.parametrize("k", [0, 5000])
def test_builtin_nms_export_ending_is_automls_global_hard_mode(k):
    import tensorflow as tf

    golden = np.load(GOLDEN)
    anchors = normalized_center_size(generate_anchors(SPEC), SPEC.image_size)
    pixels = np.asarray([64, 96, 64, 96], "float32")
    for image in range(2):
        out = builtin_nms_detections(
            tf.constant(golden["box_regression"][image:image + 1]),
            tf.sigmoid(golden["class_logits"][image:image + 1]), anchors,
            pre_nms_top_k=k or None, score_threshold=-np.inf, max_detections=100)
        want = golden[f"global_hard_{k}_boxes"][image] / golden["image_scales"][image] / pixels
        np.testing.assert_array_equal(out["detection_classes"][0].numpy() + 1,
                                      golden[f"global_hard_{k}_classes"][image])
        np.testing.assert_array_equal(out["detection_scores"][0].numpy(),
                                      golden[f"global_hard_{k}_scores"][image])
        # Decoded in normalised units, not pixels: measured max |Δ| 1.2e-7.
        np.testing.assert_allclose(out["detection_boxes"][0].numpy(), want, rtol=0, atol=1e-6)
        assert float(out["num_detections"][0]) == 100.0


def test_a_coco_detector_keeps_automls_defaults_through_save_and_load(tmp_path):
    from keras_efficient.configs.efficientdet import get_efficientdet_spec
    from keras_efficient.models.efficientdet import EfficientDetector

    spec = get_efficientdet_spec("lite0").with_(input_size=64, max_level=5, fpn_filters=16,
                                                fpn_cells=1, head_repeats=1)
    detector = EfficientDetector(spec, 3, pretrained="coco")
    path = tmp_path / "detector.keras"
    detector.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.pretrained == "coco" and default_nms_method(loaded) == "soft"
    assert EfficientDetector(spec, 3).get_config()["pretrained"] is None
    nms = inference_model(loaded, mode="global").get_layer("nms")
    assert (nms.mode, nms.method, nms.pre_nms_top_k, nms.effective_clip) == (
        "global", "soft", None, "after_nms")
