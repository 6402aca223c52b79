"""The SavedModel's in-graph resize geometry equals data.transforms' (issue 14: one rule)."""

import numpy as np
import tensorflow as tf

from keras_efficient.data.transforms import PAD_VALUE, image_info, letterbox_geometry
from keras_efficient.export import saved_model as saved_model_module

SHAPES = [(50, 90), (90, 50), (30, 20), (1, 300), (128, 3), (128, 5), (64, 64), (63, 200),
          (200, 63), (7, 7)]


def test_saved_model_geometry_equals_transforms():
    size = (64, 64)
    # Traced as the serving signature traces it: any batch, height, width.
    serve = tf.function(lambda images: saved_model_module._fit_to_input(images, size),
                        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    for height, width in SHAPES:
        images = np.full((2, height, width, 3), 255, "uint8")
        padded, info = (t.numpy() for t in serve(tf.constant(images)))
        scale, new_h, new_w = letterbox_geometry(height, width, size)
        np.testing.assert_array_equal(info, np.stack([image_info(images[0], scale)] * 2))
        covered = padded[0, :, :, 0] != PAD_VALUE
        rows, cols = np.nonzero(covered)
        assert (rows.max() + 1, cols.max() + 1) == (new_h, new_w), (height, width)
        assert covered[:new_h, :new_w].all() and not covered[new_h:].any()
        assert not covered[:, new_w:].any()
