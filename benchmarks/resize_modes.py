"""The AP a phone sees: the demo detector trained letterboxed and stretched, on 3:4 images.

Runs the demo (``keras_efficient.demo.run_demo``: synthetic COCO-format set, Lite0 trained from
scratch at 128 px, int8 export with the ``edgetpu`` recipe) once per resize mode on images of
``--data-size`` (3:4 by default, where letterboxing pads a quarter of the input and stretching
squeezes), and prints, per training mode, the COCO AP of the Keras float model, of the int8
TFLite file fed as the detector was trained, and of the same file fed as MediaPipe and the Task
Library feed it (the whole image stretched to the input, raw bytes) — all with the export's
post-processing on the same val images.

    .venv/bin/python benchmarks/resize_modes.py [--modes letterbox stretch] [--epochs 25]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_efficient.demo import DemoConfig, run_demo


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["letterbox", "stretch"],
                        choices=("letterbox", "stretch"))
    parser.add_argument("--data-size", nargs=2, type=int, default=(96, 128),
                        metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--epochs", type=int, default=DemoConfig.epochs)
    parser.add_argument("--output", default="runs/bench-resize")
    args = parser.parse_args(argv)
    rows = []
    for mode in args.modes:
        started = time.perf_counter()
        config = DemoConfig(output_dir=str(Path(args.output) / mode), resize=mode,
                            data_size=tuple(args.data_size), epochs=args.epochs)
        run_demo(config, log=lambda *_: None)
        summary = json.loads((Path(config.output_dir) / "summary.json").read_text())
        int8 = summary["int8"]
        rows.append((mode, int8["float"]["AP"], int8["int8"]["AP"],
                     (int8["consumer"] or int8["int8"])["AP"], time.perf_counter() - started))
        print(f"{mode}: done in {rows[-1][-1]:.0f} s", file=sys.stderr, flush=True)
    height, width = args.data_size
    print(f"Demo detector (Lite0 @128, {args.epochs} epochs), {height}x{width} images, COCO AP "
          "with the export's post-processing on the val split:")
    print("| trained | Keras float | int8 as trained | int8 as MediaPipe feeds it "
          "| phone − float |")
    print("|---|---|---|---|---|")
    for mode, keras_ap, int8_ap, phone_ap, _ in rows:
        print(f"| {mode} | {100 * keras_ap:.1f} | {100 * int8_ap:.1f} | {100 * phone_ap:.1f} | "
              f"{100 * (phone_ap - keras_ap):+.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
