"""Batch-1 CPU inference latency: keras_efficient vs keras.applications, side by side.

For each requested EfficientNet variant this script

1. builds ``keras_efficient.EfficientNetBx(weights=None)`` ("ours") and
   ``keras.applications.EfficientNetBx(weights=None)`` ("ref");
2. copies the reference's weights into ours, layer by layer (the weight-owning layers of the
   two graphs correspond one to one and carry the same names, except the input
   ``Normalization`` layer, which keras.applications leaves unnamed);
3. checks that both models now compute the same thing on the same random image: max |Δ| of
   the class probabilities, and of the ``top_activation`` features relative to their largest
   magnitude (with random weights the softmax output is nearly uniform and the features are
   tiny, so the relative feature difference is the sensitive check);
4. times one forward pass of a batch-1 image at the variant's default resolution, through the
   same compiled inference function for both models
   (``tf.function(lambda x: model(x, training=False))``, no XLA), syncing with ``.numpy()``.

Why interleaved: on a shared, noisy machine the speed available to one process drifts over
seconds (other jobs, frequency scaling, caches). Timing all runs of one model and then all runs
of the other would fold that drift into the comparison. Here every run times one call of each
model back to back, and the order within the pair alternates from run to run (ours first, then
ref first, ...), so drift and any "who goes first" effect hit both models equally; the per-pair
ratio ours/ref is then a paired measurement whose median is robust to the noise.

Usage::

    .venv/bin/python benchmarks/latency.py [--models b0 b4] [--runs 30] [--warmup 5]
                                           [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

import keras_efficient

InferenceFn = Callable[[tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Result:
    """Latency samples (milliseconds) of one variant, ours and the reference, paired by run."""

    model: str
    resolution: int
    max_abs_diff: float
    rel_diff_features: float
    ours_ms: np.ndarray
    ref_ms: np.ndarray

    @property
    def pair_ratios(self) -> np.ndarray:
        return self.ours_ms / self.ref_ms


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["b0", "b4"],
                        help="variants to time, e.g. b0 b4 (default: b0 b4)")
    parser.add_argument("--runs", type=int, default=30,
                        help="timed runs per model (each run = one call of each; default 30)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed calls of each model before timing (default 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="set TF intra- and inter-op parallelism threads (default: TF's)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    return args


def build_pair(variant: str) -> tuple[keras.Model, keras.Model]:
    """Our model and the keras.applications one for ``variant`` ("b0"), both weights=None."""
    suffix = variant.lower().removeprefix("efficientnet").upper()  # "B0"
    ours = getattr(keras_efficient, f"EfficientNet{suffix}")(weights=None)
    ref = getattr(keras.applications, f"EfficientNet{suffix}")(weights=None)
    return ours, ref


def copy_weights(src: keras.Model, dst: keras.Model) -> int:
    """Copy ``src``'s weights into ``dst`` layer by layer; returns the number of layers copied.

    Weight-owning layers are paired in order. Their names must match, except the input
    Normalization layer (auto-named, e.g. ``normalization_1``, in keras.applications), whose
    cached statistics are refreshed after the copy.
    """
    src_layers = [layer for layer in src.layers if layer.weights]
    dst_layers = [layer for layer in dst.layers if layer.weights]
    assert len(src_layers) == len(dst_layers), (
        f"{len(src_layers)} weight-owning layers in {src.name} vs {len(dst_layers)} in {dst.name}"
    )
    for s, d in zip(src_layers, dst_layers, strict=True):
        both_normalization = isinstance(s, keras.layers.Normalization) and isinstance(
            d, keras.layers.Normalization)
        assert both_normalization or s.name == d.name, f"layer mismatch: {s.name} vs {d.name}"
        d.set_weights(s.get_weights())
        if both_normalization:
            # Normalization caches mean/variance as tensors at build time; set_weights only
            # updates the variables, so refresh the cache or the old statistics stay in use.
            d.finalize_state()
    return len(src_layers)


def inference_fn(model: keras.Model) -> InferenceFn:
    """The compiled inference function timed for every model (same method for both)."""
    return tf.function(lambda x: model(x, training=False), jit_compile=False)


def features_model(model: keras.Model) -> keras.Model:
    """The same graph up to the last feature map (``top_activation``), before the classifier."""
    return keras.Model(model.inputs, model.get_layer("top_activation").output)


def max_abs_difference(a: tf.Tensor, b: tf.Tensor) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def time_call(fn: InferenceFn, x: tf.Tensor) -> float:
    """Wall time of one synchronous call, in milliseconds."""
    start = time.perf_counter()
    fn(x).numpy()
    return (time.perf_counter() - start) * 1e3


def benchmark(variant: str, runs: int, warmup: int) -> Result:
    keras.backend.clear_session()
    ours, ref = build_pair(variant)
    copy_weights(ref, ours)
    resolution = int(ours.input_shape[1])
    assert tuple(ref.input_shape[1:]) == tuple(ours.input_shape[1:])

    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 255.0, size=(1, resolution, resolution, 3)).astype("float32")
    x = tf.constant(image)
    f_ours, f_ref = inference_fn(ours), inference_fn(ref)

    # Parity: the first call also traces both functions.
    max_abs_diff = max_abs_difference(f_ours(x), f_ref(x))
    ref_features = np.asarray(features_model(ref)(x, training=False))
    rel_diff_features = max_abs_difference(features_model(ours)(x, training=False),
                                           ref_features) / float(np.max(np.abs(ref_features)))

    for _ in range(warmup):
        f_ours(x).numpy()
        f_ref(x).numpy()

    ours_ms = np.empty(runs)
    ref_ms = np.empty(runs)
    for i in range(runs):
        if i % 2 == 0:
            ours_ms[i] = time_call(f_ours, x)
            ref_ms[i] = time_call(f_ref, x)
        else:
            ref_ms[i] = time_call(f_ref, x)
            ours_ms[i] = time_call(f_ours, x)

    name = ours.name
    del ours, ref, f_ours, f_ref
    return Result(name, resolution, max_abs_diff, rel_diff_features, ours_ms, ref_ms)


def environment(args: argparse.Namespace) -> list[str]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return [
        f"python {platform.python_version()} on {platform.platform()}",
        f"TensorFlow {tf.__version__}, Keras {keras.__version__} (backend "
        f"{keras.backend.backend()}), keras_efficient {keras_efficient.__version__}",
        f"CPUs: os.cpu_count()={os.cpu_count()}, usable by this process={usable}; TF threads "
        f"intra={intra or 'default'} inter={inter or 'default'}",
        f"method: batch 1, default resolution, float32, tf.function(jit_compile=False), "
        f"{args.warmup} warmup + {args.runs} interleaved runs each (order alternating)",
    ]


def print_report(results: Sequence[Result], args: argparse.Namespace) -> None:
    header = (f"{'model':<16}{'res':>5}{'max|Δ| out':>12}{'rel|Δ| feat':>12}"
              f"{'ours ms':>10}{'ref ms':>10}{'ratio':>8}{'pair ratio':>12}"
              f"{'ours p10/p90':>16}{'ref p10/p90':>16}{'pair p10/p90':>15}")
    print()
    print("Batch-1 inference latency, ours (keras_efficient) vs ref (keras.applications)")
    print("ratio = median ours / median ref; pair ratio = median of per-run ours/ref; "
          "rel|Δ| feat = max|Δ| of top_activation / its max|ref|")
    print(header)
    print("-" * len(header))
    for r in results:
        o10, o50, o90 = np.percentile(r.ours_ms, [10, 50, 90])
        f10, f50, f90 = np.percentile(r.ref_ms, [10, 50, 90])
        q10, q50, q90 = np.percentile(r.pair_ratios, [10, 50, 90])
        print(f"{r.model:<16}{r.resolution:>5}{r.max_abs_diff:>12.1e}"
              f"{r.rel_diff_features:>12.1e}{o50:>10.2f}{f50:>10.2f}"
              f"{o50 / f50:>8.3f}{q50:>12.3f}{f'{o10:.1f}/{o90:.1f}':>16}"
              f"{f'{f10:.1f}/{f90:.1f}':>16}{f'{q10:.2f}/{q90:.2f}':>15}")
    print()
    print("Environment:")
    for line in environment(args):
        print(f"  {line}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        # Must happen before TensorFlow runs its first op.
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    results = []
    for variant in args.models:
        print(f"timing {variant} ...", file=sys.stderr, flush=True)
        results.append(benchmark(variant.lower(), args.runs, args.warmup))
    print_report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
