"""TFLite model metadata for the Android Task Library and MediaPipe Tasks: write, read back.

The convention (tflite-support's ``MetadataPopulator``, which the Task Library and MediaPipe read):

* a ``ModelMetadata`` flatbuffer (schema ``metadata_schema.fbs``, file identifier ``M001``) is
  stored in a new entry of the model's ``buffers``, pointed to by an entry named
  ``TFLITE_METADATA`` in the model's ``metadata`` vector (an existing entry is replaced; other
  entries such as ``min_runtime_version`` and ``CONVERSION_METADATA`` are kept);
* associated files (``labels.txt``) are packed as a ZIP archive appended after the flatbuffer,
  so the bytes are both a valid TFLite model and a valid zip file.

The metadata tree is built with the object API of tflite-support's generated schema module
``tensorflow_lite_support.metadata.metadata_schema_py_generated`` (pure Python, imported lazily)
and packed with ``flatbuffers``; the model itself is read and rewritten with the TFLite schema
and ``flatbuffer_utils`` of ``ai-edge-litert`` (or TensorFlow's copy). Everything is bytes in,
bytes out: the caller writes the file (atomically).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

TFLITE_METADATA = "TFLITE_METADATA"
"""Name of the model ``metadata`` entry that holds the ModelMetadata flatbuffer."""
METADATA_FILE_IDENTIFIER = b"M001"
TFLITE_FILE_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"

# Minimum metadata parser version, as data. metadata_schema.fbs marks every member added after
# 1.0.0 with "Added in: 1.x.y" (and lists them in its History); tflite-support's
# GetMinimumMetadataParserVersion (metadata/cc/metadata_version.cc, called by MetadataPopulator)
# starts from 1.0.0 and raises the version to the largest "added in" among the members present
# (a vector/table field counts as present when it is set, even if empty).
_BASE_PARSER_VERSION = (1, 0, 0)
_ADDED_IN: dict[str, tuple[int, int, int]] = {
    "AssociatedFileType.VOCABULARY": (1, 0, 1),
    "SubGraphMetadata.input_process_units": (1, 1, 0),
    "SubGraphMetadata.output_process_units": (1, 1, 0),
    "ProcessUnitOptions.BertTokenizerOptions": (1, 1, 0),
    "ProcessUnitOptions.SentencePieceTokenizerOptions": (1, 1, 0),
    "SubGraphMetadata.input_tensor_groups": (1, 2, 0),
    "SubGraphMetadata.output_tensor_groups": (1, 2, 0),
    "ProcessUnitOptions.RegexTokenizerOptions": (1, 2, 1),
    "ContentProperties.AudioProperties": (1, 3, 0),
    "AssociatedFileType.SCANN_INDEX_FILE": (1, 4, 0),
    "AssociatedFile.version": (1, 4, 1),
    "SubGraphMetadata.custom_metadata": (1, 5, 0),
}

# Names the Task Library / MediaPipe object detectors look up (object_detector.cc) and that
# tflite-support's ObjectDetector metadata writer produces.
INPUT_NAME = "image"
CLASSIFIER_OUTPUT_NAME = "probability"
DETECTOR_OUTPUT_NAMES = ("location", "category", "score", "number of detections")
DETECTION_GROUP = "detection_result"
# Boxes are [ymin, xmin, ymax, xmax]: BOUNDARIES (left, top, right, bottom) at index 1, 0, 3, 2.
_BOX_INDEX = [1, 0, 3, 2]
# location / category / score are indexed by detection along dimension 2 (1-based, batch = 1).
_DETECTION_AXIS = 2
_DETECTION_POSTPROCESS_OP = "TFLite_Detection_PostProcess"

_INSTALL_HINT = (
    "Writing and reading TFLite metadata needs the schema module of tflite-support: "
    "pip install --no-deps tflite-support==0.4.4 (without dependencies: its pins, e.g. "
    "protobuf<4, clash with TensorFlow 2.21, and only its pure-Python generated schema is used).")


class MissingMetadataError(ValueError):
    """The model has no ``TFLITE_METADATA`` entry.

    Example::

        try:
            read_metadata("plain.tflite")
        except MissingMetadataError:
            ...
    """


@dataclass(frozen=True)
class TensorInfo:
    """One input or output: its metadata (name = role) and the graph tensor it describes.

    Example::

        read_metadata("model.tflite").outputs[0]  # TensorInfo(name="probability", ...)
    """

    name: str
    tensor_name: str
    dtype: str
    shape: tuple[int, ...]
    description: str = ""
    content: str = ""
    associated_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """What ``read_metadata`` finds in a model.

    Example::

        info = read_metadata("model.tflite")
        info.input_name, info.output_roles, info.labels, info.mean, info.std
    """

    name: str
    description: str
    version: str
    author: str
    license: str
    min_parser_version: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    output_groups: Mapping[str, tuple[str, ...]]
    associated_files: tuple[str, ...]
    packed_files: tuple[str, ...]
    labels: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def input_name(self) -> str:
        """The graph name of the (first) input tensor."""
        return self.inputs[0].tensor_name if self.inputs else ""

    @property
    def output_names(self) -> tuple[str, ...]:
        """Graph names of the output tensors, in the model's order."""
        return tuple(tensor.tensor_name for tensor in self.outputs)

    @property
    def output_roles(self) -> tuple[str, ...]:
        """Metadata names of the outputs (the roles the Task Library matches), in order."""
        return tuple(tensor.name for tensor in self.outputs)


class _GraphTensor(NamedTuple):
    tensor_index: int
    name: str
    dtype: str
    shape: tuple[int, ...]


# --------------------------------------------------------------------------- lazy imports


def _metadata_schema() -> Any:
    try:
        from tensorflow_lite_support.metadata import metadata_schema_py_generated
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return metadata_schema_py_generated


def _model_tools() -> tuple[Any, Any]:
    """``(flatbuffer_utils, schema)`` for the TFLite model flatbuffer."""
    try:
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        from tensorflow.lite.tools import flatbuffer_utils
    return flatbuffer_utils, flatbuffer_utils.schema_fb


# --------------------------------------------------------------------------- public API


def write_classifier_metadata(model: bytes, *, labels: Sequence[str], mean: Sequence[float],
                              std: Sequence[float], name: str, description: str = "",
                              version: str = "", author: str = "keras_efficient",
                              license: str = "Apache-2.0") -> bytes:
    """Image classifier metadata (Task Library ``ImageClassifier``) written into ``model``.

    Input ``image``: RGB ImageProperties, NormalizationOptions(``mean``, ``std``) and Stats
    of the input dtype (uint8: 0..255). Output ``probability``: FeatureProperties, Stats and
    ``labels.txt`` as TENSOR_AXIS_LABELS. ``len(labels)`` must equal the class dimension.

    Example::

        payload = write_classifier_metadata(convert(model, "int8", representative=images,
                                                    input_type="uint8"),
                                            labels=class_names, mean=[0.0], std=[1.0], name="b0")
    """
    fb = _metadata_schema()
    label_bytes = _labels_file(labels)
    graph_in, graph_out, _ = _graph(model)
    image = _check_image_input(graph_in, mean, std)
    if len(graph_out) != 1:
        raise ValueError(f"An image classifier needs exactly one output; the model has "
                         f"{len(graph_out)}: {_describe(graph_out)}.")
    shape = graph_out[0].shape or (_runtime_output_shapes(model) or [()])[0]
    if graph_out[0].dtype not in ("float32", "uint8"):
        raise ValueError(f"The classifier output must be float32 or uint8 for the Task Library; "
                         f"the model's is {_describe(graph_out)}.")
    if shape and shape[-1] != len(labels):
        raise ValueError(f"{len(labels)} labels for a classifier with {shape[-1]} classes "
                         f"(output {graph_out[0].name!r} of shape {list(shape)}).")

    output = _tensor(fb, CLASSIFIER_OUTPUT_NAME, "Probabilities of the labels respectively.",
                     fb.ContentProperties.FeatureProperties, fb.FeaturePropertiesT())
    low, high = (0.0, 255.0) if graph_out[0].dtype == "uint8" else (0.0, 1.0)
    output.stats = _stats(fb, [low], [high])
    output.associatedFiles = [_label_file(fb, "Labels for the classes the model recognizes.",
                                          fb.AssociatedFileType.TENSOR_AXIS_LABELS)]
    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [
        _image_tensor(fb, image, mean, std, "Input image to be classified.")]
    subgraph.outputTensorMetadata = [output]
    metadata = _model_metadata(fb, subgraph, name=name, description=description,
                               version=version, author=author, license=license)
    return _attach(model, metadata, {LABELS_FILE: label_bytes})


def write_detector_metadata(model: bytes, *, labels: Sequence[str], mean: Sequence[float],
                            std: Sequence[float], name: str, description: str = "",
                            version: str = "", author: str = "keras_efficient",
                            license: str = "Apache-2.0") -> bytes:
    """Object detector metadata (Task Library / MediaPipe ``ObjectDetector``) written into
    ``model``.

    The model's four float32 outputs must be, in order, boxes ``[1, D, 4]`` (ymin, xmin, ymax,
    xmax as ratios), classes ``[1, D]``, scores ``[1, D]`` and the count ``[1]`` — the ports of
    ``TFLite_Detection_PostProcess``. They are described as ``location`` (BoundingBoxProperties
    BOUNDARIES, index [1, 0, 3, 2], RATIO), ``category`` (``labels.txt`` as
    TENSOR_VALUE_LABELS), ``score`` and ``number of detections``, with the first three grouped
    as ``detection_result``. When the outputs come from the op, its ports must be in that order
    and ``len(labels)`` must equal its ``num_classes``; otherwise the shapes are checked.

    Example::

        payload = write_detector_metadata(convert_detector(detector, spec, "int8",
                                                           representative=images,
                                                           input_type="uint8"),
                                          labels=class_names, mean=[0.0], std=[1.0], name="lite0")
    """
    fb = _metadata_schema()
    label_bytes = _labels_file(labels)
    graph_in, graph_out, postprocess = _graph(model)
    image = _check_image_input(graph_in, mean, std)
    _check_detector_outputs(model, graph_out, postprocess, len(labels))

    location = _tensor(fb, DETECTOR_OUTPUT_NAMES[0], "The locations of the detected boxes.",
                       fb.ContentProperties.BoundingBoxProperties, fb.BoundingBoxPropertiesT())
    location.content.contentProperties.index = list(_BOX_INDEX)
    location.content.contentProperties.type = fb.BoundingBoxType.BOUNDARIES
    location.content.contentProperties.coordinateType = fb.CoordinateType.RATIO
    category = _tensor(fb, DETECTOR_OUTPUT_NAMES[1], "The categories of the detected boxes.",
                       fb.ContentProperties.FeatureProperties, fb.FeaturePropertiesT())
    category.associatedFiles = [_label_file(fb, "Labels for the objects the model detects.",
                                            fb.AssociatedFileType.TENSOR_VALUE_LABELS)]
    score = _tensor(fb, DETECTOR_OUTPUT_NAMES[2], "The scores of the detected boxes.",
                    fb.ContentProperties.FeatureProperties, fb.FeaturePropertiesT())
    for tensor in (location, category, score):
        tensor.content.range = fb.ValueRangeT()
        tensor.content.range.min = tensor.content.range.max = _DETECTION_AXIS
    count = _tensor(fb, DETECTOR_OUTPUT_NAMES[3], "The number of the detected boxes.",
                    fb.ContentProperties.FeatureProperties, fb.FeaturePropertiesT())
    group = fb.TensorGroupT()
    group.name = DETECTION_GROUP
    group.tensorNames = list(DETECTOR_OUTPUT_NAMES[:3])

    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [
        _image_tensor(fb, image, mean, std, "Input image to be detected.")]
    subgraph.outputTensorMetadata = [location, category, score, count]
    subgraph.outputTensorGroups = [group]
    metadata = _model_metadata(fb, subgraph, name=name, description=description,
                               version=version, author=author, license=license)
    return _attach(model, metadata, {LABELS_FILE: label_bytes})


def read_metadata(model: bytes | bytearray | str | os.PathLike[str]) -> ModelInfo:
    """The Task Library metadata of a model (bytes or a path), its packed files and labels.

    Example::

        read_metadata("export/demo/model_int8.tflite").labels  # ("circle", "square", ...)
    """
    data = Path(model).read_bytes() if isinstance(model, str | os.PathLike) else bytes(model)
    fb = _metadata_schema()
    buffer = _metadata_buffer(data)
    if buffer is None:
        raise MissingMetadataError(
            f"The model has no {TFLITE_METADATA} entry (no Task Library metadata); write it "
            "with write_classifier_metadata or write_detector_metadata.")
    if not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0):
        raise ValueError(f"The {TFLITE_METADATA} buffer is not a ModelMetadata flatbuffer "
                         f"(file identifier {buffer[4:8]!r}, expected "
                         f"{METADATA_FILE_IDENTIFIER!r}).")
    metadata = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(buffer, 0))
    graph_in, graph_out, _ = _graph(data)
    packed = _packed_files(data)
    subgraph = metadata.subgraphMetadata[0] if metadata.subgraphMetadata else None
    inputs_md = (subgraph.inputTensorMetadata if subgraph else None) or []
    outputs_md = (subgraph.outputTensorMetadata if subgraph else None) or []
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    for unit in (inputs_md[0].processUnits if inputs_md else None) or []:
        if unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions:
            mean = tuple(float(v) for v in unit.options.mean) \
                if unit.options.mean is not None else ()
            std = tuple(float(v) for v in unit.options.std) \
                if unit.options.std is not None else ()
    groups = {_text(group.name): tuple(_text(n) for n in group.tensorNames or ())
              for group in (subgraph.outputTensorGroups if subgraph else None) or []}
    return ModelInfo(
        name=_text(metadata.name), description=_text(metadata.description),
        version=_text(metadata.version), author=_text(metadata.author),
        license=_text(metadata.license), min_parser_version=_text(metadata.minParserVersion),
        inputs=_tensor_infos(fb, inputs_md, graph_in),
        outputs=_tensor_infos(fb, outputs_md, graph_out),
        mean=mean, std=std, output_groups=groups,
        associated_files=tuple(_text(f.name) for f in _all_files(metadata)),
        packed_files=tuple(packed),
        labels=_read_labels(fb, data, outputs_md, packed),
        raw=_to_dict(metadata))


# --------------------------------------------------------------------------- metadata tree


def _model_metadata(fb: Any, subgraph: Any, *, name: str, description: str, version: str,
                    author: str, license: str) -> Any:
    if not name:
        raise ValueError("The metadata needs a model name.")
    metadata = fb.ModelMetadataT()
    metadata.name = name
    metadata.description = description or None
    metadata.version = version or None
    metadata.author = author or None
    metadata.license = license or None
    metadata.subgraphMetadata = [subgraph]
    return metadata


def _tensor(fb: Any, name: str, description: str, content_type: int, properties: Any) -> Any:
    tensor = fb.TensorMetadataT()
    tensor.name = name
    tensor.description = description
    tensor.content = fb.ContentT()
    tensor.content.contentPropertiesType = content_type
    tensor.content.contentProperties = properties
    return tensor


def _stats(fb: Any, low: Sequence[float], high: Sequence[float]) -> Any:
    stats = fb.StatsT()
    stats.min = [float(v) for v in low]
    stats.max = [float(v) for v in high]
    return stats


def _label_file(fb: Any, description: str, file_type: int) -> Any:
    entry = fb.AssociatedFileT()
    entry.name = LABELS_FILE
    entry.description = description
    entry.type = file_type
    return entry


def _image_tensor(fb: Any, image: _GraphTensor, mean: Sequence[float], std: Sequence[float],
                  description: str) -> Any:
    properties = fb.ImagePropertiesT()
    properties.colorSpace = fb.ColorSpaceType.RGB
    tensor = _tensor(fb, INPUT_NAME, description, fb.ContentProperties.ImageProperties,
                     properties)
    unit = fb.ProcessUnitT()
    unit.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    unit.options = fb.NormalizationOptionsT()
    unit.options.mean = [float(v) for v in mean]
    unit.options.std = [float(v) for v in std]
    tensor.processUnits = [unit]
    # Stats describe the values the tensor holds: raw pixels for uint8; for float32, pixels
    # 0..255 after (pixel - mean) / std, per channel (as tflite-support's writers do).
    if image.dtype == "uint8":
        tensor.stats = _stats(fb, [0.0], [255.0])
    else:
        tensor.stats = _stats(fb, [(0.0 - m) / s for m, s in zip(mean, std, strict=True)],
                              [(255.0 - m) / s for m, s in zip(mean, std, strict=True)])
    return tensor


def min_parser_version(metadata: Any) -> str:
    """The lowest metadata parser version that understands every member ``metadata`` uses.

    Example::

        min_parser_version(tree)  # "1.2.0" for a ModelMetadataT with output tensor groups
        read_metadata(payload).min_parser_version  # the version written into a model
    """
    used = _members_used(metadata, _metadata_schema())
    return ".".join(str(v) for v in max([_BASE_PARSER_VERSION, *(_ADDED_IN[m] for m in used)]))


def _members_used(metadata: Any, fb: Any) -> set[str]:
    used: set[str] = set()
    file_types = {fb.AssociatedFileType.VOCABULARY: "AssociatedFileType.VOCABULARY",
                  fb.AssociatedFileType.SCANN_INDEX_FILE: "AssociatedFileType.SCANN_INDEX_FILE"}
    unit_types = {getattr(fb.ProcessUnitOptions, option): f"ProcessUnitOptions.{option}"
                  for option in ("BertTokenizerOptions", "SentencePieceTokenizerOptions",
                                 "RegexTokenizerOptions")}

    def files(entries: Iterable[Any] | None) -> None:
        for entry in entries or ():
            if entry.type in file_types:
                used.add(file_types[entry.type])
            if entry.version is not None:
                used.add("AssociatedFile.version")

    def units(entries: Iterable[Any] | None) -> None:
        used.update(unit_types[u.optionsType] for u in entries or () if u.optionsType in
                    unit_types)

    files(metadata.associatedFiles)
    for subgraph in metadata.subgraphMetadata or ():
        for tensor in [*(subgraph.inputTensorMetadata or ()),
                       *(subgraph.outputTensorMetadata or ())]:
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            if (tensor.content is not None and tensor.content.contentPropertiesType
                    == fb.ContentProperties.AudioProperties):
                used.add("ContentProperties.AudioProperties")
        files(subgraph.associatedFiles)
        units(subgraph.inputProcessUnits)
        units(subgraph.outputProcessUnits)
        for attribute, member in (("inputProcessUnits", "input_process_units"),
                                  ("outputProcessUnits", "output_process_units"),
                                  ("inputTensorGroups", "input_tensor_groups"),
                                  ("outputTensorGroups", "output_tensor_groups"),
                                  ("customMetadata", "custom_metadata")):
            if getattr(subgraph, attribute) is not None:
                used.add(f"SubGraphMetadata.{member}")
    return used


# --------------------------------------------------------------------------- checks


def _labels_file(labels: Sequence[str]) -> bytes:
    if isinstance(labels, str | bytes):
        raise TypeError("labels must be a sequence of class names, not a single string.")
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty: the metadata needs one label per class.")
    for index, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip() or "\n" in label or "\r" in label:
            raise ValueError(f"Label {index} ({label!r}) must be a non-empty single-line "
                             "string: labels.txt holds one label per line.")
    # One label per line; the Task Library splits on "\n" and drops one trailing empty line.
    return ("\n".join(labels) + "\n").encode("utf-8")


def _check_image_input(graph_in: Sequence[_GraphTensor], mean: Sequence[float],
                       std: Sequence[float]) -> _GraphTensor:
    if len(graph_in) != 1:
        raise ValueError(f"The Task Library needs exactly one image input; the model has "
                         f"{len(graph_in)}: {_describe(graph_in)}.")
    image = graph_in[0]
    if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[3] != 3:
        raise ValueError(f"The input must be one RGB image [1, H, W, 3]; the model's is "
                         f"{_describe(graph_in)}.")
    if image.dtype not in ("float32", "uint8"):
        raise ValueError(f"The Task Library takes float32 or uint8 images; the model's input "
                         f"is {_describe(graph_in)}.")
    if isinstance(mean, str | bytes) or isinstance(std, str | bytes):
        raise TypeError("mean and std must be sequences of numbers.")
    if len(mean) != len(std) or len(mean) not in (1, 3):
        raise ValueError(f"mean and std need 1 or 3 values each (one per channel); received "
                         f"{len(mean)} and {len(std)}.")
    if any(float(s) == 0.0 for s in std):
        raise ValueError(f"std must not contain zeros; received {list(std)}.")
    return image


def _check_detector_outputs(model: bytes, graph_out: Sequence[_GraphTensor],
                            postprocess: tuple[list[int], dict[str, Any]] | None,
                            num_labels: int) -> None:
    expected = "boxes [1, D, 4], classes [1, D], scores [1, D], count [1]"
    if len(graph_out) != 4:
        raise ValueError(f"An object detector needs 4 outputs ({expected}); the model has "
                         f"{len(graph_out)}: {_describe(graph_out)}.")
    if postprocess is not None:
        ports, options = postprocess
        order = [ports.index(t.tensor_index) if t.tensor_index in ports else None
                 for t in graph_out]
        if order != [0, 1, 2, 3]:
            roles = ["boxes", "classes", "scores", "count"]
            got = ", ".join(f"{t.name!r} = {roles[p] if p is not None else 'not from the op'}"
                            for t, p in zip(graph_out, order, strict=True))
            raise ValueError(f"The outputs must be the {_DETECTION_POSTPROCESS_OP} outputs in "
                             f"the order {expected}; the model's are: {got}.")
        num_classes = options.get("num_classes")
        if isinstance(num_classes, int) and num_classes != num_labels:
            raise ValueError(f"{num_labels} labels for a detector with {num_classes} classes "
                             f"({_DETECTION_POSTPROCESS_OP} num_classes).")
    else:
        shapes = [t.shape for t in graph_out]
        if not all(shapes):
            shapes = _runtime_output_shapes(model) or shapes
        d = shapes[0][1] if len(shapes[0]) == 3 else None
        if shapes != [(1, d, 4), (1, d), (1, d), (1,)]:
            raise ValueError(f"The outputs must be {expected}, in this order; the model's are "
                             f"{_describe(graph_out, shapes)}.")
    if any(t.dtype != "float32" for t in graph_out):
        raise ValueError(f"The Task Library reads all four detector outputs as float32; the "
                         f"model's are {_describe(graph_out)}.")


def _describe(tensors: Sequence[_GraphTensor],
              shapes: Sequence[tuple[int, ...]] | None = None) -> str:
    shapes = shapes if shapes is not None else [t.shape for t in tensors]
    return ", ".join(f"{t.name!r} {list(s)} {t.dtype}"
                     for t, s in zip(tensors, shapes, strict=True))


# --------------------------------------------------------------------------- model flatbuffer


def _graph(data: bytes) -> tuple[list[_GraphTensor], list[_GraphTensor],
                                 tuple[list[int], dict[str, Any]] | None]:
    """Inputs and outputs of subgraph 0, and the output ports and options of a
    ``TFLite_Detection_PostProcess`` op producing any output."""
    _, schema = _model_tools()
    if not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError(f"Not a TFLite model (file identifier {bytes(data[4:8])!r}, expected "
                         f"{TFLITE_FILE_IDENTIFIER!r}).")
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise ValueError("The TFLite model has no subgraph.")
    subgraph = model.Subgraphs(0)
    type_names = {value: key.lower() for key, value in vars(schema.TensorType).items()
                  if not key.startswith("_")}

    def tensor(index: int) -> _GraphTensor:
        t = subgraph.Tensors(index)
        return _GraphTensor(index, _text(t.Name()), type_names.get(t.Type(), str(t.Type())),
                            tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ())

    inputs = [tensor(int(i)) for i in subgraph.InputsAsNumpy()] if subgraph.InputsLength() \
        else []
    outputs = [tensor(int(i)) for i in subgraph.OutputsAsNumpy()] \
        if subgraph.OutputsLength() else []
    wanted = {t.tensor_index for t in outputs}
    postprocess = None
    for position in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(position)
        ports = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        if not wanted & set(ports):
            continue
        code = model.OperatorCodes(op.OpcodeIndex())
        if _text(code.CustomCode()) == _DETECTION_POSTPROCESS_OP:
            postprocess = (ports, _custom_options(op))
    return inputs, outputs, postprocess


def _custom_options(op: Any) -> dict[str, Any]:
    if not op.CustomOptionsLength():
        return {}
    try:
        from flatbuffers import flexbuffers

        options = flexbuffers.Loads(op.CustomOptionsAsNumpy().tobytes())
    except Exception:  # options we cannot decode only skip the label-count check
        return {}
    return options if isinstance(options, dict) else {}


def _runtime_output_shapes(model: bytes) -> list[tuple[int, ...]] | None:
    """Output shapes after ``allocate_tensors`` (ops such as TFLite_Detection_PostProcess
    leave them out of the flatbuffer); ``None`` when the model cannot be loaded here."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    try:
        interpreter = Interpreter(model_content=bytes(model))
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError):
        return None
    return [tuple(int(d) for d in o["shape"]) for o in interpreter.get_output_details()]


def _metadata_buffer(data: bytes) -> bytes | None:
    _, schema = _model_tools()
    if not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError(f"Not a TFLite model (file identifier {bytes(data[4:8])!r}, expected "
                         f"{TFLITE_FILE_IDENTIFIER!r}).")
    model = schema.Model.GetRootAs(data, 0)
    for position in range(model.MetadataLength()):
        entry = model.Metadata(position)
        if _text(entry.Name()) != TFLITE_METADATA:
            continue
        buffer = model.Buffers(entry.Buffer())
        if buffer.Offset() > 1:  # data stored outside the flatbuffer (large models)
            return bytes(data[buffer.Offset(): buffer.Offset() + buffer.Size()])
        return buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
    return None


def _aligned_builder() -> Any:
    """A ``flatbuffers.Builder`` whose byte vectors (buffer data) start on 16 bytes, as the
    converter writes them (``force_align: 16`` in the TFLite schema)."""
    import flatbuffers

    class AlignedBuilder(flatbuffers.Builder):
        def StartVector(self, elemSize: int, numElems: int,  # noqa: N803
                        alignment: int = 1) -> int:
            return int(super().StartVector(elemSize, numElems,
                                           max(alignment, 16) if elemSize == 1 else alignment))

    return AlignedBuilder(1024)


def _attach(model: bytes, metadata: Any, files: Mapping[str, bytes]) -> bytes:
    """``model`` with ``metadata`` as its TFLITE_METADATA and ``files`` appended as a zip."""
    fb = _metadata_schema()
    flatbuffer_utils, schema = _model_tools()
    metadata.minParserVersion = min_parser_version(metadata)
    builder = _aligned_builder()
    builder.Finish(metadata.Pack(builder), file_identifier=METADATA_FILE_IDENTIFIER)
    metadata_bytes = bytes(builder.Output())
    if not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(metadata_bytes, 0):
        raise AssertionError("The packed ModelMetadata lacks its M001 file identifier.")

    # Re-serializing the model drops any zip appended after the old flatbuffer: the files it
    # held belonged to the metadata being replaced.
    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata_bytes, dtype=np.uint8)
    tree.buffers = list(tree.buffers or [])
    tree.metadata = list(tree.metadata or [])
    entries = [m for m in tree.metadata if _text(m.name) == TFLITE_METADATA]
    if entries:
        tree.buffers[entries[0].buffer] = buffer
        for extra in entries[1:]:
            tree.metadata.remove(extra)
    else:
        entry = schema.MetadataT()
        entry.name = TFLITE_METADATA
        entry.buffer = len(tree.buffers)
        tree.buffers.append(buffer)
        tree.metadata.append(entry)
    builder = _aligned_builder()
    builder.Finish(tree.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)

    stream = io.BytesIO(bytes(builder.Output()))
    stream.seek(0, io.SEEK_END)
    # A new archive after the flatbuffer, as zipfile's append mode writes it on a non-zip file
    # (MetadataPopulator's layout); "w" at the end never mistakes model bytes for a zip.
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED) as archive:
        for file_name, payload in files.items():
            archive.writestr(file_name, payload)
    return stream.getvalue()


# --------------------------------------------------------------------------- reading


def _packed_files(data: bytes) -> list[str]:
    stream = io.BytesIO(data)
    if not zipfile.is_zipfile(stream):
        return []
    with zipfile.ZipFile(stream) as archive:
        return archive.namelist()


def _all_files(metadata: Any) -> list[Any]:
    found = list(metadata.associatedFiles or [])
    for subgraph in metadata.subgraphMetadata or ():
        found += subgraph.associatedFiles or []
        for tensor in [*(subgraph.inputTensorMetadata or ()),
                       *(subgraph.outputTensorMetadata or ())]:
            found += tensor.associatedFiles or []
    return found


def _read_labels(fb: Any, data: bytes, outputs_md: Sequence[Any],
                 packed: Sequence[str]) -> tuple[str, ...]:
    label_types = (fb.AssociatedFileType.TENSOR_AXIS_LABELS,
                   fb.AssociatedFileType.TENSOR_VALUE_LABELS)
    names = [_text(f.name) for tensor in outputs_md for f in tensor.associatedFiles or ()
             if f.type in label_types and not f.locale]
    name = next((n for n in names if n in packed), LABELS_FILE if LABELS_FILE in packed else "")
    if not name:
        return ()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        lines = archive.read(name).decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(lines)


def _tensor_infos(fb: Any, entries: Sequence[Any],
                  graph: Sequence[_GraphTensor]) -> tuple[TensorInfo, ...]:
    contents = {value: key for key, value in vars(fb.ContentProperties).items()
                if not key.startswith("_")}
    infos = []
    for position, entry in enumerate(entries):
        tensor = graph[position] if position < len(graph) else _GraphTensor(-1, "", "", ())
        kind = entry.content.contentPropertiesType if entry.content is not None else 0
        infos.append(TensorInfo(
            name=_text(entry.name), tensor_name=tensor.name, dtype=tensor.dtype,
            shape=tensor.shape, description=_text(entry.description),
            content=contents.get(kind, str(kind)),
            associated_files=tuple(_text(f.name) for f in entry.associatedFiles or ())))
    return tuple(infos)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _to_dict(value: Any) -> Any:
    """The object-API tree as plain dicts/lists/str/numbers (unset fields left out)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_to_dict(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__dict__"):
        return {k: _to_dict(v) for k, v in vars(value).items() if v is not None}
    return value
