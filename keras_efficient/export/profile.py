"""Where a ``.tflite`` file spends its time in LiteRT: a per-op profile and the XNNPACK partitions.

The Python LiteRT wheel exposes no op profiler (``benchmark_model``'s ``--enable_op_profiling``
is a C++ tool), so :func:`op_profile` times each op on its own: the file is run once with every
intermediate tensor kept, then every op becomes a one-op model fed with the tensors that run
produced, timed in the default CPU runtime (XNNPACK where it takes the op). Isolated ops miss
what the whole graph shares (delegate partition boundaries, cache reuse), so the sum differs
from the file's latency; :func:`delegate_partitions` counts the partitions.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class OpCost:
    """One op of a profile: its position in the graph, name, output shape and median ms."""

    index: int
    op: str
    output_shape: tuple[int, ...]
    ms: float


def delegate_partitions(interpreter: Any) -> int:
    """How many delegate kernels (XNNPACK partitions) a loaded LiteRT interpreter runs.

    Example::

        delegate_partitions(load_interpreter("lite0_int8.tflite"))  # 14 before issue 16, 2 after
    """
    nodes = interpreter._interpreter
    return sum(nodes.NodeName(i) == "DELEGATE" for i in range(nodes.NumNodes()))


def _feed(path: str | os.PathLike[str], image: np.ndarray | None) -> dict[int, np.ndarray]:
    """Every tensor of one reference run (no delegate, all intermediates kept), by index."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=os.fspath(path), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=(
                                  OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, detail["shape"])
    interpreter.set_tensor(detail["index"], np.asarray(image).astype(detail["dtype"]))
    interpreter.invoke()
    values = {}
    for tensor in interpreter.get_tensor_details():
        try:
            values[tensor["index"]] = np.array(interpreter.get_tensor(tensor["index"]))
        except ValueError:  # tensors without data (unused optional inputs)
            continue
    return values


def op_profile(path: str | os.PathLike[str], *, threads: int = 2, runs: int = 10,
               image: np.ndarray | None = None) -> list[OpCost]:
    """Median ms of every op of ``path``'s main graph, each timed as a one-op model on the
    tensors a full run on ``image`` (default: random bytes) produced; in graph order.

    Example::

        costs = op_profile("d0_int8.tflite", threads=2)
        print(format_profile(costs, top=10))
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    values = _feed(path, image)
    tree = flatbuffer_utils.read_model(os.fspath(path))
    graph = tree.subgraphs[0]
    operators = list(graph.operators)
    data = [buffer.data for buffer in tree.buffers]
    tree.signatureDefs = []
    costs = []
    for index, op in enumerate(operators):
        inputs = [int(i) for i in op.inputs if int(i) >= 0]
        constant = {i for i in inputs if data[graph.tensors[i].buffer] is not None
                    and len(data[graph.tensors[i].buffer])}
        keep = {graph.tensors[i].buffer for i in constant}
        for number, buffer in enumerate(tree.buffers):
            buffer.data = data[number] if number in keep else None
        graph.operators = [op]
        feeds = [i for i in inputs if i not in constant]
        graph.inputs = np.asarray(feeds, dtype=np.int32)
        graph.outputs = np.asarray([int(i) for i in op.outputs], dtype=np.int32)
        interpreter = Interpreter(model_content=bytes(
            flatbuffer_utils.convert_object_to_bytearray(tree)), num_threads=threads)
        details = interpreter.get_input_details()
        for detail, tensor in zip(details, feeds, strict=True):
            if tuple(detail["shape"]) != values[tensor].shape:  # shapes the file leaves open
                interpreter.resize_tensor_input(detail["index"], list(values[tensor].shape))
        interpreter.allocate_tensors()
        for detail, tensor in zip(details, feeds, strict=True):
            interpreter.set_tensor(detail["index"], values[tensor].astype(detail["dtype"]))
        interpreter.invoke()
        times = []
        for _ in range(max(1, runs)):
            start = time.perf_counter()
            interpreter.invoke()
            times.append((time.perf_counter() - start) * 1000)
        name = flatbuffer_utils.opcode_to_name(tree, op.opcodeIndex)
        shape = tuple(int(d) for d in graph.tensors[int(op.outputs[0])].shape)
        costs.append(OpCost(index, name, shape, statistics.median(times)))
    for number, buffer in enumerate(tree.buffers):
        buffer.data = data[number]
    return costs


def format_profile(costs: Sequence[OpCost], top: int = 10) -> str:
    """The ``top`` most expensive ops and the total per op type, as text.

    Example::

        print(format_profile(op_profile("lite0_int8.tflite"), top=8))
    """
    total = sum(cost.ms for cost in costs) or 1.0
    by_type: dict[str, list[float]] = defaultdict(list)
    for cost in costs:
        by_type[cost.op].append(cost.ms)
    lines = [f"sum of {len(costs)} isolated ops: {total:.2f} ms; by op type:"]
    for name, times in sorted(by_type.items(), key=lambda item: -sum(item[1]))[:top]:
        lines.append(f"  {name:<30}{len(times):>4} ops {sum(times):>8.2f} ms "
                     f"{100 * sum(times) / total:>5.1f}%")
    lines.append(f"top {top} ops:")
    for cost in sorted(costs, key=lambda c: -c.ms)[:top]:
        lines.append(f"  #{cost.index:<4}{cost.op:<30}{list(cost.output_shape)!s:<22}"
                     f"{cost.ms:>8.3f} ms")
    return "\n".join(lines)
