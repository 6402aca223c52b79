"""EfficientDet → TFLite with the detection post-processing its consumer expects.

Four choices (``postprocess``):

* ``"network"``: the network alone, per level and raw (``class_logits_p3`` ``[1, H3, W3, A·C]``
  ..., ``box_regression_p3`` ``[1, H3, W3, A·4]`` ...; no sigmoid, reshape or concatenation),
  as automl's network-only export; for apps that do everything after the heads themselves;
* ``"none"``: the network's raw outputs, ``box_encodings`` ``[1, N, 4]`` (ty, tx, th, tw) and
  ``class_scores`` ``[1, N, C]`` (sigmoid applied), plus an anchors file
  (:func:`write_anchors_csv`) for apps that decode and run NMS themselves;
* ``"builtin_nms"``: automl's global mode with hard NMS (pre-NMS selection, box decoding,
  TFLite's builtin ``NON_MAX_SUPPRESSION_V5``, clip after NMS), with no custom op at all;
* ``"custom_op"``: the ``TFLite_Detection_PostProcess`` custom op (REFERENCE §3.1) that the
  Android Task Library ``ObjectDetector``, MediaPipe and Coral's examples consume.

Every ending lives in :mod:`keras_efficient.detection.postprocess`
(:func:`~keras_efficient.detection.postprocess.builtin_nms_detections`,
:func:`~keras_efficient.detection.postprocess.tflite_detection_postprocess`); this module only
selects one and converts.

The last two give the same four outputs, in the order those consumers read them: boxes
``[1, D, 4]`` (ymin, xmin, ymax, xmax) normalised to the network input, classes ``[1, D]``
(0-based, float), scores ``[1, D]`` and the count ``[1]``. The converter orders the outputs by
name and puts the count first, so the flatbuffer's output list is rewritten afterwards
(:func:`reorder_outputs`), and the output tensors are given the signature's names.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from keras_efficient.detection.anchors import generate_anchors, normalized_center_size
from keras_efficient.detection.postprocess import (
    TFLITE_CUSTOM_OP,
    builtin_nms_detections,
    per_level_network,
    per_level_outputs,
    tflite_custom_op_signature,
    tflite_detection_postprocess,
)
from keras_efficient.export.qat_tflite import convert_quantization_aware
from keras_efficient.export.tflite import (
    check_options,
    check_representative,
    convert_saved_model,
    lowering_for,
    static_input_shape,
)
from keras_efficient.files import write_bytes_atomic
from keras_efficient.layers.resample import upsample_lowering

POSTPROCESS = ("network", "none", "builtin_nms", "custom_op")
CUSTOM_OP_NAME = TFLITE_CUSTOM_OP
DETECTION_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores",
                     "num_detections")
RAW_OUTPUTS = ("box_encodings", "class_scores")


@dataclasses.dataclass(frozen=True)
class PostprocessOptions:
    """Settings of the exported post-processing.

    ``score_threshold`` is the main latency lever of the custom op: every anchor whose best
    score reaches it enters NMS (the reference export uses −inf, so all 19,206 anchors of
    Lite0 do). ``pre_nms_top_k`` caps the candidates of ``"builtin_nms"`` (the top (anchor,
    class) pairs, automl's ``max_nms_inputs``).

    Example::

        options = PostprocessOptions(postprocess="builtin_nms", score_threshold=0.3)
        payload = convert_detector(detector, "float32", options=options)
    """

    postprocess: str = "custom_op"
    max_detections: int = 100
    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    pre_nms_top_k: int = 1000
    op_top_k: int = 0

    def __post_init__(self) -> None:
        if self.postprocess not in POSTPROCESS:
            raise ValueError(f"postprocess must be one of {POSTPROCESS}; received "
                             f"{self.postprocess!r}.")
        if self.max_detections < 1 or self.pre_nms_top_k < 1 or self.op_top_k < 0:
            raise ValueError("max_detections and pre_nms_top_k must be >= 1, op_top_k >= 0.")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1]; received {self.iou_threshold}.")

    @property
    def output_names(self) -> tuple[str, ...]:
        """The outputs of the ``none`` and NMS endings (``network``'s depend on the detector:
        :func:`~keras_efficient.detection.postprocess.per_level_network`)."""
        return RAW_OUTPUTS if self.postprocess in ("none", "network") else DETECTION_OUTPUTS


def custom_op_signature(num_classes: int, options: PostprocessOptions) -> str:
    """The ``experimental_implements`` text of the custom op for these options
    (:func:`keras_efficient.detection.postprocess.tflite_custom_op_signature`).

    Example::

        custom_op_signature(90, PostprocessOptions())  # 'name: "TFLite_Detection_PostProcess" ...'
    """
    return tflite_custom_op_signature(num_classes, max_detections=options.max_detections,
                                      score_threshold=options.score_threshold,
                                      iou_threshold=options.iou_threshold)


def export_anchors(detector: Any) -> np.ndarray:
    """Anchors ``[N, 4]`` (yc, xc, h, w) normalised to the input, in the outputs' anchor order.

    Example::

        export_anchors(EfficientDet("lite0")).shape  # (19206, 4)
    """
    return normalized_center_size(generate_anchors(detector.anchor_spec()),
                                  detector.image_size)


def write_anchors_csv(detector: Any, path: str | os.PathLike[str]) -> Path:
    """The anchors as CSV (header ``yc,xc,h,w``), for apps that decode ``"none"`` exports.

    Decoding, as the custom op does: ``yc = ty·h_a + yc_a``, ``xc = tx·w_a + xc_a``,
    ``h = exp(th)·h_a``, ``w = exp(tw)·w_a``.

    Example::

        write_anchors_csv(EfficientDet("lite0"), "export/anchors.csv")
    """
    anchors = export_anchors(detector)
    lines = ["yc,xc,h,w"] + [",".join(f"{v:.8g}" for v in row) for row in anchors]
    return write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())


def serving_function(detector: Any, options: PostprocessOptions) -> Any:
    """``image [1, H, W, 3] float → dict of outputs`` for ``ExportArchive.add_endpoint``.

    Example::

        serve = serving_function(detector, PostprocessOptions(postprocess="none"))
        serve(tf.zeros([1, 320, 320, 3]))  # {"box_encodings": ..., "class_scores": ...}
    """
    anchors = export_anchors(detector)
    network = per_level_network(detector) if options.postprocess == "network" else None

    def serve(image: Any) -> dict[str, Any]:
        if network is not None:
            return {name: tf.cast(value, tf.float32)
                    for name, value in network(image, training=False).items()}
        raw = detector(image, training=False)
        encodings = tf.cast(raw["box_regression"], tf.float32)
        scores = tf.sigmoid(tf.cast(raw["class_logits"], tf.float32))
        if options.postprocess == "none":
            return {"box_encodings": encodings, "class_scores": scores}
        if options.postprocess == "builtin_nms":
            return builtin_nms_detections(
                encodings, scores, anchors, max_detections=options.max_detections,
                pre_nms_top_k=options.pre_nms_top_k, iou_threshold=options.iou_threshold,
                score_threshold=options.score_threshold)
        return tflite_detection_postprocess(
            encodings, scores, anchors, max_detections=options.max_detections,
            score_threshold=options.score_threshold, iou_threshold=options.iou_threshold,
            top_k=options.op_top_k)

    return serve


def reorder_outputs(model: bytes, names: Sequence[str]) -> bytes:
    """Put the main subgraph's outputs in the order of ``names`` (signature output names) and
    name each output tensor after its signature key.

    Example::

        payload = reorder_outputs(payload, DETECTION_OUTPUTS)  # boxes, classes, scores, count
    """
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    graph = tree.subgraphs[0]
    signature = tree.signatureDefs[0]
    by_name = {_text(item.name): item.tensorIndex for item in signature.outputs}
    missing = [name for name in names if name not in by_name]
    if missing or len(by_name) != len(names):
        raise ValueError(f"Expected outputs {list(names)}; the converted model has "
                         f"{sorted(by_name)}.")
    graph.outputs = np.asarray([by_name[name] for name in names], dtype=np.int32)
    for name in names:
        graph.tensors[by_name[name]].name = name.encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_quantization_aware(name: str, quantization: str, float_layers: Sequence[str],
                             float_worst: int) -> None:
    """A quantization-aware detector exports to int8 only, every layer integer.

    Example::

        check_quantization_aware("d0", "float16", (), 0)  # ValueError
    """
    if quantization != "int8":
        raise ValueError(f"{name} is quantization-aware (trained with qat=True): it exports "
                         f"to int8, with the ranges it was trained with, not to "
                         f"{quantization!r}; export the float detector it was fine-tuned from "
                         "for other formats.")
    if float_layers or float_worst:
        raise ValueError(f"{name} is quantization-aware: every layer is trained for int8, so "
                         "float_layers/float_worst do not apply.")


def convert_detector(detector: Any, quantization: str = "float32", *,
                     options: PostprocessOptions | None = None,
                     representative: Iterable[np.ndarray] | None = None,
                     input_type: str = "float32",
                     work_dir: str | os.PathLike[str] | None = None,
                     float_layers: Sequence[str] = (), float_worst: int = 0,
                     edgetpu: bool = False) -> bytes:
    """Convert a raw EfficientDet (``keras_efficient.EfficientDet``) to TFLite bytes.

    Static batch 1 and the model's static input size. For ``int8``, everything up to the scores
    and box encodings is integer; the post-process tail (and the ``DEQUANTIZE`` before it)
    stays float, as the EdgeTPU and the Task Library expect. ``work_dir``: where the temporary
    SavedModel goes (default: the system temp folder). ``edgetpu``: the artifact is for the
    EdgeTPU (nearest upsampling stays ``RESIZE_NEAREST_NEIGHBOR``, which it maps; CPU exports
    lower it to repeats that XNNPACK delegates); with it, float layers are refused.
    ``float_layers`` / ``float_worst``: selective int8 (float input, CPU/GPU only), as in
    :func:`keras_efficient.export.tflite.convert`.

    A quantization-aware detector (``qat=True``, :mod:`keras_efficient.training.qat`) converts
    to int8 from its own ranges: ``representative`` is not used
    (:func:`~keras_efficient.export.qat_tflite.convert_quantization_aware`).

    Example::

        payload = convert_detector(model, "int8", representative=images,
                                   input_type="uint8")
        payload = convert_detector(model, "int8", representative=images, float_worst=3)
    """
    import keras

    options = options or PostprocessOptions()
    check_options(quantization, input_type, float_layers=float_layers,
                  float_worst=float_worst, edgetpu=edgetpu)
    shape = static_input_shape(detector)
    qat = bool(getattr(detector, "qat", False))
    if qat:
        check_quantization_aware(detector.name, quantization, float_layers, float_worst)
    else:
        representative = check_representative(representative, quantization, shape)
    if not isinstance(getattr(detector, "output", None), dict) or "class_logits" not in (
            detector.output):
        raise ValueError(f"{detector.name} is not a raw EfficientDet (its outputs must be the "
                         "dict {class_logits, box_regression}); export the model that "
                         "keras_efficient.EfficientDet returns, not an inference wrapper.")
    serve = serving_function(detector, options)
    with tempfile.TemporaryDirectory(prefix=".saved_model-", dir=work_dir) as folder:
        archive = keras.export.ExportArchive()
        archive.track(detector)
        with upsample_lowering(lowering_for(edgetpu)):
            archive.add_endpoint("serve", serve, input_signature=[
                tf.TensorSpec(shape, tf.float32, name="image")])
            archive.write_out(folder, verbose=False)
        if qat:
            payload = convert_quantization_aware(
                folder, name=detector.name, input_type=input_type,
                custom_ops=options.postprocess == "custom_op")
        else:
            payload = convert_saved_model(folder, quantization, shape=shape,
                                          name=detector.name, representative=representative,
                                          input_type=input_type,
                                          custom_ops=options.postprocess == "custom_op",
                                          float_layers=float_layers, float_worst=float_worst,
                                          edgetpu=edgetpu)
    names = (tuple(per_level_outputs(detector)) if options.postprocess == "network"
             else options.output_names)
    return reorder_outputs(payload, names)
