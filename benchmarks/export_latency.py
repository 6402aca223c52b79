"""LiteRT latency of exported models, measured side by side, plus D0's int8 export cost.

For each model this converts the float32 and int8 TFLite exports (detectors: with the
``TFLite_Detection_PostProcess`` op, and without any post-processing to time the network
alone), then times them in LiteRT at 2 threads, interleaved run by run so that load on this
shared machine hits every variant alike. Detector post-processing is timed at two score
thresholds, the export default and 0 (every anchor enters NMS, as in the reference export
whose threshold is −inf), with and without a top-500 anchor pre-selection before the op.
Reported: medians, int8/fp32 ratios, achieved GFLOP/s (2 × MACs /
time) against this CPU's fp32 peak (AVX2 FMA: 2 × 8-lane FMA units per core), and the int8
export's wall time and peak memory (a fresh subprocess per export).

    .venv/bin/python benchmarks/export_latency.py [--models b0 lite0-det d0-det] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

MODELS = {"b0": "efficientnetb0", "lite0": "efficientnetlite0",
          "lite0-det": "efficientdet-lite0", "d0-det": "efficientdet-d0"}


def convert_in_subprocess(name: str, quantization: str, postprocess: str, threshold: float,
                          top_k: int, path: Path) -> dict[str, float]:
    """Convert in a fresh process; return its wall time and peak RSS."""
    code = f"""
import os, resource, time, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
from keras_efficient.models.variants import get_model
from keras_efficient.configs.efficientdet import get_efficientdet_spec
from keras_efficient.export.tflite import convert
from keras_efficient.export.detector_tflite import convert_detector, PostprocessOptions
start = time.perf_counter()
model = get_model({name!r}, weights=None)
size = model.input_shape[1:3]
rng = np.random.default_rng(0)
images = [rng.uniform(0, 255, (1, *size, 3)).astype("float32") for _ in range(8)]
kwargs = dict(representative=images, input_type="uint8") if {quantization!r} == "int8" else {{}}
if {name!r}.startswith("efficientdet"):
    options = PostprocessOptions({postprocess!r}, score_threshold={threshold!r},
                                 op_top_k={top_k!r})
    payload = convert_detector(model, {quantization!r},
                               options=options, **kwargs)
else:
    payload = convert(model, {quantization!r}, **kwargs)
open({str(path)!r}, "wb").write(payload)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": time.perf_counter() - start, "peak_mb": peak}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name} {quantization} export failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def load(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    image = np.random.default_rng(1).integers(0, 256, detail["shape"]).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], image)
    interpreter.invoke()
    return interpreter


def macs(name: str) -> int:
    from keras_efficient.models.profile import count_macs
    from keras_efficient.models.variants import get_model

    return count_macs(get_model(name, weights=None))


def peak_gflops() -> float:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    mhz = max(float(line.split(":")[1]) for line in lines if line.startswith("cpu MHz"))
    return 2 * 2 * 8 * 2 * mhz / 1000  # cores × FMA units × fp32 lanes × 2 flops × GHz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--brief", nargs="*", default=["d0-det"],
                        help="detectors timed without the post-processing variants")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="export_latency_"))
    peak = peak_gflops()
    print(f"CPU fp32 peak ≈ {peak:.0f} GFLOP/s (2 cores, AVX2 FMA at the reported clock)")
    for key in args.models:
        name = MODELS[key]
        detector = name.startswith("efficientdet")
        variants = {"fp32": ("float32", "custom_op", 0.05, 0),
                    "int8": ("int8", "custom_op", 0.05, 0)}
        if detector:
            variants["int8 network only"] = ("int8", "none", 0.05, 0)
        if detector and key not in args.brief:
            variants.update({"int8 op thr 0": ("int8", "custom_op", 0.0, 0),
                             "int8 op top-500": ("int8", "custom_op", 0.05, 500),
                             "int8 op top-500 thr 0": ("int8", "custom_op", 0.0, 500),
                             "fp32 network only": ("float32", "none", 0.05, 0)})
        costs = {}
        for label, (quantization, postprocess, threshold, top_k) in variants.items():
            path = folder / f"{key}_{label.replace(' ', '_')}.tflite"
            costs[label] = convert_in_subprocess(name, quantization, postprocess, threshold,
                                                 top_k, path)
        interpreters = {label: load(folder / f"{key}_{label.replace(' ', '_')}.tflite",
                                    args.threads) for label in variants}
        times: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.runs):
            for label, interpreter in interpreters.items():
                start = time.perf_counter()
                interpreter.invoke()
                times[label].append((time.perf_counter() - start) * 1000)
        medians = {label: statistics.median(values) for label, values in times.items()}
        flops = 2 * macs(name)
        print(f"\n{name}: {flops / 1e9:.2f} GFLOP per image, {args.threads} threads, "
              f"{args.runs} interleaved runs")
        for label, ms in medians.items():
            size = (folder / f"{key}_{label.replace(' ', '_')}.tflite").stat().st_size / 1e6
            rate = flops / (ms / 1000) / 1e9
            print(f"  {label:<20}{ms:>8.2f} ms  {size:>6.2f} MB  {rate:>6.1f} GFLOP/s "
                  f"({100 * rate / peak:.0f}% of fp32 peak)  export "
                  f"{costs[label]['seconds']:.0f} s, peak {costs[label]['peak_mb']:.0f} MB")
        print(f"  int8 / fp32 = {medians['int8'] / medians['fp32']:.2f}")
        if detector:
            net = medians["int8 network only"]
            print(f"  int8 network only / fp32 = {net / medians['fp32']:.2f}")
            print("  int8 post-processing cost (end to end − network only): "
                  + ", ".join(f"{label.removeprefix('int8 ')} {medians[label] - net:.2f} ms"
                              for label in ("int8", "int8 op thr 0", "int8 op top-500",
                                            "int8 op top-500 thr 0") if label in medians))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(this process peak RSS {rss:.0f} MB)")


if __name__ == "__main__":
    main()
