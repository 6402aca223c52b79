"""Batch-1 CPU latency of the Keras EfficientDet network (tf.function), in fresh processes,
against a baseline checkout of this package and google/automl's tf-keras graph.

Every measurement is one fresh process (build, trace, warm up, time ``--runs`` calls), and the
processes of all variants alternate round by round (A B C, C B A, A B C, ...), so that the load
of this shared machine drifts over all of them alike. Variants:

* ``ours``: this checkout's ``EfficientDet(name)`` under ``tf.function`` (``--jit`` adds the
  same with ``jit_compile=True``);
* ``folded``: the same detector's ``for_inference()`` copy (batch normalizations folded into the
  convolutions), the network that ``inference_model`` runs;
* ``levels``: the folded network's per-level head outputs, before they are flattened and
  concatenated (``detection.postprocess.per_level_network``, the TFLite ``network`` ending), as
  automl's ``EfficientDetNet`` returns them: the like-for-like network comparison;
* ``baseline``: the same code from another checkout (``--baseline DIR``, the folder that holds
  its ``keras_efficient/``), for before/after tables;
* ``automl``: google/automl's ``EfficientDetNet`` (``--automl DIR``, its ``efficientdet``
  folder; needs ``tf_keras`` and ``pyyaml`` importable, e.g. from ``--automl-path DIR``).
  Never vendored: give a checkout of your own. Its network takes normalized images (automl
  normalizes outside the graph); ours normalizes in the graph (one multiply-add).

Each call is timed in wall-clock time and in process CPU time (all threads): on a loaded machine
the CPU time is the steadier measure of the work a call does. ``--profile`` adds, per variant,
the top op types of one extra process under ``tf.profiler`` (per node: mean of the fastest half
of the profiled calls, so that other jobs' noise drops out).

    .venv/bin/python benchmarks/keras_network_latency.py [--models lite0 d0] [--rounds 4]
        [--runs 15] [--jit] [--baseline /tmp/main-snapshot]
        [--automl /tmp/automl/efficientdet --automl-path /tmp/tf_keras_site] [--profile]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
AUTOML_NAMES = {"lite0": "efficientdet-lite0", "d0": "efficientdet-d0"}


def _build(kind: str, name: str, automl: str | None, form: str = "raw"
           ) -> tuple[Callable[[Any], Any], int]:
    """The network and its input size, in this (fresh) process."""
    if kind == "automl":
        sys.path.insert(0, str(automl))
        import hparams_config  # type: ignore[import-not-found]
        from tf2 import efficientdet_keras  # type: ignore[import-not-found]

        config = hparams_config.get_efficientdet_config(AUTOML_NAMES.get(name, name))
        config.is_training_bn = False
        size = config.image_size
        network = efficientdet_keras.EfficientDetNet(config=config)
        return network, int(size if isinstance(size, int) else size[0])
    from keras_efficient.models.efficientdet import EfficientDet

    detector = EfficientDet(name)
    size = int(detector.image_size[0])
    if form == "raw":
        return detector, size
    if form == "folded":
        return detector.for_inference(), size
    from keras_efficient.detection.postprocess import per_level_network

    return per_level_network(detector.for_inference()), size


def _call(fn: Callable[[Any], Any], image: Any) -> None:
    import tensorflow as tf

    for tensor in tf.nest.flatten(fn(image)):
        tensor.numpy()


def child(kind: str, name: str, runs: int, warmup: int, jit: bool, automl: str | None,
          profile: bool, form: str = "raw") -> dict[str, Any]:
    """Build, trace, warm up and time one variant; with ``profile``, op costs instead."""
    import numpy as np
    import tensorflow as tf

    start = time.perf_counter()
    network, size = _build(kind, name, automl, form)
    built = time.perf_counter() - start
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)),
                        tf.float32)
    fn = tf.function(lambda x: network(x, training=False), jit_compile=jit)
    start = time.perf_counter()
    _call(fn, image)
    first = time.perf_counter() - start
    for _ in range(warmup):
        _call(fn, image)
    if profile:
        return {"ops": op_profile(fn, image, runs)}
    times, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        _call(fn, image)
        times.append((time.perf_counter() - start) * 1000.0)
        cpu.append((time.process_time() - start_cpu) * 1000.0)
    return {"build_s": built, "first_call_s": first, "ms": times, "cpu_ms": cpu}


def op_profile(fn: Callable[[Any], Any], image: Any, runs: int) -> list[tuple[str, float, int]]:
    """``(op type, ms per call, ops per call)``, most expensive first, from a ``tf.profiler``
    trace of ``runs`` calls (its XPlane read directly; per node, the mean of the fastest half
    of its samples)."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    folder = tempfile.mkdtemp(prefix="keras-network-profile-")
    tf.profiler.experimental.start(folder)
    for _ in range(runs):
        _call(fn, image)
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[0])
                          .read_bytes())
    samples: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                node, _, op = plane.event_metadata[event.metadata_id].name.rpartition(":")
                if "/" in node and op and " " not in op:  # "scope/node:OpType" kernel events
                    samples[(op, node)].append(event.duration_ps / 1e9)
    totals: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    for (op, _), values in samples.items():
        per_call = max(1, round(len(values) / runs))  # a layer shared by levels runs 5x
        fastest = sorted(values)[:max(1, len(values) // 2)]
        totals[op] += statistics.fmean(fastest) * per_call
        counts[op] += per_call
    return [(op, ms, counts[op]) for op, ms in totals.most_common()]


def spawn(kind: str, name: str, args: argparse.Namespace, jit: bool = False,
          profile: bool = False, form: str = "raw") -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter (the baseline's package first on its path)."""
    env = dict(os.environ)
    source = args.baseline if kind == "baseline" else ROOT
    paths = [str(source)]
    if kind == "automl":
        env["TF_USE_LEGACY_KERAS"] = "1"
        paths = [*args.automl_path, str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind,
               "--models", name, "--runs", str(args.profile_runs if profile else args.runs),
               "--warmup", str(args.warmup)]
    command += ["--automl", args.automl] if args.automl else []
    command += ["--jit"] if jit else []
    command += ["--form", form]
    command += ["--profile"] if profile else []
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"{kind} {name} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(lines[-1]))


def variants(args: argparse.Namespace) -> list[tuple[str, str, bool, str]]:
    """``(label, kind, jit, form)`` of every variant asked for."""
    chosen = [("ours", "ours", False, "raw"), ("folded", "ours", False, "folded"),
              ("levels", "ours", False, "levels")]
    if args.jit:
        chosen.append(("ours+xla", "ours", True, "raw"))
    if args.baseline:
        chosen.append(("baseline", "baseline", False, "raw"))
    if args.automl:
        chosen.append(("automl", "automl", False, "raw"))
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lite0", "d0"])
    parser.add_argument("--rounds", type=int, default=4,
                        help="fresh processes per variant, alternating (default 4)")
    parser.add_argument("--runs", type=int, default=15, help="timed calls per process")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--jit", action="store_true", help="also time jit_compile=True")
    parser.add_argument("--baseline", help="another checkout's root (holds keras_efficient/)")
    parser.add_argument("--automl", help="google/automl's efficientdet folder (not vendored)")
    parser.add_argument("--automl-path", nargs="*", default=[],
                        help="folders with tf_keras and pyyaml for the automl processes")
    parser.add_argument("--profile", action="store_true", help="print the top op costs")
    parser.add_argument("--profile-runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=8, help="op types printed per profile")
    parser.add_argument("--form", default="raw", choices=["raw", "folded", "levels"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["ours", "baseline", "automl"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.models[0], args.runs, args.warmup, args.jit,
                               args.automl, args.profile, args.form)))
        return 0
    chosen = variants(args)
    print(f"Keras EfficientDet network, batch 1, tf.function; {args.rounds} fresh processes per "
          f"variant (alternating) x {args.runs} calls; ms", flush=True)
    print("wall: median and min of the calls; cpu: median process CPU time of a call (all "
          "threads; robust to other jobs' load); /automl: median ratios")
    print(f"{'model':<7}{'variant':<10}{'wall':>9}{'min':>9}{'cpu':>9}{'wall/aml':>9}"
          f"{'cpu/aml':>9}{'1st call s':>11}")
    for name in args.models:
        samples: dict[str, list[float]] = collections.defaultdict(list)
        cpu: dict[str, list[float]] = collections.defaultdict(list)
        first: dict[str, list[float]] = collections.defaultdict(list)
        for round_ in range(args.rounds):
            order = chosen if round_ % 2 == 0 else chosen[::-1]
            for label, kind, jit, form in order:
                print(f"\r{name}: round {round_ + 1}/{args.rounds} {label:<10}", end="",
                      file=sys.stderr, flush=True)
                result = spawn(kind, name, args, jit=jit, form=form)
                samples[label] += result["ms"]
                cpu[label] += result["cpu_ms"]
                first[label].append(result["first_call_s"])
        print(file=sys.stderr)
        reference = {key: statistics.median(values["automl"]) for key, values in
                     (("wall", samples), ("cpu", cpu)) if "automl" in values}
        for label, *_ in chosen:
            median, median_cpu = statistics.median(samples[label]), statistics.median(cpu[label])
            ratios = "".join(f"{value / reference[key]:9.2f}" if key in reference else f"{'-':>9}"
                             for key, value in (("wall", median), ("cpu", median_cpu)))
            print(f"{name:<7}{label:<10}{median:9.1f}{min(samples[label]):9.1f}{median_cpu:9.1f}"
                  f"{ratios}{statistics.median(first[label]):11.1f}", flush=True)
        if args.profile:
            for label, kind, jit, form in chosen:
                ops = spawn(kind, name, args, jit=jit, profile=True, form=form)["ops"]
                total = sum(ms for _, ms, _ in ops)
                print(f"  {name} {label}: op time {total:.1f} ms/call; top op types:")
                print("\n".join(f"    {op:<26}{ms:8.2f} ms {count:5d} ops"
                                for op, ms, count in ops[:args.top]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
