"""TFLite model metadata for the Android Task Library and MediaPipe Tasks: write, read back.

The layout is tflite-support's ``MetadataPopulator``'s, which the Task Library and MediaPipe
read: a ``ModelMetadata`` flatbuffer (file identifier ``M001``) in a buffer of the model that
the ``TFLITE_METADATA`` entry of its ``metadata`` points to (an old entry is replaced; others,
such as ``min_runtime_version``, are kept), and ``labels.txt`` in a zip archive appended after
the flatbuffer, so that the bytes are both a TFLite model and a zip file. The tree is filled in
with tflite-support's generated schema classes (``metadata_schema_py_generated``, pure Python),
exactly as its ``image_classifier`` and ``object_detector`` metadata writers fill it in; the
tests compare the two field by field wherever those writers can be imported.

Why not call those writers: tflite-support 0.4.4 (its last release) pins ``protobuf<4``, and
TensorFlow 2.21 needs ``protobuf>=6.31``, so pip cannot install any tflite-support next to
TensorFlow 2.21 and a plain ``pip install`` fails; it has to be installed with ``--no-deps``.
Then ``from tflite_support.metadata_writers import ...`` still fails, because the package's
``__init__`` imports its Task API, whose protobuf-3 ``_pb2`` modules protobuf 7 refuses. The
writers import only from ``tensorflow_lite_support.metadata.python.metadata_writers``, and only
where the system library libusb-1.0 is installed (``_pywrap_metadata_version.so`` and
``_pywrap_flatbuffers.so``, which the populator needs, link it): a system package a pip user
does not have. They also take labels as file paths, and give the detector outputs their roles
by sorting tensor indices, not by the ports of ``TFLite_Detection_PostProcess`` as done here.
The schema module needs none of that. Bytes in, bytes out: the caller writes the file.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

TFLITE_METADATA = "TFLITE_METADATA"
"""Name of the model ``metadata`` entry that holds the ModelMetadata flatbuffer."""
LABELS_FILE = "labels.txt"
# Names and descriptions as tflite-support's writers set them; the Task Library / MediaPipe
# object detectors look the output names up (object_detector.cc).
INPUT_NAME = "image"
CLASSIFIER_OUTPUT_NAME = "probability"
DETECTOR_OUTPUT_NAMES = ("location", "category", "score", "number of detections")
DETECTION_GROUP = "detection_result"
_LABELS_DESCRIPTION = "Labels for categories that the model can recognize."
# Boxes are [ymin, xmin, ymax, xmax]: BOUNDARIES (left, top, right, bottom) at index 1, 0, 3, 2;
# location / category / score are indexed by detection along dimension 2 (1-based, batch = 1).
_BOX_INDEX = [1, 0, 3, 2]
_DETECTION_AXIS = 2
_POSTPROCESS_OP = "TFLite_Detection_PostProcess"
# Builtin codes of the ops a clip to [0, 1] converts to: MAXIMUM, MINIMUM, RELU, RELU_0_TO_1.
_CLIP_OPS = {55, 57, 19, 152}

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


def _metadata_schema() -> Any:
    try:
        from tensorflow_lite_support.metadata import metadata_schema_py_generated
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return metadata_schema_py_generated


# --------------------------------------------------------------------------- writing


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
    tree, graph_in, graph_out = _parse(model)
    image = _check_image_input(graph_in, mean, std)
    if len(graph_out) != 1:
        raise ValueError(f"An image classifier needs exactly one output; the model has "
                         f"{len(graph_out)}: {_describe(graph_out)}.")
    out = graph_out[0]
    if out.dtype not in ("float32", "uint8"):
        raise ValueError(f"The classifier output must be float32 or uint8 for the Task Library; "
                         f"the model's is {_describe(graph_out)}.")
    shape = out.shape or (_runtime_output_shapes(model) or [()])[0]
    if shape and shape[-1] != len(labels):
        raise ValueError(f"{len(labels)} labels for a classifier with {shape[-1]} classes "
                         f"(output {out.name!r} of shape {list(shape)}).")

    output = _tensor(fb, CLASSIFIER_OUTPUT_NAME, "Probabilities of the labels respectively.",
                     fb.FeaturePropertiesT(),
                     stats=_stats(fb, [0.0], [255.0 if out.dtype == "uint8" else 1.0]),
                     associatedFiles=[_labels_entry(fb, fb.AssociatedFileType.TENSOR_AXIS_LABELS)])
    subgraph = _new(fb.SubGraphMetadataT, outputTensorMetadata=[output], inputTensorMetadata=[
        _image_tensor(fb, image, mean, std, "Input image to be classified.")])
    return _attach(model, tree, _model_metadata(fb, subgraph, name, description, version,
                                                author, license), label_bytes)


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
    tree, graph_in, graph_out = _parse(model)
    image = _check_image_input(graph_in, mean, std)
    _check_detector_outputs(model, tree, graph_out, len(labels))

    box = _new(fb.BoundingBoxPropertiesT, index=list(_BOX_INDEX),
               type=fb.BoundingBoxType.BOUNDARIES, coordinateType=fb.CoordinateType.RATIO)
    outputs = [
        _tensor(fb, DETECTOR_OUTPUT_NAMES[0], "The locations of the detected boxes.", box),
        _tensor(fb, DETECTOR_OUTPUT_NAMES[1], "The categories of the detected boxes.",
                fb.FeaturePropertiesT(), associatedFiles=[
                    _labels_entry(fb, fb.AssociatedFileType.TENSOR_VALUE_LABELS)]),
        _tensor(fb, DETECTOR_OUTPUT_NAMES[2], "The scores of the detected boxes.",
                fb.FeaturePropertiesT()),
        _tensor(fb, DETECTOR_OUTPUT_NAMES[3], "The number of the detected boxes.",
                fb.FeaturePropertiesT())]
    for tensor in outputs[:3]:
        tensor.content.range = _new(fb.ValueRangeT, min=_DETECTION_AXIS, max=_DETECTION_AXIS)
    subgraph = _new(
        fb.SubGraphMetadataT, outputTensorMetadata=outputs,
        inputTensorMetadata=[_image_tensor(fb, image, mean, std, "Input image to be detected.")],
        outputTensorGroups=[_new(fb.TensorGroupT, name=DETECTION_GROUP,
                                 tensorNames=list(DETECTOR_OUTPUT_NAMES[:3]))])
    return _attach(model, tree, _model_metadata(fb, subgraph, name, description, version,
                                                author, license), label_bytes)


def _new(table: type, **fields: Any) -> Any:
    """An object-API table of the schema with ``fields`` set (``Pack`` ignores unknown names,
    so they are refused here)."""
    instance = table()
    unknown = set(fields) - set(vars(instance))
    if unknown:
        raise AttributeError(f"{table.__name__} has no field(s) {sorted(unknown)}.")
    vars(instance).update(fields)
    return instance


def _tensor(fb: Any, name: str, description: str, properties: Any, **fields: Any) -> Any:
    # FeaturePropertiesT -> ContentProperties.FeatureProperties, etc.
    kind = getattr(fb.ContentProperties, type(properties).__name__.removesuffix("T"))
    content = _new(fb.ContentT, contentPropertiesType=kind, contentProperties=properties)
    return _new(fb.TensorMetadataT, name=name, description=description, content=content,
                **fields)


def _stats(fb: Any, low: Sequence[float], high: Sequence[float]) -> Any:
    return _new(fb.StatsT, min=[float(v) for v in low], max=[float(v) for v in high])


def _labels_entry(fb: Any, file_type: int) -> Any:
    return _new(fb.AssociatedFileT, name=LABELS_FILE, description=_LABELS_DESCRIPTION,
                type=file_type)


def _image_tensor(fb: Any, image: _GraphTensor, mean: Sequence[float], std: Sequence[float],
                  description: str) -> Any:
    normalization = _new(fb.ProcessUnitT, optionsType=fb.ProcessUnitOptions.NormalizationOptions,
                         options=_new(fb.NormalizationOptionsT, mean=[float(v) for v in mean],
                                      std=[float(v) for v in std]))
    # Stats describe the values the tensor holds: raw pixels for uint8; for float32, pixels
    # 0..255 after (pixel - mean) / std, per channel.
    pairs = list(zip(mean, std, strict=True))
    stats = (_stats(fb, [0.0], [255.0]) if image.dtype == "uint8" else
             _stats(fb, [-m / s for m, s in pairs], [(255.0 - m) / s for m, s in pairs]))
    return _tensor(fb, INPUT_NAME, description,
                   _new(fb.ImagePropertiesT, colorSpace=fb.ColorSpaceType.RGB),
                   processUnits=[normalization], stats=stats)


def _model_metadata(fb: Any, subgraph: Any, name: str, description: str, version: str,
                    author: str, license: str) -> Any:
    if not name:
        raise ValueError("The metadata needs a model name.")
    # The lowest parser that reads every member set: all are in metadata 1.0.0 except
    # output_tensor_groups, added in 1.2.0 (tflite-support's populator computes the same).
    return _new(fb.ModelMetadataT, name=name, description=description or None,
                version=version or None, author=author or None, license=license or None,
                subgraphMetadata=[subgraph],
                minParserVersion="1.2.0" if subgraph.outputTensorGroups else "1.0.0")


def _attach(model: bytes, tree: Any, metadata: Any, labels: bytes) -> bytes:
    """``model`` (parsed as ``tree``) with ``metadata`` as its TFLITE_METADATA and ``labels``
    packed as ``labels.txt`` in a zip appended after the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    builder = _aligned_builder()
    builder.Finish(metadata.Pack(builder), file_identifier=b"M001")
    buffer = _new(schema.BufferT, data=np.frombuffer(bytes(builder.Output()), dtype=np.uint8))
    # Re-serializing drops the zip of an old entry: its files belonged to the metadata replaced.
    tree.buffers = list(tree.buffers or [])
    old = [entry for entry in tree.metadata or [] if _text(entry.name) == TFLITE_METADATA]
    tree.metadata = [entry for entry in tree.metadata or [] if entry not in old[1:]]
    if old:
        tree.buffers[old[0].buffer] = buffer
    else:
        tree.metadata.append(_new(schema.MetadataT, name=TFLITE_METADATA,
                                  buffer=len(tree.buffers)))
        tree.buffers.append(buffer)
    builder = _aligned_builder()
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    stream = io.BytesIO(bytes(builder.Output()))
    stream.seek(0, io.SEEK_END)
    # A new archive after the flatbuffer, as zipfile's append mode writes one on a non-zip file
    # (the populator's layout); "w" at the end never mistakes model bytes for a zip.
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, labels)
    return stream.getvalue()


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


# --------------------------------------------------------------------------- checks


def _labels_file(labels: Sequence[str]) -> bytes:
    if isinstance(labels, str | bytes):
        raise TypeError("labels must be a sequence of class names, not a single string.")
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


def _check_detector_outputs(model: bytes, tree: Any, graph_out: Sequence[_GraphTensor],
                            num_labels: int) -> None:
    expected = "boxes [1, D, 4], classes [1, D], scores [1, D], count [1]"
    if len(graph_out) != 4:
        raise ValueError(f"An object detector needs 4 outputs ({expected}); the model has "
                         f"{len(graph_out)}: {_describe(graph_out)}.")
    graph = tree.subgraphs[0]
    sources = {_before_clip(tree, graph, t.tensor_index) for t in graph_out}
    op = next((op for op in graph.operators or []
               if _text(tree.operatorCodes[op.opcodeIndex].customCode) == _POSTPROCESS_OP
               and sources & set(op.outputs or [])), None)
    if op is not None:
        ports = list(op.outputs)
        indices = [_before_clip(tree, graph, t.tensor_index) for t in graph_out]
        if indices != ports[:4]:
            roles = dict(zip(ports, ["boxes", "classes", "scores", "count"], strict=False))
            got = ", ".join(f"{t.name!r} = {roles.get(i, 'not from the op')}"
                            for t, i in zip(graph_out, indices, strict=True))
            raise ValueError(f"The outputs must be the {_POSTPROCESS_OP} outputs in the order "
                             f"{expected}; the model's are: {got}.")
        num_classes = _custom_options(op).get("num_classes")
        if isinstance(num_classes, int) and num_classes != num_labels:
            raise ValueError(f"{num_labels} labels for a detector with {num_classes} classes "
                             f"({_POSTPROCESS_OP} num_classes).")
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


def _before_clip(tree: Any, graph: Any, index: int) -> int:
    """The tensor that ``index`` is clipped from (the export clips the op's boxes to [0, 1]:
    MINIMUM then RELU), or ``index`` itself."""
    producers = {int(out): op for op in graph.operators or [] for out in op.outputs}
    while index in producers:
        op = producers[index]
        code = tree.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if builtin not in _CLIP_OPS:
            break
        index = int(op.inputs[0])
    return index


def _custom_options(op: Any) -> dict[str, Any]:
    try:
        from flatbuffers import flexbuffers

        options = flexbuffers.Loads(bytes(op.customOptions))
    except Exception:  # options we cannot decode only skip the label-count check
        return {}
    return options if isinstance(options, dict) else {}


def _describe(tensors: Sequence[_GraphTensor],
              shapes: Sequence[tuple[int, ...]] | None = None) -> str:
    shapes = shapes if shapes is not None else [t.shape for t in tensors]
    return ", ".join(f"{t.name!r} {list(s)} {t.dtype}"
                     for t, s in zip(tensors, shapes, strict=True))


def _runtime_output_shapes(model: bytes) -> list[tuple[int, ...]] | None:
    """Output shapes after ``allocate_tensors`` (ops such as TFLite_Detection_PostProcess
    leave them out of the flatbuffer); ``None`` when the model cannot be loaded here."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=bytes(model))
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError):
        return None
    return [tuple(int(d) for d in o["shape"]) for o in interpreter.get_output_details()]


# --------------------------------------------------------------------------- reading


def _parse(data: bytes) -> tuple[Any, list[_GraphTensor], list[_GraphTensor]]:
    """The model's object-API tree and the inputs and outputs of subgraph 0."""
    from ai_edge_litert.tools import flatbuffer_utils

    if bytes(data[4:8]) != b"TFL3":
        raise ValueError(f"Not a TFLite model (file identifier {bytes(data[4:8])!r}, expected "
                         "b'TFL3').")
    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    if not tree.subgraphs:
        raise ValueError("The TFLite model has no subgraph.")
    graph = tree.subgraphs[0]
    types = {value: key.lower() for key, value in vars(flatbuffer_utils.schema_fb.TensorType)
             .items() if not key.startswith("_")}

    def tensors(indices: Any) -> list[_GraphTensor]:
        found = [(int(i), graph.tensors[i]) for i in indices or []]
        return [_GraphTensor(i, _text(t.name), types.get(t.type, str(t.type)),
                             tuple(int(d) for d in t.shape) if t.shape is not None else ())
                for i, t in found]

    return tree, tensors(graph.inputs), tensors(graph.outputs)


def read_metadata(model: bytes | bytearray | str | os.PathLike[str]) -> ModelInfo:
    """The Task Library metadata of a model (bytes or a path), its packed files and labels.

    Example::

        read_metadata("export/demo/model_int8.tflite").labels  # ("circle", "square", ...)
    """
    data = Path(model).read_bytes() if isinstance(model, str | os.PathLike) else bytes(model)
    fb = _metadata_schema()
    tree, graph_in, graph_out = _parse(data)
    entry = next((m for m in tree.metadata or [] if _text(m.name) == TFLITE_METADATA), None)
    if entry is None:
        raise MissingMetadataError(
            f"The model has no {TFLITE_METADATA} entry (no Task Library metadata); write it "
            "with write_classifier_metadata or write_detector_metadata.")
    content = tree.buffers[entry.buffer].data
    buffer = bytes(content) if content is not None else b""
    if not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0):
        raise ValueError(f"The {TFLITE_METADATA} buffer is not a ModelMetadata flatbuffer "
                         f"(file identifier {buffer[4:8]!r}, expected b'M001').")
    metadata = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(buffer, 0))
    subgraph = (metadata.subgraphMetadata or [fb.SubGraphMetadataT()])[0]
    inputs_md = subgraph.inputTensorMetadata or []
    outputs_md = subgraph.outputTensorMetadata or []
    norm = next((unit.options for md in inputs_md[:1] for unit in md.processUnits or []
                 if unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions), None)
    files = [*(metadata.associatedFiles or []), *(subgraph.associatedFiles or []),
             *(f for md in [*inputs_md, *outputs_md] for f in md.associatedFiles or [])]
    packed = _packed(data)
    return ModelInfo(
        name=_text(metadata.name), description=_text(metadata.description),
        version=_text(metadata.version), author=_text(metadata.author),
        license=_text(metadata.license), min_parser_version=_text(metadata.minParserVersion),
        inputs=_tensor_infos(fb, inputs_md, graph_in),
        outputs=_tensor_infos(fb, outputs_md, graph_out),
        mean=tuple(float(v) for v in norm.mean) if norm and norm.mean is not None else (),
        std=tuple(float(v) for v in norm.std) if norm and norm.std is not None else (),
        output_groups={_text(group.name): tuple(_text(n) for n in group.tensorNames or ())
                       for group in subgraph.outputTensorGroups or []},
        associated_files=tuple(_text(f.name) for f in files),
        packed_files=tuple(packed), labels=_read_labels(fb, outputs_md, packed),
        raw=_to_dict(metadata))


def _packed(data: bytes) -> dict[str, bytes]:
    """The files of the zip appended to the model, by name."""
    stream = io.BytesIO(data)
    if not zipfile.is_zipfile(stream):
        return {}
    with zipfile.ZipFile(stream) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _read_labels(fb: Any, outputs_md: Sequence[Any],
                 packed: Mapping[str, bytes]) -> tuple[str, ...]:
    label_types = (fb.AssociatedFileType.TENSOR_AXIS_LABELS,
                   fb.AssociatedFileType.TENSOR_VALUE_LABELS)
    names = [_text(f.name) for md in outputs_md for f in md.associatedFiles or ()
             if f.type in label_types and not f.locale]
    name = next((n for n in [*names, LABELS_FILE] if n in packed), None)
    if name is None:
        return ()
    lines = packed[name].decode("utf-8").split("\n")
    return tuple(lines[:-1] if lines[-1] == "" else lines)


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
    if isinstance(value, np.ndarray | list | tuple):
        return [_to_dict(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__dict__"):
        return {k: _to_dict(v) for k, v in vars(value).items() if v is not None}
    return value
