"""Record google/automl's own pre- and post-processing outputs as goldens for our tests.

Run once, with an automl checkout (its code never enters this repository)::

    KERAS_EFFICIENT_AUTOML_DIR=/path/to/automl \
        python tests/detection/golden/make_automl_postprocess_golden.py

It imports ``efficientdet/tf2/postprocess.py`` and ``efficientdet/dataloader.py`` from that
checkout and writes, next to this script:

* ``automl_postprocess.npz``: fixed random head outputs (seeded) for a small non-square config,
  and what ``postprocess_global`` / ``postprocess_per_class`` return for them with hard and
  gaussian (soft) NMS and ``max_nms_inputs`` 0 and 5000 (keys ``{mode}_{method}_{k}_boxes``,
  ``..._scores``, ``..._classes``, ``..._count``);
* ``automl_preprocess.npz``: raw uint8 images and automl's inference preprocessing of them
  (``DetectionInputProcessor``: normalize, ``set_scale_factors_to_output_size``,
  ``resize_and_crop_image``) for the D and Lite normalizations, with the image scale.

Without the environment variable it says so and exits (the goldens are committed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# The post-processing config: small, non-square, several classes (automl's hparams names).
IMAGE_SIZE = (64, 96)
MIN_LEVEL, MAX_LEVEL, NUM_SCALES, ASPECT_RATIOS, ANCHOR_SCALE = 3, 6, 3, (1.0, 2.0, 0.5), 4.0
NUM_CLASSES = 6
BATCH = 2
# Network pixels per original pixel (our image_info scale); automl's image_scales are their
# float32 inverses, as its dataloader's image_scale_to_original computes them.
NETWORK_SCALES = np.asarray((2 / 3, 1.25), "float32")
IMAGE_SCALES = np.float32(1.0) / NETWORK_SCALES
SEED = 20261204

# Preprocessing cases: (name, image height, width, output size, mean_rgb, stddev_rgb).
IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]
PREPROCESS_CASES = (
    ("d_shrink", 50, 90, (64, 64), IMAGENET_MEAN, IMAGENET_STD),
    ("lite_tall", 61, 30, (40, 56), [127.0] * 3, [128.0] * 3),
    ("d_grow", 23, 31, (64, 48), IMAGENET_MEAN, IMAGENET_STD),
    ("lite_odd", 128, 3, (64, 64), [127.0] * 3, [128.0] * 3),
)


def head_outputs() -> tuple[np.ndarray, np.ndarray]:
    """Flat ``[B, N, C]`` class logits and ``[B, N, 4]`` box regressions, seeded."""
    rng = np.random.default_rng(SEED)
    height, width = IMAGE_SIZE
    num_anchors = 0
    for level in range(MIN_LEVEL, MAX_LEVEL + 1):
        h, w = height, width
        for _ in range(level):
            h, w = (h + 1) // 2, (w + 1) // 2
        num_anchors += h * w * NUM_SCALES * len(ASPECT_RATIOS)
    logits = rng.normal(-3.0, 2.0, (BATCH, num_anchors, NUM_CLASSES)).astype("float32")
    regressions = rng.normal(0.0, 0.5, (BATCH, num_anchors, 4)).astype("float32")
    return logits, regressions


def params(method: str, max_nms_inputs: int) -> dict:
    return {
        "image_size": IMAGE_SIZE, "min_level": MIN_LEVEL, "max_level": MAX_LEVEL,
        "num_scales": NUM_SCALES, "aspect_ratios": list(ASPECT_RATIOS),
        "anchor_scale": ANCHOR_SCALE, "num_classes": NUM_CLASSES,
        "data_format": "channels_last",
        # automl's default nms_configs, with the method and pre-NMS selection varied.
        "nms_configs": {"method": method, "iou_thresh": None, "score_thresh": 0.0,
                        "sigma": None, "pyfunc": False, "max_nms_inputs": max_nms_inputs,
                        "max_output_size": 100},
    }


def record_postprocess(postprocess, tf) -> dict[str, np.ndarray]:
    logits, regressions = head_outputs()
    out: dict[str, np.ndarray] = {"class_logits": logits, "box_regression": regressions,
                                  "network_scales": NETWORK_SCALES,
                                  "image_scales": IMAGE_SCALES}
    for mode, fn in (("global", postprocess.postprocess_global),
                     ("per_class", postprocess.postprocess_per_class)):
        for method in ("hard", "gaussian"):
            for k in (0, 5000):
                boxes, scores, classes, count = run_automl(fn, params(method, k), logits,
                                                           regressions, tf)
                key = f"{mode}_{method}_{k}"
                out[f"{key}_boxes"] = boxes
                out[f"{key}_scores"] = scores
                out[f"{key}_classes"] = classes
                out[f"{key}_count"] = count
    return out


def run_automl(fn, p, logits, regressions, tf):
    """Run automl's ``fn`` with its real per-level outputs (reshaped from our flat order)."""
    height, width = IMAGE_SIZE
    cls, box, start = [], [], 0
    per_location = NUM_SCALES * len(ASPECT_RATIOS)
    for level in range(MIN_LEVEL, MAX_LEVEL + 1):
        h, w = height, width
        for _ in range(level):
            h, w = (h + 1) // 2, (w + 1) // 2
        n = h * w * per_location
        cls.append(tf.constant(logits[:, start:start + n].reshape(BATCH, h, w, -1)))
        box.append(tf.constant(regressions[:, start:start + n].reshape(BATCH, h, w, -1)))
        start += n
    result = fn(p, cls, box, tf.constant(IMAGE_SCALES, tf.float32))
    return tuple(np.asarray(t) for t in result)


def record_preprocess(dataloader, tf) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED + 1)
    out: dict[str, np.ndarray] = {}
    for name, height, width, size, mean, std in PREPROCESS_CASES:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        processor = dataloader.DetectionInputProcessor(tf.constant(image), size)
        processor.normalize_image(mean, std)
        processor.set_scale_factors_to_output_size()
        processed = processor.resize_and_crop_image()
        out[f"{name}_image"] = image
        out[f"{name}_size"] = np.asarray(size, "int32")
        out[f"{name}_mean"] = np.asarray(mean, "float32")
        out[f"{name}_std"] = np.asarray(std, "float32")
        out[f"{name}_output"] = np.asarray(processed, "float32")
        out[f"{name}_scale"] = np.asarray(processor.image_scale, "float32")
    return out


def main() -> int:
    root = os.environ.get("KERAS_EFFICIENT_AUTOML_DIR")
    if not root:
        print("Set KERAS_EFFICIENT_AUTOML_DIR to a google/automl checkout to regenerate the "
              "goldens; the committed ones are used otherwise.")
        return 0
    sys.path.insert(0, str(Path(root) / "efficientdet"))
    import dataloader  # automl's, from the checkout
    import tensorflow as tf
    from tf2 import postprocess

    np.savez_compressed(HERE / "automl_postprocess.npz", **record_postprocess(postprocess, tf))
    np.savez_compressed(HERE / "automl_preprocess.npz", **record_preprocess(dataloader, tf))
    print(f"wrote {HERE / 'automl_postprocess.npz'} and {HERE / 'automl_preprocess.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
