"""Training images/s on 1 worker vs 2 workers (MultiWorkerMirroredStrategy on 127.0.0.1), and
the cost of one all-reduce of the model's gradients.

Both runs use the same global batch; the two workers share this machine, so on a CPU-only
machine they share its cores and the scaling shows the distribution overhead, not a speed-up.

Usage::

    python benchmarks/multi_worker_throughput.py                  # tiny detector, 64 px, CPU
    python benchmarks/multi_worker_throughput.py --model lite0 --image-size 320 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import json, sys, time
    settings = json.loads(sys.argv[1])
    from keras_efficient.training.strategy import choose_strategy
    strategy = choose_strategy()  # first: MultiWorkerMirrored when TF_CONFIG lists 2 workers
    import keras
    import tensorflow as tf
    from keras_efficient.training.detector import DetectorTrainConfig, train_detector

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []
        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # wait for the step
            self.times.append(time.perf_counter())

    clock = Clock()
    result = train_detector(DetectorTrainConfig(**settings["config"]), strategy=strategy,
                            extra_callbacks=[clock])
    steady = clock.times[settings["warmup"]:]
    step = (steady[-1] - steady[0]) / (len(steady) - 1)
    variables = result.detector.trainable_variables

    @tf.function
    def all_reduce():
        def replica():
            context = tf.distribute.get_replica_context()
            return context.all_reduce("SUM", [tf.zeros_like(v) for v in variables])
        return strategy.run(replica)

    all_reduce()
    started = time.perf_counter()
    for _ in range(20):
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, all_reduce())
    reduce_ms = (time.perf_counter() - started) / 20 * 1000
    floats = sum(int(tf.size(v)) for v in variables)
    print("BENCH", json.dumps({"step_s": step, "reduce_ms": reduce_ms, "floats": floats}),
          flush=True)
""")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run(workers: int, settings: dict, timeout: float) -> list[dict]:
    """Start ``workers`` processes with the same settings; their BENCH results."""
    ports = free_ports(workers)
    processes = []
    try:
        for index in range(workers):
            env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
            env.pop("TF_CONFIG", None)
            if workers > 1:
                env["TF_CONFIG"] = json.dumps({
                    "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                    "task": {"type": "worker", "index": index}})
            values = json.loads(json.dumps(settings))
            values["config"]["output_dir"] = str(Path(values["config"]["output_dir"]) /
                                                 f"{workers}w")
            processes.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, json.dumps(values)], cwd=ROOT, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        results = []
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise RuntimeError(output[-3000:])
            results.append(json.loads(output.split("BENCH", 1)[1].strip().splitlines()[0]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="a detector name, or tiny (tests' one)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="global batch")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    from keras_efficient.data.synthetic import make_detection_dataset

    folder = Path(tempfile.mkdtemp(prefix="multi-worker-bench-"))
    data = make_detection_dataset(folder / "data", num_train=4 * args.batch_size, num_val=2,
                                  image_size=(args.image_size, args.image_size), seed=0)
    overrides: dict = {"input_size": args.image_size}
    model = "lite0"
    if args.model == "tiny":
        import dataclasses

        sys.path.insert(0, str(ROOT))
        from tests.conftest import TINY_OVERRIDES

        overrides = {**TINY_OVERRIDES, "input_size": args.image_size}
        overrides["backbone"] = dataclasses.asdict(overrides["backbone"])
    else:
        model = args.model
    config = {"train_json": str(data.train_json), "train_images": str(data.train_images_dir),
              "output_dir": str(folder / "runs"), "model": model, "spec_overrides": overrides,
              "batch_size": args.batch_size, "epochs": 1, "steps_per_epoch": args.steps,
              "mixed_precision": args.mixed_precision, "verbose": 0}
    settings = {"config": config, "warmup": 3}
    print(f"{args.model} at {args.image_size} px, global batch {args.batch_size}, "
          f"{args.steps} steps (the first 3 not timed)")
    for workers in (1, 2):
        results = run(workers, settings, args.timeout)
        step = max(result["step_s"] for result in results)
        line = (f"{workers} worker(s): {args.batch_size / step:7.1f} images/s "
                f"({step * 1000:.0f} ms/step)")
        if workers > 1:
            line += (f"; one all-reduce of the {results[0]['floats']:,} gradient floats: "
                     f"{results[0]['reduce_ms']:.1f} ms")
        print(line, flush=True)


if __name__ == "__main__":
    main()
