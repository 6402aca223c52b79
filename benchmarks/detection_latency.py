"""Batch-1 CPU latency of EfficientDet: raw network vs end-to-end with decoding + NMS.

For D0 and Lite0 at their native sizes this times the raw detector (image -> class logits and
box regressions) and the inference model (the same network plus sigmoid, top-k, decoding, NMS
and mapping to original pixels), in the serving setting (best class per anchor, class-agnostic
NMS) and the evaluation setting (top 5,000 (anchor, class) pairs, per-class NMS). Calls are
interleaved run by run, so load on this shared machine hits all variants alike; the share of
post-processing is (end-to-end − raw) / end-to-end from the medians.

    .venv/bin/python benchmarks/detection_latency.py [--models lite0 d0] [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from keras_efficient.configs.efficientdet import get_efficientdet_spec
from keras_efficient.detection.inference import inference_model
from keras_efficient.models.efficientdet import EfficientDet


def compiled(model: keras.Model) -> Callable[..., object]:
    return tf.function(lambda *x: model(list(x) if len(x) > 1 else x[0], training=False))


def measure(fn: Callable[..., object], args: Sequence[tf.Tensor]) -> float:
    start = time.perf_counter()
    out = fn(*args)
    for tensor in tf.nest.flatten(out):
        tensor.numpy()
    return (time.perf_counter() - start) * 1000.0


def benchmark(name: str, runs: int, warmup: int) -> dict[str, list[float]]:
    spec = get_efficientdet_spec(name)
    detector = EfficientDet(spec)
    size = spec.input_size
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)),
                        tf.float32)
    info = tf.constant([[1.0, size, size]], tf.float32)
    candidates = {
        "raw": (compiled(detector), (image,)),
        "serving": (compiled(inference_model(detector, class_aware=False)),
                    (image, info)),
        "evaluation": (compiled(inference_model(detector, class_aware=True)),
                       (image, info)),
    }
    times: dict[str, list[float]] = {key: [] for key in candidates}
    order = list(candidates)
    for run in range(warmup + runs):
        print(f"\r{name}: run {run + 1}/{warmup + runs}", end="", file=sys.stderr, flush=True)
        for key in order if run % 2 == 0 else reversed(order):
            elapsed = measure(*candidates[key])
            if run >= warmup:
                times[key].append(elapsed)
    print(file=sys.stderr)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lite0", "d0"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    for name in args.models:
        times = benchmark(name, args.runs, args.warmup)
        raw = statistics.median(times["raw"])
        row = [name, f"{raw:9.1f}"]
        for key in ("serving", "evaluation"):
            total = statistics.median(times[key])
            row += [f"{total:9.1f}", f"{100 * (total - raw) / total:6.1f}%"]
        rows.append(row)
    print("EfficientDet batch-1 latency (ms, medians) and the share of post-processing")
    print(f"{'model':<8}{'raw':>9}{'serving':>9}{'share':>7}{'eval':>9}{'share':>7}")
    for row in rows:
        print(f"{row[0]:<8}{row[1]}{row[2]}{row[3]:>7}{row[4]}{row[5]:>7}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"{args.runs} interleaved runs after {args.warmup} warm-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
