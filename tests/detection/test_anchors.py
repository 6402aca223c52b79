"""Anchor spec and anchor generation against REFERENCE §2.1/§2.2/§2.5."""

import subprocess
import sys

import numpy as np
import pytest

from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.detection.anchors import (
    anchors_center_size,
    generate_anchors,
    normalized_center_size,
)

# variant: (input size, anchor scale, max level, published anchor count)
VARIANTS = {
    "D0": (512, 4.0, 7, 49_104),
    "D1": (640, 4.0, 7, 76_725),
    "D2": (768, 4.0, 7, 110_484),
    "D3": (896, 4.0, 7, 150_381),
    "D4": (1024, 4.0, 7, 196_416),
    "D5": (1280, 4.0, 7, 306_900),
    "D6": (1280, 4.0, 7, 306_900),
    "D7": (1536, 5.0, 7, 441_936),
    "D7x": (1536, 4.0, 8, 442_260),
    "Lite0": (320, 3.0, 7, 19_206),
    "Lite1": (384, 3.0, 7, 27_621),
    "Lite2": (448, 3.0, 7, 37_629),
    "Lite3": (512, 4.0, 7, 49_104),
    "Lite3x": (640, 3.0, 7, 76_725),
    "Lite4": (640, 4.0, 7, 76_725),
}


def spec_for(variant: str) -> AnchorSpec:
    size, scale, max_level, _ = VARIANTS[variant]
    return AnchorSpec(image_size=(size, size), max_level=max_level, anchor_scale=scale)


def test_anchor_spec_does_not_load_tensorflow():
    code = ("import sys, keras_efficient.configs.anchors; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_anchor_counts(variant):
    spec = spec_for(variant)
    anchors = generate_anchors(spec)
    assert spec.num_anchors == VARIANTS[variant][3]
    assert anchors.shape == (spec.num_anchors, 4)
    assert anchors.dtype == np.float32


def test_feature_sizes_round_up():
    spec = AnchorSpec(image_size=(320, 320))
    assert spec.feature_sizes() == ((40, 40), (20, 20), (10, 10), (5, 5), (3, 3))
    assert AnchorSpec(image_size=(1536, 1536), max_level=8).feature_sizes()[-1] == (6, 6)
    assert AnchorSpec(image_size=(100, 60), min_level=1, max_level=3).feature_sizes() == (
        (50, 30), (25, 15), (13, 8))


def test_spec_normalises_and_validates():
    spec = AnchorSpec(image_size=512)  # type: ignore[arg-type]
    assert spec.image_size == (512, 512)
    assert spec.anchors_per_location == 9
    assert spec.levels == (3, 4, 5, 6, 7)
    assert AnchorSpec(image_size=[512, 512]) == spec  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AnchorSpec(image_size=(512, 512), min_level=4, max_level=3)
    with pytest.raises(ValueError):
        AnchorSpec(image_size=(0, 512))


def test_d0_anchor_values():
    anchors = generate_anchors(spec_for("D0"))
    np.testing.assert_allclose(anchors[0], [-12, -12, 20, 20], atol=1e-3)
    np.testing.assert_allclose(anchors[1], [-7.314, -18.627, 15.314, 26.627], atol=1e-3)
    np.testing.assert_allclose(anchors[2], [-18.627, -7.314, 26.627, 15.314], atol=1e-3)
    # Octave 1 (index 3): base 32 · 2^(1/3).
    side = 32 * 2 ** (1 / 3)
    np.testing.assert_allclose(anchors[3], [4 - side / 2, 4 - side / 2, 4 + side / 2, 4 + side / 2],
                               atol=1e-3)
    first_p7 = 9 * (64 * 64 + 32 * 32 + 16 * 16 + 8 * 8)
    np.testing.assert_allclose(anchors[first_p7], [-192, -192, 320, 320], atol=1e-3)


def test_anchor_order_is_level_row_column_anchor():
    spec = spec_for("D0")
    centers = anchors_center_size(generate_anchors(spec))
    # P3 is 64 × 64 with stride 8: next column, then next row.
    np.testing.assert_allclose(centers[9, :2], [4, 12])
    np.testing.assert_allclose(centers[9 * 64, :2], [12, 4])
    # All 9 anchors of a location share the centre.
    np.testing.assert_allclose(centers[:9, :2], np.full((9, 2), 4.0))


def test_non_square_and_uneven_strides():
    spec = AnchorSpec(image_size=(320, 512), min_level=7, max_level=7, anchor_scale=1.0)
    centers = anchors_center_size(generate_anchors(spec))
    stride_y, stride_x = 320 / 3, 512 / 4
    assert centers.shape == (3 * 4 * 9, 4)
    np.testing.assert_allclose(centers[0], [stride_y / 2, stride_x / 2, stride_y, stride_x],
                               rtol=1e-6)
    last_row_col = centers[-1, :2]
    np.testing.assert_allclose(last_row_col, [stride_y * 2.5, stride_x * 3.5], rtol=1e-6)


def test_d7_uses_its_anchor_scale():
    anchors = generate_anchors(spec_for("D7"))
    np.testing.assert_allclose(anchors[0], [-16, -16, 24, 24], atol=1e-3)


def test_normalized_center_size_for_tflite():
    anchors = generate_anchors(spec_for("D0"))
    normalized = normalized_center_size(anchors, 512)
    assert normalized.dtype == np.float32 and normalized.shape == anchors.shape
    np.testing.assert_allclose(normalized[0], np.array([4, 4, 32, 32]) / 512, rtol=1e-6)
    rect = normalized_center_size(anchors[:2], (256, 1024))
    np.testing.assert_allclose(rect[1], [4 / 256, 4 / 1024, 22.627417 / 256, 45.254834 / 1024],
                               rtol=1e-5)
