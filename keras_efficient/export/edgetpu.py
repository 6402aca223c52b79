"""Edge TPU compatibility of a ``.tflite`` file: an offline report, and the real compiler.

``edgetpu_report`` reads the flatbuffer with the TFLite schema shipped in ``ai-edge-litert``
(or TensorFlow's copy) and predicts, op by op, what ``edgetpu_compiler`` 16 will do with the
main subgraph: an op maps to the Edge TPU only if its type is in Coral's supported-operations
table (:data:`SUPPORTED_OPS`), its version is one the compiler knows, every non-constant
tensor it touches is (u)int8, statically shaped, and has no dimension > 1 outside the 3
innermost ones. The compiler builds a single Edge TPU subgraph: ops before the first mappable
one (e.g. a float->int8 QUANTIZE) stay on the CPU, and every op that depends, directly or
through other ops, on an op the Edge TPU cannot run after that stays on the CPU too ("More
than one subgraph is not supported" in the compiler's own log). Ops in other branches still
map, as in compiled EfficientDet-Lite models whose two heads both run on the Edge TPU.

``compile_for_edgetpu`` runs the real compiler when it is installed and parses its ``-s``
summary into the same :class:`EdgeTPUReport`.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------
# Data: what the Edge TPU compiler (version 16.0) accepts.
# --------------------------------------------------------------------------------------------

#: Coral, "TensorFlow models on the Edge TPU", supported-operations table (compiler 16 /
#: runtime 14), keyed by TFLite builtin op name -> known limitations (not checked offline
#: except where the generic checks below cover them). LSTM in the table is the TFLite
#: UNIDIRECTIONAL_SEQUENCE_LSTM kernel.
SUPPORTED_OPS: dict[str, str] = {
    "ADD": "",
    "AVERAGE_POOL_2D": "No fused activation function.",
    "CONCATENATION": "No fused activation function. If any input is a compile-time constant, "
                     "there must be only 2 inputs and the constant must be all zeros "
                     "(effectively a zero-padding op).",
    "CONV_2D": "Must use the same dilation in x and y dimensions.",
    "DEPTHWISE_CONV_2D": "Must use the same dilation in x and y dimensions.",
    "EXPAND_DIMS": "",
    "FULLY_CONNECTED": "Only the default format is supported for fully-connected weights. "
                       "Output tensor is one-dimensional.",
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "Unidirectional LSTM only.",
    "MAXIMUM": "",
    "MAX_POOL_2D": "No fused activation function.",
    "MEAN": "No reduction in batch dimension. If a z-reduction, the z-dimension must be a "
            "multiple of 4.",
    "MINIMUM": "",
    "MUL": "",
    "PACK": "No packing in batch dimension.",
    "PAD": "No padding in batch dimension.",
    "PRELU": "Alpha must be 1-dimensional (only the innermost dimension can be > 1).",
    "QUANTIZE": "",
    "REDUCE_MAX": "Cannot operate on the batch dimension.",
    "REDUCE_MIN": "Cannot operate on the batch dimension.",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "Certain reshapes might not be mapped for large tensor sizes.",
    "RESIZE_BILINEAR": "Input/output is a 3-dimensional tensor. Depending on input/output size, "
                       "may not be mapped to avoid loss in precision.",
    "RESIZE_NEAREST_NEIGHBOR": "Input/output is a 3-dimensional tensor. Depending on "
                               "input/output size, may not be mapped to avoid loss in "
                               "precision.",
    "RSQRT": "",
    "SLICE": "",
    "SOFTMAX": "Supports only 1-D input tensor with a max of 16,000 elements.",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "No splitting in batch dimension.",
    "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "No squeezing in batch dimension.",
    "STRIDED_SLICE": "Supported only when all strides are 1 (effectively a slice), with "
                     "ellipsis-axis-mask == 0 and new-axis-mask == 0.",
    "SUB": "",
    "SUM": "Cannot operate on the batch dimension.",
    "TANH": "",
    "TRANSPOSE": "",
    "TRANSPOSE_CONV": "",
}

#: Highest op version edgetpu_compiler 16.0 is assumed to know, per op. How the numbers were
#: chosen: compiler 16.0.384591198 was built in mid-2021 on the TFLite of that time, so it can
#: only know op versions that existed then. TFLite's
#: ``tensorflow/lite/tools/versioning/runtime_version.cc`` maps every (op, version) to the
#: first TFLite release that runs it; each number below is the highest version whose minimum
#: runtime is <= 2.5.0 (the last TF release before that build; 2.6-era versions are left out
#: to stay conservative). Ops without an entry have no known bound: they are not flagged on
#: version, and the report says so in its notes.
MAX_OP_VERSION: dict[str, int] = {
    "ADD": 3, "AVERAGE_POOL_2D": 3, "CONCATENATION": 3, "CONV_2D": 5,
    "DEPTHWISE_CONV_2D": 6, "EXPAND_DIMS": 1, "FULLY_CONNECTED": 9, "L2_NORMALIZATION": 2,
    "LOGISTIC": 3, "UNIDIRECTIONAL_SEQUENCE_LSTM": 3, "MAXIMUM": 4, "MAX_POOL_2D": 3,
    "MEAN": 3, "MINIMUM": 4, "MUL": 4, "PACK": 3, "PAD": 3, "PRELU": 1, "QUANTIZE": 2,
    "REDUCE_MAX": 3, "REDUCE_MIN": 3, "RELU": 3, "RELU6": 3, "RELU_N1_TO_1": 1, "RESHAPE": 1,
    "RESIZE_BILINEAR": 4, "RESIZE_NEAREST_NEIGHBOR": 4, "RSQRT": 2, "SLICE": 5, "SOFTMAX": 3,
    "SPACE_TO_DEPTH": 2, "SPLIT": 4, "SQUARED_DIFFERENCE": 2, "SQUEEZE": 2, "STRIDED_SLICE": 5,
    "SUB": 5, "SUM": 2, "TANH": 3, "TRANSPOSE": 5, "TRANSPOSE_CONV": 3,
}

# Statuses, in the compiler's own words where its log has one ("Operator  Count  Status"):
# Coral's issue tracker shows edgetpu_compiler 14-16 logs with these strings.
MAPPED = "Mapped to Edge TPU"
UNSUPPORTED_OP = "Operation not supported"
UNSUPPORTED_VERSION = "Operation version not supported"
UNSUPPORTED_TYPE = "Operation is working on an unsupported data type"
UNSUPPORTED_RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
#: Every otherwise-mappable op after the cut (the compiler builds a single Edge TPU subgraph).
AFTER_CUT = "More than one subgraph is not supported"
#: The compiler's catch-all (e.g. for a float input QUANTIZE); not produced offline.
UNSPECIFIED = ("Operation is otherwise supported, but not mapped due to some unspecified "
               "limitation")
# Offline-only statuses (the compiler fails the whole model or names no reason).
DYNAMIC_TENSOR = "Attempted to map a dynamic-sized tensor"
CUSTOM_OP = "Custom op"

COMPILER = "edgetpu_compiler"
INSTALL_HINT = (
    "The Edge TPU compiler (edgetpu_compiler) is not on PATH. It runs on 64-bit x86-64 Debian/"
    "Ubuntu Linux only; install it from Coral's apt repository:\n"
    "  curl https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add -\n"
    '  echo "deb https://packages.cloud.google.com/apt coral-edgetpu-stable main" | '
    "sudo tee /etc/apt/sources.list.d/coral-edgetpu.list\n"
    "  sudo apt-get update && sudo apt-get install edgetpu-compiler\n"
    "On other systems use Coral's web compiler notebook (Google Colab)."
)

_INT8_TYPES = frozenset({"UINT8", "INT8"})
# Compile-time constant parameters (bias, shapes, axes, paddings) may be 32/64-bit integers.
_CONSTANT_TYPES = _INT8_TYPES | {"INT32", "INT64"}
_COMPILED_CUSTOM_OP = "edgetpu-custom-op"


class EdgeTPUCompilerError(RuntimeError):
    """``edgetpu_compiler`` is missing, failed, or produced no model.

    Example::

        try:
            compile_for_edgetpu("model_int8.tflite", "out/")
        except EdgeTPUCompilerError as error:
            print(error)  # not installed (with the install commands), failed, or timed out
    """


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass
class OpReport:
    """One op: its position in execution order (-1: unknown), type, and where it runs.

    Example::

        [op for op in edgetpu_report("model_int8.tflite").ops if not op.mapped]
    """

    index: int
    op: str
    mapped: bool
    reason: str


@dataclass
class EdgeTPUReport:
    """Per-op Edge TPU mapping, from the offline check or from ``edgetpu_compiler``.

    Example::

        report = edgetpu_report("model_int8.tflite")
        report.mapped_count, report.cpu_count, report.first_unmapped
        print(report.table())  # the compiler's -s summary format
    """

    ops: list[OpReport]
    source: str = "offline"
    notes: list[str] = field(default_factory=list)
    compiler_version: str | None = None

    @property
    def mapped_count(self) -> int:
        """Ops that run on the Edge TPU."""
        return sum(op.mapped for op in self.ops)

    @property
    def cpu_count(self) -> int:
        """Ops that run on the CPU."""
        return len(self.ops) - self.mapped_count

    @property
    def first_unmapped(self) -> OpReport | None:
        """The first op, in execution order, that runs on the CPU (None: all mapped).

        A compiler report has no order: there it is the first CPU row whose status is not a
        consequence of an earlier cut (:data:`AFTER_CUT`, :data:`UNSPECIFIED`)."""
        cpu = [op for op in self.ops if not op.mapped]
        if self.source != "offline":
            cpu = [op for op in cpu if op.reason not in (AFTER_CUT, UNSPECIFIED)] or cpu
        return cpu[0] if cpu else None

    def rows(self) -> list[tuple[str, int, str]]:
        """``(operator, count, status)`` grouped by (op, status), in order of first use."""
        counts: dict[tuple[str, str], int] = {}
        for op in self.ops:
            key = (op.op, op.reason)
            counts[key] = counts.get(key, 0) + 1
        return [(name, count, status) for (name, status), count in counts.items()]

    def table(self) -> str:
        """The compiler's ``-s`` summary: op counts, then the Operator | Count | Status table."""
        lines = [f"Number of operations that will run on Edge TPU: {self.mapped_count}",
                 f"Number of operations that will run on CPU: {self.cpu_count}",
                 "",
                 f"{'Operator':<30} {'Count':<10} Status",
                 ""]
        lines += [f"{name:<30} {count:<10} {status}" for name, count, status in self.rows()]
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable digest for an export manifest."""
        first = self.first_unmapped
        return {
            "source": self.source,
            "compiler_version": self.compiler_version,
            "mapped": self.mapped_count,
            "on_cpu": self.cpu_count,
            "first_cpu_op": None if first is None else {
                "index": first.index if first.index >= 0 else None,
                "op": first.op, "reason": first.reason},
            "rows": [{"op": name, "count": count, "status": status}
                     for name, count, status in self.rows()],
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------------------------
# Offline check
# --------------------------------------------------------------------------------------------


@functools.cache
def _schema() -> Any:
    """The TFLite flatbuffer schema module: LiteRT's, else TensorFlow's."""
    for name in ("ai_edge_litert.schema_py_generated",
                 "tensorflow.lite.python.schema_py_generated"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("Reading .tflite files needs ai-edge-litert (pip install "
                      "'keras_efficient[export]') or TensorFlow.")


@functools.cache
def _enum_names(enum_name: str) -> dict[int, str]:
    enum = getattr(_schema(), enum_name)
    return {value: name for name, value in vars(enum).items()
            if not name.startswith("_") and isinstance(value, int)}


@dataclass(frozen=True)
class _Tensor:
    type: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    constant: bool
    name: str


def _read_bytes(model: str | os.PathLike[str] | bytes | bytearray) -> bytes:
    if isinstance(model, bytes | bytearray):
        return bytes(model)
    path = Path(model)
    if not path.is_file():
        raise ValueError(f"TFLite model {path} does not exist.")
    return path.read_bytes()


def _tensors(graph: Any, model: Any) -> Iterator[_Tensor]:
    types = _enum_names("TensorType")
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        signature = (tuple(int(d) for d in tensor.ShapeSignatureAsNumpy())
                     if tensor.ShapeSignatureLength() else shape)
        buffer_index = tensor.Buffer()
        constant = False
        if 0 < buffer_index < model.BuffersLength():
            buffer = model.Buffers(buffer_index)
            constant = buffer.DataLength() > 0 or buffer.Offset() > 1
        name = tensor.Name()
        yield _Tensor(types.get(tensor.Type(), str(tensor.Type())), shape, signature, constant,
                      name.decode("utf-8", "replace") if name else f"tensor {i}")


def _indices(operator: Any, which: str) -> list[int]:
    """An operator's input or output tensor indices (-1: an omitted optional input)."""
    if not getattr(operator, f"{which}Length")():
        return []
    return [int(i) for i in getattr(operator, f"{which}AsNumpy")()]


def _op_name(code: Any) -> tuple[str, str]:
    """(builtin op name, custom code or '')."""
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = _enum_names("BuiltinOperator").get(builtin, f"BUILTIN_{builtin}")
    custom = code.CustomCode()
    return name, custom.decode("utf-8", "replace") if custom else ""


def _failure(name: str, custom: str, version: int, tensors: list[_Tensor]) -> str | None:
    """Why this op cannot be mapped on its own, or None if it can."""
    if name == "CUSTOM":
        return None if custom == _COMPILED_CUSTOM_OP else f"{CUSTOM_OP} ({custom}) is not supported"
    if name == "DEQUANTIZE":
        return UNSUPPORTED_TYPE
    if name not in SUPPORTED_OPS:
        return UNSUPPORTED_OP
    if version > MAX_OP_VERSION.get(name, version):
        return UNSUPPORTED_VERSION
    activations = [t for t in tensors if not t.constant]
    if any(d < 0 for t in activations for d in t.signature):
        return DYNAMIC_TENSOR
    for tensor in tensors:
        if tensor.type not in (_CONSTANT_TYPES if tensor.constant else _INT8_TYPES):
            return UNSUPPORTED_TYPE
    if any(d > 1 for t in activations for d in t.shape[:-3]):
        return UNSUPPORTED_RANK
    return None


def edgetpu_report(model: str | os.PathLike[str] | bytes | bytearray) -> EdgeTPUReport:
    """Predict which ops of ``model`` (a path or the flatbuffer bytes) edgetpu_compiler 16 maps.

    Ops before the first mappable op stay on the CPU (e.g. a float->int8 QUANTIZE); the Edge
    TPU segment then takes every supported op that does not depend on an op the Edge TPU
    cannot run; an op downstream of such a CPU op runs on the CPU too: with its own reason if
    it could not be mapped anyway, else :data:`AFTER_CUT`. Branches that do not depend on the
    CPU op (a detector's class head beside a dequantized box head) still map.

    Example::

        report = edgetpu_report(Path("export/lite0-edgetpu/model_int8.tflite"))
        report.summary()["first_cpu_op"]  # e.g. {"index": ..., "op": "DEQUANTIZE", ...}
    """
    schema = _schema()
    data = _read_bytes(model)
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError("Not a TFLite flatbuffer (missing the 'TFL3' identifier).")
    root = schema.Model.GetRootAs(data, 0)
    if root.SubgraphsLength() == 0:
        raise ValueError("The TFLite model has no subgraph.")
    graph = root.Subgraphs(0)
    tensors = list(_tensors(graph, root))
    codes = [_op_name(root.OperatorCodes(i)) for i in range(root.OperatorCodesLength())]
    versions = [root.OperatorCodes(i).Version() for i in range(root.OperatorCodesLength())]

    ops: list[OpReport] = []
    notes: list[str] = []
    # Tensors downstream of the Edge TPU segment, and tensors downstream of a CPU op that
    # follows it (the cut): an op fed by a cut tensor cannot join the single segment.
    after_tpu: set[int] = set()
    cut: set[int] = set()
    for index in range(graph.OperatorsLength()):
        operator = graph.Operators(index)
        (name, custom), version = codes[operator.OpcodeIndex()], versions[operator.OpcodeIndex()]
        inputs = [i for i in _indices(operator, "Inputs") if i >= 0]
        outputs = [i for i in _indices(operator, "Outputs") if i >= 0]
        used = [tensors[i] for i in (*inputs, *outputs)]
        reason = _failure(name, custom, version, used)
        if reason is None and any(i in cut for i in inputs):
            reason = AFTER_CUT
        if reason is None:
            after_tpu.update(outputs)
            ops.append(OpReport(index, name, True, MAPPED))
            continue
        if any(i in after_tpu or i in cut for i in inputs):
            cut.update(outputs)
        ops.append(OpReport(index, name, False, reason))
        if reason == UNSUPPORTED_RANK:
            bad = next(t for t in used if not t.constant and any(d > 1 for d in t.shape[:-3]))
            notes.append(f"Op {index} ({name}): tensor {bad.name!r} has shape "
                         f"{list(bad.shape)}; only the 3 innermost dimensions may be > 1.")
        elif reason == UNSUPPORTED_VERSION:
            notes.append(f"Op {index} ({name}) is version {version}; compiler 16 is assumed to "
                         f"know up to version {MAX_OP_VERSION[name]}.")

    present = {op.op for op in ops}
    if any(op.reason == DYNAMIC_TENSOR for op in ops):
        notes.append("edgetpu_compiler 16 refuses models with dynamic-sized tensors outright "
                     "(\"Attempting to use a delegate that only supports static-sized tensors\"); "
                     "convert with a static batch of 1.")
    unknown = sorted(present & (SUPPORTED_OPS.keys() - MAX_OP_VERSION.keys()))
    if unknown:
        notes.append(f"No known maximum op version for {', '.join(unknown)}: not checked.")
    notes += [f"Not checked offline: {name}: {SUPPORTED_OPS[name]}"
              for name in sorted(present) if SUPPORTED_OPS.get(name)]
    if root.SubgraphsLength() > 1:
        notes.append(f"Only the main subgraph was checked ({root.SubgraphsLength()} subgraphs).")
    return EdgeTPUReport(ops, "offline", notes)


# --------------------------------------------------------------------------------------------
# The real compiler
# --------------------------------------------------------------------------------------------


def find_compiler() -> str | None:
    """The path of ``edgetpu_compiler`` on PATH, or None.

    Example::

        if find_compiler() is None:
            print(INSTALL_HINT)
    """
    return shutil.which(COMPILER)


_HEADER = re.compile(r"^\s*Operator\s+Count\s+Status\s*$")
_ROW = re.compile(r"^\s*(\S+)\s+(\d+)\s+(\S.*?)\s*$")
_VERSION = re.compile(r"Edge TPU Compiler version\s+(\S+)")


def parse_compiler_log(text: str) -> EdgeTPUReport:
    """An :class:`EdgeTPUReport` from edgetpu_compiler's ``-s`` output or its ``.log`` file.

    The compiler's summary does not give op positions: every op gets index -1.

    Example::

        report = parse_compiler_log(Path("model_int8_edgetpu.log").read_text())
    """
    ops: list[OpReport] = []
    in_table = False
    for line in text.splitlines():
        if _HEADER.match(line):
            in_table = True
            continue
        if not in_table or not line.strip():
            continue
        row = _ROW.match(line)
        if row is None:
            if ops:
                break
            continue
        name, count, status = row.group(1), int(row.group(2)), row.group(3)
        ops += [OpReport(-1, name, status == MAPPED, status) for _ in range(count)]
    if not in_table:
        raise EdgeTPUCompilerError("No 'Operator  Count  Status' table in the compiler output.")
    version = _VERSION.search(text)
    return EdgeTPUReport(ops, "edgetpu_compiler", [],
                         version.group(1) if version else None)


def compile_for_edgetpu(path: str | os.PathLike[str], output_dir: str | os.PathLike[str], *,
                        timeout: float = 600.0) -> tuple[Path, EdgeTPUReport]:
    """Run ``edgetpu_compiler -s`` on ``path``; return ``<output_dir>/<stem>_edgetpu.tflite``
    and the compiler's per-op report.

    The compiler writes into a temporary folder inside ``output_dir``; its model (and its
    ``.log``) are moved into place only on success, so a failure leaves nothing behind.

    Example::

        compiled, report = compile_for_edgetpu("model_int8.tflite", "export/edgetpu")
        print(report.table())
    """
    compiler = find_compiler()
    if compiler is None:
        raise EdgeTPUCompilerError(INSTALL_HINT)
    source = Path(path)
    if not source.is_file():
        raise ValueError(f"TFLite model {source} does not exist.")
    out = Path(output_dir)
    if not out.is_dir():
        raise ValueError(f"Output folder {out} does not exist; create it first.")
    name = f"{source.stem}_edgetpu"
    with tempfile.TemporaryDirectory(prefix=".edgetpu-", dir=out) as work:
        command = [compiler, "-s", "-o", work, os.fspath(source.resolve())]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as error:
            raise EdgeTPUCompilerError(f"edgetpu_compiler timed out after {timeout:g} s on "
                                       f"{source.name}.") from error
        compiled = Path(work) / f"{name}.tflite"
        if done.returncode != 0 or not compiled.is_file():
            detail = (done.stderr.strip() or done.stdout.strip())[-4000:]
            raise EdgeTPUCompilerError(
                f"edgetpu_compiler failed on {source.name} (exit code {done.returncode}"
                f"{'' if compiled.is_file() else ', no output model'}):\n{detail}")
        log = Path(work) / f"{name}.log"
        try:
            report = parse_compiler_log(done.stdout)
        except EdgeTPUCompilerError:
            if not log.is_file():
                raise
            report = parse_compiler_log(log.read_text(errors="replace"))
        target = out / compiled.name
        os.replace(compiled, target)
        if log.is_file():
            os.replace(log, out / log.name)
    return target, report
