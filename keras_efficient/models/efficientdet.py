"""Public EfficientDet builders: EfficientNet backbone → BiFPN → shared class/box heads.

The model maps float RGB images in [0, 255] (preprocessed in the graph exactly like its
backbone classifier: ImageNet mean/std for D0–D7x, (x − 127)/128 for Lite) to a dict of raw
outputs in anchor order (level, row, column, anchor):

* ``class_logits``: ``[B, N, num_classes]`` (apply a sigmoid for scores),
* ``box_regression``: ``[B, N, 4]`` as (ty, tx, th, tw) against the anchors of
  ``spec.anchor_spec()`` (see :mod:`keras_efficient.detection.anchors`).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import keras

from keras_efficient.backbones.efficientnet import efficientnet_body
from keras_efficient.configs.anchors import AnchorSpec
from keras_efficient.configs.coco import COCO_NUM_CLASSES, coco_label_map
from keras_efficient.configs.efficientdet import (
    FUSION_MODES,
    EfficientDetSpec,
    check_resize,
    get_efficientdet_spec,
    spec_from_config,
    spec_to_config,
)
from keras_efficient.configs.efficientnet import EfficientNetScaling
from keras_efficient.detection.bifpn import bifpn
from keras_efficient.detection.heads import box_head, class_head
from keras_efficient.layers.fold_batch_norm import copy_folded_weights, fold_graph
from keras_efficient.layers.quantize_graph import quantize_graph
from keras_efficient.models.efficientnet import (
    EfficientNet,
    preprocessing_layers,
    set_imagenet_normalization,
)
from keras_efficient.weights.checkpoint import checkpoint_prefix
from keras_efficient.weights.detector_checkpoint import load_efficientdet_checkpoint
from keras_efficient.weights.loading import is_weights_source, load_weights_file
from keras_efficient.weights.pretrained import load_coco


def _require_channels_last() -> None:
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "EfficientDet builds channels_last only; call "
            "keras.config.set_image_data_format('channels_last') (the EfficientNet classifiers "
            "and EfficientNetBackbone support 'channels_first')."
        )


def _check(spec: EfficientDetSpec, num_classes: int, weights: str | None,
           backbone_weights: str | None, input_shape: tuple[int | None, ...],
           fusion: str | None) -> None:
    if (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
            or num_classes < 1):
        raise ValueError(
            "`num_classes` must be a positive integer (the number of object classes); "
            f"received num_classes={num_classes!r}."
        )
    if not (weights in (None, "coco") or is_weights_source(weights)):
        raise ValueError(
            "`weights` must be None, 'coco' (the official COCO detector) or the path to an "
            "existing weights file (a Keras '.weights.h5' saved from this detector, or an "
            f"official checkpoint); received weights={weights!r}."
        )
    if backbone_weights not in (None, "imagenet") and not is_weights_source(backbone_weights):
        raise ValueError(
            "`backbone_weights` must be None, 'imagenet' or the path to a classifier weights "
            f"file; received backbone_weights={backbone_weights!r}."
        )
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"`input_shape` must be (height, width, 3); received input_shape={input_shape}."
        )
    stride = 2 ** spec.max_level
    height, width = input_shape[0], input_shape[1]
    if height is None or width is None or min(height, width) < stride:
        raise ValueError(
            f"{spec.name} needs a static input of at least {stride}x{stride} pixels (its "
            f"coarsest level has stride {stride}); received input_shape={input_shape}."
        )
    if fusion is not None and fusion not in FUSION_MODES:
        raise ValueError(f"`fusion` must be one of {FUSION_MODES}; received {fusion!r}.")


LabelMap = tuple[tuple[int, str], ...]


def _label_map(value: object, num_classes: int) -> LabelMap | None:
    """``[(category id, name), ...]`` in class-index order, from pairs or ``{"id", "name"}``
    dicts (a run's ``labels.json``)."""
    if value is None:
        return None
    pairs = []
    for entry in value:  # type: ignore[attr-defined]
        if isinstance(entry, Mapping):
            pairs.append((int(entry["id"]), str(entry["name"])))
        else:
            category, label = entry
            pairs.append((int(category), str(label)))
    if len(pairs) != num_classes:
        raise ValueError(f"label_map names {len(pairs)} classes but num_classes={num_classes}; "
                         "give one (category id, name) pair per class, in class-index order.")
    return tuple(pairs)


@keras.saving.register_keras_serializable(package="keras_efficient")
class EfficientDetector(keras.Model):
    """A raw EfficientDet that carries what it needs to be used: its spec (fusion and input
    size included), ``num_classes``, ``image_size``, the dataset's ``label_map`` and the
    ``resize`` mode it was trained with (``"letterbox"``, automl's, or ``"stretch"``, as the
    Task Library and MediaPipe feed; see ``configs.efficientdet.RESIZE_MODES``).

    ``fold_batch_norm=True`` builds the inference graph with every batch normalization folded
    into its convolution (:meth:`for_inference` makes one from a trained detector).

    ``qat=True`` builds the quantization-aware twin (fake-quantized weights and activations,
    batch normalization folded: :func:`keras_efficient.layers.quantize_graph.quantize_graph`),
    which :func:`keras_efficient.training.qat.quantization_aware` fills from a trained detector
    and the int8 export converts without calibration.

    It is a functional Keras model (keras-hub's task models are the pattern): ``get_config``
    holds these, so inference, evaluation and export take the model alone and a trained
    detector saves to, and reloads from, one ``.keras`` file with ``safe_mode=True``. Build it
    with :func:`EfficientDet` (which validates the arguments and loads weights).

    Example::

        detector = EfficientDet("lite0", num_classes=3, label_map=[(1, "cat"), (2, "dog"),
                                                                   (3, "bird")])
        detector.spec.name, detector.image_size, detector.labels  # ..., (320, 320), [...]
        detector.save("detector.keras")
        same = keras.saving.load_model("detector.keras")  # safe_mode=True
    """

    def __init__(self, spec: EfficientDetSpec | Mapping[str, object] | str,
                 num_classes: int = 90, *, image_size: Sequence[int] | None = None,
                 label_map: object = None, pretrained: str | None = None,
                 resize: str = "letterbox", qat: bool = False, fold_batch_norm: bool = False,
                 name: str | None = None, **kwargs: object) -> None:
        if qat and fold_batch_norm:
            raise ValueError("qat=True folds the batch normalizations already (into fake-"
                             "quantized convolutions); pass fold_batch_norm=False.")
        if isinstance(spec, str):
            spec = get_efficientdet_spec(spec)
        elif isinstance(spec, Mapping):
            spec = spec_from_config(spec)
        size = (tuple(int(v) for v in image_size) if image_size is not None
                else (spec.input_size, spec.input_size))
        scaling = spec.backbone_scaling
        image = keras.Input(shape=(*size, 3), name="image")
        x = image
        for layer in preprocessing_layers(scaling):
            x = layer(x)
        _, taps = efficientnet_body(x, scaling, include_head=False)
        features = {level: taps[f"P{level}"] for level in (3, 4, 5)}
        levels = bifpn(features, spec)
        outputs = {"class_logits": class_head(levels, spec, num_classes),
                   "box_regression": box_head(levels, spec)}
        if qat:
            float_graph = keras.Model(image, outputs)
            if not scaling.lite:
                set_imagenet_normalization(float_graph)
            image, outputs = quantize_graph(float_graph)
        folded_from: dict[str, tuple[str, str]] = {}
        if fold_batch_norm:
            image, outputs, folded_from = fold_graph(keras.Model(image, outputs))
        super().__init__(inputs=image, outputs=outputs, name=name or spec.name, **kwargs)
        self.qat = bool(qat)
        self.fold_batch_norm = bool(fold_batch_norm)
        # Folded convolution -> the (convolution, batch normalization) of the unfolded graph.
        self.folded_from = folded_from
        self.spec = spec
        self.num_classes = int(num_classes)
        self.image_size: tuple[int, int] = (size[0], size[1])
        self.label_map = _label_map(label_map, self.num_classes)
        # "coco" when built with weights="coco": inference then defaults to automl's NMS.
        self.pretrained = None if pretrained is None else str(pretrained)
        # How images become its input; evaluation, serving and export verification follow it.
        self.resize = check_resize(resize)

    @property
    def labels(self) -> list[str]:
        """Class names in index order (``class 0``, ... without a label map)."""
        if self.label_map is None:
            return [f"class {i}" for i in range(self.num_classes)]
        return [label for _, label in self.label_map]

    @property
    def category_ids(self) -> list[int]:
        """Dataset category ids in index order (index + 1 without a label map, COCO's rule)."""
        if self.label_map is None:
            return list(range(1, self.num_classes + 1))
        return [category for category, _ in self.label_map]

    @property
    def pad_value(self) -> tuple[float, float, float]:
        """The raw RGB value its letterbox pads with, ``spec.pad_value`` (the normalization
        mean: 0 after the in-graph normalization, as automl pads); every resize-and-pad path
        takes it from here."""
        return self.spec.pad_value

    def anchor_spec(self) -> AnchorSpec:
        """The anchors of this detector's input size."""
        return self.spec.anchor_spec(self.image_size)

    def get_config(self) -> dict[str, object]:
        return {"name": self.name, "trainable": self.trainable,
                "spec": spec_to_config(self.spec), "num_classes": self.num_classes,
                "image_size": list(self.image_size),
                "label_map": None if self.label_map is None else [list(p)
                                                                  for p in self.label_map],
                "pretrained": self.pretrained, "resize": self.resize, "qat": self.qat,
                "fold_batch_norm": self.fold_batch_norm}

    def for_inference(self) -> EfficientDetector:
        """This detector with every batch normalization folded into its convolution
        (:mod:`keras_efficient.layers.fold_batch_norm`): the same outputs to float rounding in
        less time, for inference only. A snapshot: it holds a copy of the weights as they are
        now. A detector that is folded already (or quantization-aware, whose convolutions fold
        their batch normalizations themselves) is returned as it is.

        Example::

            fast = detector.for_inference()
            fast.save("detector-inference.keras")  # reloads folded, spec and labels included
        """
        if self.fold_batch_norm or self.qat:
            return self
        folded = EfficientDetector.from_config({**self.get_config(), "fold_batch_norm": True})
        copy_folded_weights(folded, self, folded.folded_from)
        return folded

    @classmethod
    def from_config(cls, config: dict[str, object]) -> EfficientDetector:
        return cls(**config)  # type: ignore[arg-type]


def EfficientDet(spec: EfficientDetSpec | str, num_classes: int = 90,
                 weights: str | None = None, backbone_weights: str | None = None,
                 input_shape: Sequence[int | None] | None = None, fusion: str | None = None,
                 name: str | None = None, label_map: object = None,
                 resize: str = "letterbox") -> EfficientDetector:
    """Build an EfficientDet detector (raw outputs) from a table row or its name.

    Args:
        spec: a row of ``EFFICIENTDET_VARIANTS`` (or its name); ``row.with_(...)`` makes custom
            detectors (other width, cells, levels, activation...).
        num_classes: number of object classes (90 for COCO's id space).
        weights: None, "coco" (the official automl checkpoint, downloaded once into the Keras
            cache, converted once and cached as ``.weights.h5``), a Keras ``.weights.h5``
            file saved from the same detector, or an official checkpoint prefix/directory.
            With ``num_classes`` other than 90, everything but the class predictor loads.
        backbone_weights: None, "imagenet" (the classifier's published weights, loaded into
            the backbone layers by name) or a classifier weights file.
        input_shape: (height, width, 3); defaults to the row's square input size. Detectors
            are channels_last only: with "channels_first" set globally, a ValueError.
        fusion: override the BiFPN fusion mode ("fast", "softmax" or "sum"); recorded in the
            model's ``spec``.
        name: model name (defaults to the row name).
        label_map: the dataset's ``(category id, name)`` per class index (or a run's
            ``labels.json`` entries); ``weights="coco"`` defaults to the COCO 2017 names.
        resize: how images become the input, recorded in the model: ``"letterbox"`` (default;
            automl's, what the official weights saw) or ``"stretch"`` (the whole image resized
            to the input, as the Android Task Library and MediaPipe feed; train with it for
            those consumers).

    Returns an :class:`EfficientDetector`: ``detector.spec`` is the one source of its spec.

    Example:
        >>> detector = EfficientDet("lite0", num_classes=20)
    """
    _require_channels_last()
    if isinstance(spec, str):
        spec = get_efficientdet_spec(spec)
    shape = tuple(input_shape or (spec.input_size, spec.input_size, 3))
    _check(spec, num_classes, weights, backbone_weights, shape, fusion)
    built = spec if fusion is None else spec.with_(fusion=fusion)
    if shape[0] == shape[1]:
        built = built.with_(input_size=int(shape[0]))  # type: ignore[arg-type]
    if label_map is None and weights == "coco" and num_classes == COCO_NUM_CLASSES:
        names, ids = coco_label_map()
        label_map = list(zip(ids, names, strict=True))
    model = EfficientDetector(built, num_classes,
                              image_size=(int(shape[0] or 0), int(shape[1] or 0)),
                              label_map=label_map,
                              pretrained="coco" if weights == "coco" else None,
                              resize=resize, name=name)
    scaling = spec.backbone_scaling
    if not scaling.lite:
        set_imagenet_normalization(model)
    if backbone_weights is not None:
        load_backbone_weights(model, scaling, backbone_weights)
    if weights == "coco":
        load_coco(model, spec, num_classes, fusion)
    elif weights is not None:
        prefix = checkpoint_prefix(weights)
        if prefix is not None:
            load_efficientdet_checkpoint(model, prefix, built,
                                         skip_class_predictor=num_classes != 90)
        else:
            load_weights_file(model, weights)
    return model


def load_backbone_weights(detector: keras.Model, backbone: EfficientNetScaling | str,
                          weights: str) -> int:
    """Copy a classifier's weights into the detector's backbone layers, by layer name.

    Returns the number of layers copied; the classifier's head (``top_*``) has no counterpart.

    Example::

        detector = EfficientDet("lite0", num_classes=3)
        load_backbone_weights(detector, "lite0", "lite0_finetuned.weights.h5")
    """
    _require_channels_last()
    classifier = EfficientNet(backbone, include_top=False, weights=weights,
                              input_shape=(None, None, 3))
    copied = 0
    for layer in classifier.layers:
        if not layer.weights or layer.name.startswith("top_"):
            continue
        target = detector.get_layer(layer.name)
        target.set_weights(layer.get_weights())
        if hasattr(target, "finalize_state"):
            target.finalize_state()
        copied += 1
    return copied
