"""Our TFLite exports against the reference's, side by side: the table of issue 16.

LiteRT ``Interpreter``, 2 threads, every file invoked in turn run after run (30 interleaved
runs), medians in ms; random weights (seed 0), the same random byte image for every file.
Rows: Lite0-det and D0-det int8 end to end (``TFLite_Detection_PostProcess``, default score
threshold and automl's 0) and network only, B0 int8 and float32. Each export runs in a fresh
subprocess that also reports its wall time (model build + conversion + a LiteRT verification
run against the Keras model) and peak memory (``ru_maxrss``).

``--before DIR``: a checkout of keras_efficient (e.g. ``git worktree add /tmp/before 7f68f7a``)
whose exports are timed in the same interleaved loop, for a before/after table; its network
only is its ``"none"`` ending (flattened, sigmoid scores), ours the ``"network"`` ending.
``--reference DIR``: ``.tflite`` files of the reference, named ``<row key>.tflite`` (e.g.
``lite0-det_int8.tflite``, ``lite0-det_int8_network.tflite``, ``b0_int8.tflite``; keys are
printed), e.g. google/automl's ``inspector.py --mode=export --tflite=INT8`` and
``--only_network`` outputs; never vendored. ``--compiled-model``: also time our files in
LiteRT's ``CompiledModel``. ``--profile``: per-op profile of our int8 files
(:mod:`keras_efficient.export.profile`) of the int8 network-only and B0 int8 files.

    .venv/bin/python benchmarks/tflite_vs_reference.py [--models lite0-det d0-det b0]
        [--before /tmp/before] [--reference /tmp/automl_exports] [--profile] [--compiled-model]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))  # "after" is this checkout, whatever keras_efficient is installed
MODELS = {"lite0-det": "efficientdet-lite0", "d0-det": "efficientdet-d0", "b0": "efficientnetb0"}
# row key suffix -> (quantization, ending (detectors), score threshold)
DETECTOR_ROWS = {"int8": ("int8", "custom_op", 0.05), "int8_thr0": ("int8", "custom_op", 0.0),
                 "int8_network": ("int8", "network", 0.05)}
CLASSIFIER_ROWS = {"int8": ("int8", "", 0.0), "fp32": ("float32", "", 0.0)}

EXPORT = """
import json, os, resource, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
start = time.perf_counter()
import keras, numpy as np
from keras_efficient.models.variants import get_model
from keras_efficient.export.runtime import load_interpreter, run
name, quantization, ending, threshold, path = sys.argv[1:6]
keras.utils.set_random_seed(0)
model = get_model(name, weights=None)
size = model.input_shape[1:3]
rng = np.random.default_rng(0)
images = [rng.uniform(0, 255, (1, *size, 3)).astype("float32") for _ in range(8)]
kwargs = dict(representative=images, input_type="uint8") if quantization == "int8" else {}
built = time.perf_counter()
if ending:
    from keras_efficient.export.detector_tflite import PostprocessOptions, convert_detector
    options = PostprocessOptions(ending, score_threshold=float(threshold))
    payload = convert_detector(model, quantization, options=options, **kwargs)
else:
    from keras_efficient.export.tflite import convert
    payload = convert(model, quantization, **kwargs)
open(path, "wb").write(payload)
converted = time.perf_counter()
image = np.round(images[0])
outputs = run(load_interpreter(path), image)
want = model(image, training=False)
if not ending:
    delta = float(np.abs(outputs[0] - np.asarray(want)).max())
elif ending == "custom_op":
    delta = float("nan")  # detections: compared on AP by the export pipeline, not here
else:
    if ending == "network":  # a before tree has no "network" ending (nor this function)
        from keras_efficient.detection.postprocess import flatten_network_outputs
        logits, boxes = flatten_network_outputs(outputs)
    else:
        boxes, scores = outputs
        logits = np.log(np.clip(scores, 1e-6, 1 - 1e-6) / np.clip(1 - scores, 1e-6, None))
    delta = float(np.abs(boxes - np.asarray(want["box_regression"])).max())
print(json.dumps({"build_s": built - start, "convert_s": converted - built,
                  "verify_s": time.perf_counter() - converted,
                  "seconds": time.perf_counter() - start, "max_abs_delta": delta,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def export(tree: Path, name: str, quantization: str, ending: str, threshold: float,
           path: Path) -> dict[str, float]:
    """Export one file with the keras_efficient of ``tree`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # cwd = tree: "python -c" puts the working folder first on sys.path, before PYTHONPATH.
    result = subprocess.run([sys.executable, "-c", EXPORT, name, quantization, ending,
                             str(threshold), str(path)], capture_output=True, text=True, env=env,
                            cwd=tree)
    if result.returncode != 0:
        raise RuntimeError(f"export {path.name} with {tree} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def rows_for(key: str, before: bool,
             only: Sequence[str] = ()) -> dict[str, tuple[str, str, float]]:
    """Row suffix -> export settings (``only``: these suffixes); the before tree's network only
    is its "none" ending."""
    if not key.endswith("-det"):
        return {k: v for k, v in CLASSIFIER_ROWS.items() if not only or k in only}
    rows = {k: v for k, v in DETECTOR_ROWS.items() if not only or k in only}
    if key == "d0-det":  # D0's export is slow: the threshold-0 row only for Lite0, as issue 16
        rows.pop("int8_thr0", None)
    if before and "int8_network" in rows:
        rows["int8_network"] = ("int8", "none", 0.05)
    return rows


def time_interleaved(files: dict[str, Path], runs: int, threads: int,
                     compiled: bool) -> tuple[dict[str, float], dict[str, int]]:
    """Median ms per file (every file invoked once per round, on one random byte image) and
    its XNNPACK partitions; with ``compiled`` our files in CompiledModel as well."""
    from keras_efficient.export.profile import delegate_partitions
    from keras_efficient.export.runtime import load_runtime

    runners, partitions = {}, {}
    for label, path in files.items():
        runners[label] = load_runtime(path, "interpreter", num_threads=threads)
        partitions[label] = delegate_partitions(runners[label])
        if compiled and label.startswith("after "):
            try:
                runners[f"{label} [CompiledModel]"] = load_runtime(path, "compiled_model",
                                                                   num_threads=threads)
            except (ValueError, RuntimeError) as error:
                print(f"  CompiledModel cannot run {path.name}: {error}")
    rng = np.random.default_rng(1)
    for runner in runners.values():
        detail = runner.get_input_details()[0]
        image = rng.integers(0, 256, tuple(detail["shape"])).astype(detail["dtype"])
        runner.set_tensor(detail["index"], image)
        runner.invoke()
    times: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(runs):
        for label, runner in runners.items():
            start = time.perf_counter()
            runner.invoke()
            times[label].append((time.perf_counter() - start) * 1000)
    return {label: statistics.median(values) for label, values in times.items()}, partitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--before", type=Path, help="a keras_efficient checkout to compare")
    parser.add_argument("--reference", type=Path, help="folder of the reference's .tflite")
    parser.add_argument("--profile", action="store_true",
                        help="per-op profile of the int8 network-only and B0 int8 files")
    parser.add_argument("--top", type=int, default=10, help="ops listed by the profile")
    parser.add_argument("--compiled-model", dest="compiled", action="store_true")
    parser.add_argument("--output", type=Path, help="folder for the files (default: temp)")
    parser.add_argument("--rows", nargs="*", default=(),
                        help="only these rows (int8, int8_thr0, int8_network, fp32)")
    parser.add_argument("--reuse", action="store_true",
                        help="time the files already in --output instead of exporting again")
    args = parser.parse_args()
    folder = args.output or Path(tempfile.mkdtemp(prefix="tflite_vs_reference_"))
    folder.mkdir(parents=True, exist_ok=True)
    trees = {"after": HERE, **({"before": args.before.resolve()} if args.before else {})}
    print(f"LiteRT Interpreter, {args.threads} threads, {args.runs} interleaved runs per model, "
          f"medians in ms; random weights; {os.cpu_count()} CPUs; files in {folder}",
          flush=True)
    costs: dict[str, dict[str, float]] = {}
    profiled: dict[str, Path] = {}
    for key in args.models:  # one model at a time: a late failure keeps the earlier rows
        files = export_model(key, trees, folder, args.reuse, costs, args.rows)
        if args.reference:
            for suffix in rows_for(key, False, args.rows):
                path = args.reference / f"{key}_{suffix}.tflite"
                if path.exists():
                    files[f"reference {key}_{suffix}"] = path
        medians, partitions = time_interleaved(files, args.runs, args.threads, args.compiled)
        print_rows(key, medians, partitions, args.rows)
        profiled.update({label: path for label, path in files.items()
                         if not label.startswith("reference")
                         and label.endswith(("int8_network", "b0_int8"))})
    print("\nexport cost (fresh process: build + conversion + LiteRT verification run)")
    for label, cost in costs.items():
        print(f"  {label:<30}{cost['seconds']:>7.1f} s (build {cost['build_s']:.1f}, convert "
              f"{cost['convert_s']:.1f}, verify {cost['verify_s']:.1f})  peak "
              f"{cost['peak_mb']:>6.0f} MB  max|Δ| vs Keras "
              + ("- (detections)" if cost["max_abs_delta"] != cost["max_abs_delta"]
                 else f"{cost['max_abs_delta']:.3g}"))
    if args.profile:
        from keras_efficient.export.profile import format_profile, op_profile

        for label, path in profiled.items():
            print(f"\nper-op profile, {label} ({args.threads} threads, isolated ops):")
            print(format_profile(op_profile(path, threads=args.threads), top=args.top),
                  flush=True)


def export_model(key: str, trees: dict[str, Path], folder: Path, reuse: bool,
                 costs: dict[str, dict[str, float]], only: Sequence[str]) -> dict[str, Path]:
    """Export every row of ``key`` with every tree; the files by label."""
    files = {}
    for side, tree in trees.items():
        for suffix, (quantization, ending, threshold) in rows_for(key, side == "before",
                                                                  only).items():
            label = f"{side} {key}_{suffix}"
            path = folder / f"{side}_{key}_{suffix}.tflite"
            if not (reuse and path.exists()):
                print(f"exporting {label} ...", file=sys.stderr, flush=True)
                try:
                    costs[label] = export(tree, MODELS[key], quantization, ending, threshold,
                                          path)
                except RuntimeError as error:  # one failed row does not lose the others
                    print(error, file=sys.stderr)
                    continue
            files[label] = path
    return files


def print_rows(key: str, medians: dict[str, float], partitions: dict[str, int],
               only: Sequence[str]) -> None:
    """The model's rows: one column per side, the ratios, the XNNPACK partitions."""
    columns = [side for side in ("before", "after", "reference")
               if any(label.startswith(f"{side} {key}") for label in medians)]
    print(f"\n{'row':<22}" + "".join(f"{c:>11}" for c in columns)
          + ("    after/before" if "before" in columns else "")
          + ("  after/reference" if "reference" in columns else "") + "   XNNPACK partitions")
    for suffix in rows_for(key, False, only):
        row = {c: medians.get(f"{c} {key}_{suffix}") for c in columns}
        cells = "".join(f"{'-' if row[c] is None else f'{row[c]:.2f}':>11}" for c in columns)
        ratios = ""
        for base in ("before", "reference"):
            if base in columns:
                ratio = row["after"] / row[base] if row.get(base) and row.get("after") else None
                ratios += f"{'-' if ratio is None else f'{ratio:.2f}':>16}"
        parts = " / ".join(str(partitions.get(f"{c} {key}_{suffix}", "-")) for c in columns)
        print(f"{key + '_' + suffix:<22}{cells}{ratios}   {parts}")
    for label, ms in medians.items():
        if label.endswith("[CompiledModel]"):
            interpreter = medians[label.removesuffix(" [CompiledModel]")]
            print(f"CompiledModel {label.split()[1]}: {ms:.2f} ms vs Interpreter "
                  f"{interpreter:.2f} ms ({ms / interpreter:.2f}x)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
