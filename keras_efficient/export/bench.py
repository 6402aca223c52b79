"""``keras-efficient bench``: one model in every format side by side (latency, size, accuracy).

Every format is produced and verified by :func:`~keras_efficient.export.pipeline.export_model`
(so the figures are those of the verified artifacts), and the Keras model is timed in the same
run on the same image; the table and a PNG plot come from the resulting manifest.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_efficient.export.pipeline import ExportJob, export_job
from keras_efficient.export.recipes import Recipe
from keras_efficient.export.verify import median_ms

BENCH_FORMATS = ("saved_model", "float32", "float16", "dynamic", "int8")


def keras_row(job: ExportJob, runs: int) -> dict[str, Any]:
    """Latency of the Keras model itself (a compiled call at batch 1) and its weight bytes.

    Example::

        keras_row(job, runs=20)["latency_ms"]["2_threads"]  # the Keras model's own latency
    """
    import tensorflow as tf

    model = job.model
    image = tf.constant(np.asarray(job.representative[0], dtype="float32"))
    call = tf.function(lambda x: model(x, training=False), jit_compile=False)
    call(image)
    latency = median_ms(lambda: tf.nest.map_structure(np.asarray, call(image)), runs)
    size = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    return {"format": "keras", "bytes": size, "latency_ms": {"1_threads": None,
                                                            "2_threads": latency},
            "accuracy": {}}


def benchmark(job: ExportJob, output_dir: str | os.PathLike[str], *, runs: int = 20,
              formats: Sequence[str] = BENCH_FORMATS, input_type: str = "uint8",
              log: Any = print, compiled_model: bool = False) -> list[dict[str, Any]]:
    """Export ``job`` in ``formats`` into ``output_dir`` and return one row per format, Keras
    first. The Keras row is timed by TensorFlow with its own thread pool (all cores).
    ``compiled_model``: also time every TFLite file in LiteRT's ``CompiledModel`` at 2 threads,
    interleaved run by run with the ``Interpreter`` (:func:`runtime_latencies`).

    Example::

        rows = benchmark(fresh_detector_job(), "bench-out", runs=20)
        print(format_table(rows))
    """
    recipe = Recipe(name="bench", formats=tuple(formats), input_type=input_type,
                    latency_runs=runs, representative_count=len(job.representative),
                    metadata=False)
    manifest = export_job(job, recipe, output_dir, log=log)
    rows = [keras_row(job, runs), *manifest["artifacts"]]
    if compiled_model:
        image = np.asarray(job.representative[0], dtype="float32")
        for row in rows[1:]:
            if row["format"].startswith("tflite-"):
                row["runtimes"] = runtime_latencies(Path(output_dir) / row["file"], image, runs)
    return rows


def runtime_latencies(path: Path, image: np.ndarray, runs: int,
                      threads: int = 2) -> dict[str, float | str]:
    """Median ms of ``path`` in each LiteRT entry point (:data:`~keras_efficient.export.runtime.
    RUNTIMES`), interleaved run by run; a runtime that cannot load the file gives the reason.

    Example::

        runtime_latencies(Path("b0_int8.tflite"), image, runs=30)
        # {"interpreter": 10.4, "compiled_model": 10.1}
    """
    from keras_efficient.export.runtime import RUNTIMES, load_runtime, run

    runners: dict[str, Any] = {}
    result: dict[str, float | str] = {}
    for name in RUNTIMES:
        try:
            runners[name] = load_runtime(path, name, num_threads=threads)
        except (ValueError, RuntimeError) as error:
            result[name] = str(error)
            continue
        run(runners[name], image)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(max(1, runs)):
        for name, runner in runners.items():
            times[name].append(median_ms(runner.invoke, 1))
    result.update({name: round(statistics.median(values), 3) for name, values in times.items()})
    return result


def _accuracy_text(accuracy: dict[str, Any]) -> str:
    if "AP_delta" in accuracy:
        keras_ap = 100 * accuracy["keras"]["AP"]
        return (f"AP {100 * accuracy['tflite']['AP']:.1f} "
                f"(Δ {100 * accuracy['AP_delta']:+.1f} vs Keras {keras_ap:.1f})")
    parts = []
    if "max_abs_delta" in accuracy:
        parts.append(f"max|Δ| {accuracy['max_abs_delta']:.3g}")
    if "raw_max_abs_delta" in accuracy:
        parts.append(f"raw max|Δ| {accuracy['raw_max_abs_delta']:.3g}")
    if "top1_agreement" in accuracy:
        parts.append(f"top-1 agree {100 * accuracy['top1_agreement']:.0f}%")
    return ", ".join(parts) or "reference"


def _latency(row: dict[str, Any], key: str) -> float | None:
    latency = row.get("latency_ms", {})
    value = latency.get(key, latency.get("serving_default"))
    return None if value is None else float(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The benchmark as a text table: format, MB, ms at 1 and 2 threads, ratio, accuracy.

    Example::

        print(format_table(rows))  # format, MB, ms 1 thr, ms 2 thr, vs fp32, accuracy
    """
    base = next((_latency(r, "2_threads") for r in rows if r["format"] == "tflite-float32"),
                None)
    compiled = any("runtimes" in row for row in rows)
    lines = [f"{'format':<18}{'MB':>8}{'ms 1 thr':>10}{'ms 2 thr':>10}{'vs fp32':>9}"
             + (f"{'interp.':>9}{'compiled':>9}" if compiled else "") + "  accuracy"]
    for row in rows:
        one, two = _latency(row, "1_threads"), _latency(row, "2_threads")
        ratio = f"{two / base:.2f}x" if base and two else "-"
        lines.append(f"{row['format']:<18}{row['bytes'] / 1e6:>8.2f}"
                     f"{'-' if one is None or row['format'] == 'saved_model' else f'{one:.1f}':>10}"
                     f"{'-' if two is None else f'{two:.1f}':>10}{ratio:>9}"
                     + (_runtimes_text(row.get("runtimes", {})) if compiled else "") + "  "
                     f"{_accuracy_text(row.get('accuracy', {}))}")
    notes = sorted({f"compiled_model: {value}" for row in rows
                    for value in row.get("runtimes", {}).values() if isinstance(value, str)})
    return "\n".join(lines + notes)


def _runtimes_text(runtimes: dict[str, Any]) -> str:
    cells = [runtimes.get(name) for name in ("interpreter", "compiled_model")]
    return "".join(f"{value:>9.1f}" if isinstance(value, float) else f"{'-':>9}"
                   for value in cells)


def plot(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str) -> Path:
    """A PNG with latency (2 threads) and size per format, side by side.

    Example::

        plot(rows, "bench-out/bench.png", "efficientdet-lite0 (trained)")
    """
    from matplotlib.figure import Figure  # no pyplot: leaves the session's backend alone

    names = [row["format"].removeprefix("tflite-") for row in rows]
    latency = [_latency(row, "2_threads") or 0.0 for row in rows]
    size = [row["bytes"] / 1e6 for row in rows]
    figure = Figure(figsize=(10, 4))
    left, right = figure.subplots(1, 2)
    left.bar(names, latency, color="tab:blue")
    left.set_ylabel("latency, ms (batch 1, 2 threads)")
    right.bar(names, size, color="tab:orange")
    right.set_ylabel("size, MB")
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=30)
    figure.suptitle(title)
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, dpi=100)
    return target
