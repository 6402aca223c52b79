"""Training throughput (images/s) of EfficientDet on this CPU, and of the input pipeline alone.

For each model at its native input size: the synthetic COCO set is generated at that size, the
input pipeline (decode, augment, resize/pad, target matching) is timed on its own, then training
steps are timed after a warm-up (graph compilation excluded). The pipeline should run at least
3x faster than the training step, so that it never starves training.

    .venv/bin/python benchmarks/training_throughput.py [--models lite0 d0] [--steps 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from keras_efficient.configs.efficientdet import get_efficientdet_spec
from keras_efficient.data.coco import CocoDataset
from keras_efficient.data.pipeline import detection_dataset
from keras_efficient.data.synthetic import make_detection_dataset
from keras_efficient.detection.anchors import generate_anchors
from keras_efficient.models.efficientdet import EfficientDet
from keras_efficient.training.targets import with_targets
from keras_efficient.training.trainer import DetectionTrainer


def pipeline_rate(dataset: tf.data.Dataset, batches: int, batch_size: int) -> float:
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def training_rate(name: str, root: Path, batch_size: int, steps: int) -> tuple[float, float]:
    spec = get_efficientdet_spec(name)
    size = (spec.input_size, spec.input_size)
    data_root = make_detection_dataset(root / name, num_train=32, num_val=1, image_size=size)
    coco = CocoDataset(data_root.train_json, data_root.train_images_dir)
    anchors = generate_anchors(spec.anchor_spec(size))
    dataset = with_targets(detection_dataset(coco, size, batch_size=batch_size, training=True,
                                             seed=0).repeat(), anchors, coco.num_classes)
    pipeline = pipeline_rate(dataset, steps * 2, batch_size)
    trainer = DetectionTrainer(EfficientDet(spec, num_classes=coco.num_classes))
    trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    trainer.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # compile
    start = time.perf_counter()
    trainer.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    training = steps * batch_size / (time.perf_counter() - start)
    return training, pipeline


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lite0", "d0"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            print(f"{name}: generating data, timing pipeline and training...", file=sys.stderr)
            training, pipeline = training_rate(name, Path(folder), args.batch_size, args.steps)
            rows.append((name, training, pipeline))
    print(f"Training throughput, batch {args.batch_size}, native input size, CPU "
          f"({os.cpu_count()} cores), TensorFlow {tf.__version__}")
    print(f"{'model':<8}{'train img/s':>13}{'pipeline img/s':>16}{'ratio':>8}")
    for name, training, pipeline in rows:
        print(f"{name:<8}{training:>13.2f}{pipeline:>16.1f}{pipeline / training:>8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
