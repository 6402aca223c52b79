"""Data: COCO reading, tf.data pipelines, synthetic datasets, transforms. Never imports model code.

Modules (import them directly; this package re-exports nothing, so that ``transforms`` stays
free of TensorFlow): ``transforms`` (inference preprocessing), ``visualize`` (drawing), ``coco``
(validated COCO records, label map), ``pipeline`` (detection ``tf.data``), ``classification``
(image folders), ``synthetic`` (generated datasets), ``representative`` (quantization samples).
"""
