"""Time to the first training step, this checkout against a baseline, in fresh processes.

The first step of ``train_detector`` traces the training step (model, loss, optimizer update)
and lets TensorFlow optimize the graph; later steps reuse it. Each measurement is one fresh
process that trains ``--steps`` steps (one epoch) and reports the process CPU time and the wall
time of ``train_detector`` (data set made beforehand, imports excluded) and of its first step
(the ``CompileNotice`` line). Variants alternate round by round, so that the load of a shared
machine drifts over both alike. Configurations:

* ``demo``: the demo's detector and batch (Lite0 at 128 px, batch 16, AdamW);
* ``tiny``: the test suite's tiny detector (64 px, one BiFPN cell), the cost each training
  test pays.

    .venv/bin/python benchmarks/first_step.py [--configs demo tiny] [--rounds 2]
        [--baseline /tmp/before]   # a checkout: git worktree add /tmp/before <commit>
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, re, sys, time, contextlib, io
    from pathlib import Path
    from keras_efficient.data.synthetic import make_detection_dataset
    from keras_efficient.training.detector import DetectorTrainConfig, train_detector
    config_name, steps, root = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    size = 128 if config_name == "demo" else 64
    data = make_detection_dataset(root / "data", num_train=32, num_val=4,
                                  image_size=(size, size), max_objects=3, seed=0)
    values = dict(train_json=str(data.train_json), train_images=str(data.train_images_dir),
                  output_dir=str(root / "run"), model="efficientdet-lite0", batch_size=16,
                  spec_overrides={"input_size": size}, epochs=1, steps_per_epoch=steps,
                  learning_rate=0.004, optimizer="adamw", weight_decay=1e-4, ema_decay=None,
                  verbose=0)
    if config_name == "tiny":
        sys.path.insert(0, sys.argv[4])
        from tests.harness import TINY_OVERRIDES
        values.update(spec_overrides=dict(TINY_OVERRIDES), batch_size=4)
    err = io.StringIO()
    cpu, wall = time.process_time(), time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
        train_detector(DetectorTrainConfig(**values), overwrite=True)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    first = re.search(r"compiled and run once in ([0-9.]+) s", err.getvalue())
    print("RESULT", json.dumps({"cpu": cpu, "wall": wall,
                                "first_step": float(first.group(1)) if first else None}))
""")


def measure(tree: Path, config: str, steps: int) -> dict[str, float]:
    """One fresh process of ``tree``'s code: CPU and wall seconds of the run and its first
    step."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory(prefix="first_step-") as folder:
        done = subprocess.run([sys.executable, "-c", SCRIPT, config, str(steps), folder,
                               str(ROOT)], env=env, capture_output=True, text=True,
                              timeout=1800, cwd=folder)  # not the cwd's keras_efficient
    if done.returncode != 0:
        raise RuntimeError(f"{tree} {config}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.split("RESULT", 1)[1].strip().splitlines()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["demo", "tiny"],
                        choices=["demo", "tiny"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="steps of the one epoch")
    parser.add_argument("--baseline", type=Path, help="a keras_efficient checkout to compare")
    args = parser.parse_args()
    trees = {"ours": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    print(f"train_detector, 1 epoch of {args.steps} steps, fresh processes, {args.rounds} "
          "rounds (variants alternating); seconds, medians", flush=True)
    print(f"{'config':<7}{'variant':<10}{'run cpu':>9}{'run wall':>10}{'1st step':>10}"
          f"{'cpu ÷ baseline':>16}")
    for config in args.configs:
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for name in order:
                print(f"{config}: round {round_ + 1}/{args.rounds} {name}", file=sys.stderr,
                      flush=True)
                results[name].append(measure(trees[name], config, args.steps))
        medians = {name: {key: statistics.median(r[key] for r in rows if r[key] is not None)
                          for key in ("cpu", "wall", "first_step")}
                   for name, rows in results.items()}
        for name, median in medians.items():
            ratio = (f"{median['cpu'] / medians['baseline']['cpu']:.2f}"
                     if "baseline" in medians else "-")
            print(f"{config:<7}{name:<10}{median['cpu']:>9.1f}{median['wall']:>10.1f}"
                  f"{median['first_step']:>10.1f}{ratio:>16}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
