"""Run a recipe: convert every format, verify each in LiteRT against Keras, write a manifest.

All artifacts are written into a hidden staging folder that is renamed to the output folder
only when every step succeeded, so a failed export leaves nothing behind and its error names
the step that failed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_efficient.export.files import sha256_of, write_bytes_atomic
from keras_efficient.export.recipes import Recipe
from keras_efficient.export.runtime import load_interpreter, op_histogram, run, tensor_types
from keras_efficient.export.tflite import ExportError, convert


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__}
    try:
        import ai_edge_litert

        versions["ai_edge_litert"] = getattr(ai_edge_litert, "__version__", "installed")
    except ImportError:
        versions["ai_edge_litert"] = "not installed"
    return versions


def _io_specs(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": d["name"], "shape": [int(v) for v in d["shape"]],
             "dtype": np.dtype(d["dtype"]).name,
             "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]}
            for d in details]


def _latency_ms(path: Path, image: np.ndarray, threads: int, runs: int) -> float:
    interpreter = load_interpreter(path, num_threads=threads)
    run(interpreter, image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(interpreter, image)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def _compare(model: Any, path: Path, images: Sequence[np.ndarray]) -> dict[str, float]:
    """max |Δ| per output, and top-1 agreement for single-output classifiers."""
    interpreter = load_interpreter(path)
    deltas: list[float] = []
    agree: list[bool] = []
    for image in images:
        expected = model.predict(image, verbose=0)
        expected_list = ([expected[k] for k in sorted(expected)] if isinstance(expected, dict)
                         else [expected])
        got = run(interpreter, image)
        by_shape = {tuple(o.shape): o for o in got}
        for want in expected_list:
            have = by_shape.get(tuple(want.shape))
            if have is None:
                raise ExportError(f"verify: no TFLite output of shape {want.shape} in {path.name}")
            deltas.append(float(np.max(np.abs(have - want))))
            if want.ndim == 2:
                agree.append(int(np.argmax(have)) == int(np.argmax(want)))
    result = {"max_abs_delta": max(deltas)}
    if agree:
        result["top1_agreement"] = float(np.mean(agree))
    return result


def export_model(model: Any, recipe: Recipe, output_dir: str | os.PathLike[str], *,
                 representative: Sequence[np.ndarray] = (), weights_origin: str = "unknown",
                 log: Any = print) -> dict[str, Any]:
    """Produce every format of ``recipe`` for ``model`` in ``output_dir``; return the manifest.

    ``representative``: ``[1, H, W, 3]`` float images in [0, 255], preprocessed as at inference;
    used to calibrate int8 and to verify every artifact against the Keras model.
    """
    out = Path(output_dir)
    if out.exists():
        raise ValueError(f"Export folder {out} already exists; remove it or choose another.")
    if not out.parent.exists() or not os.access(out.parent, os.W_OK):
        raise ValueError(f"Cannot write into {out.parent}: it does not exist or is not "
                         "writable.")
    if recipe.requires_trained_weights and weights_origin in ("none", "random"):
        raise ValueError(f"Recipe {recipe.name!r} needs trained weights (int8 calibration and "
                         "accuracy checks are meaningless on random weights); pass --weights.")
    samples = list(representative)[: recipe.representative_count]
    if not samples:
        raise ValueError("The representative dataset is empty: export needs sample images to "
                         "calibrate and verify (e.g. keras_efficient.data.representative_images).")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    manifest: dict[str, Any] = {"model": model.name, "weights": weights_origin,
                                "recipe": recipe.name, "versions": _versions(), "artifacts": []}
    try:
        for quantization in recipe.formats:
            step = f"{quantization}: convert"
            try:
                log(f"export {model.name} -> {quantization}")
                payload = convert(model, quantization, representative=samples,
                                  input_type=recipe.input_type if quantization == "int8"
                                  else "float32")
                path = write_bytes_atomic(staging / f"{model.name}_{quantization}.tflite",
                                          payload)
                step = f"{quantization}: verify in LiteRT"
                interpreter = load_interpreter(path)
                entry = {
                    "format": f"tflite-{quantization}", "file": path.name,
                    "bytes": path.stat().st_size, "sha256": sha256_of(path),
                    "inputs": _io_specs(interpreter.get_input_details()),
                    "outputs": _io_specs(interpreter.get_output_details()),
                    "ops": op_histogram(interpreter), "tensor_types": tensor_types(interpreter),
                    "accuracy": _compare(model, path, samples[:8]),
                }
                step = f"{quantization}: latency"
                entry["latency_ms"] = {f"{t}_threads": _latency_ms(path, samples[0], t,
                                                                    recipe.latency_runs)
                                       for t in (1, 2)}
                manifest["artifacts"].append(entry)
            except Exception as error:
                raise ExportError(f"Export step '{step}' failed for {model.name}: {error}"
                                  ) from error
        write_bytes_atomic(staging / "manifest.json",
                           json.dumps(manifest, indent=2).encode())
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log(f"export written to {out}")
    return manifest
