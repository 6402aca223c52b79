"""How much AP full-integer export costs EfficientDet-D0 and Lite0, and what each remedy gives back.

Stage ``train`` trains D0 (swish, squeeze-excite, fast fusion) and Lite0 (ReLU6, no SE) from
scratch on the built-in synthetic COCO-format set (the demo's recipe: 400 train / 50 held-out
val images, easy shapes) at ``--size`` px into ``--root``. Stage ``measure`` exports each trained
detector with every method and prints the table: float AP (Keras), int8 AP with the same
post-processing (the ``TFLite_Detection_PostProcess`` op, score > 0.05, IoU 0.5) on a
held-out set (``--held-out`` images of the same generator under another seed), Δ, file size,
LiteRT latency at 2 threads and the EdgeTPU report summary, plus the worst layers of the
per-layer quantization report. Stage ``rescore`` recomputes the APs of the files ``measure``
left, without converting again. Methods:

* ``int8 cal-N train``: full int8, per-channel, uint8 input, calibrated on N train images;
* ``int8 cal-N val``: calibrated on the N val images of the training set (not the held-out
  set's);
* ``int8 cal-N aug``: N train images with flips and scale jitter (the training augmentation);
* ``int8 float input``: as ``int8 cal-100 train`` with a float32 input (the I/O of the two
  rows below, so that their Δ can be read against it);
* ``int16x8``: 16-bit activations, 8-bit weights (CPU only; float I/O);
* ``selective-K``: int8 with the K worst layers of the per-layer report kept float (CPU/GPU;
  float I/O);
* ``qat``: quantization-aware fine-tuning (``train --qat``), converted without calibration.

    PYTHONPATH=$PWD nice -n 5 .venv/bin/python benchmarks/int8_fidelity.py train --root runs/int8
    PYTHONPATH=$PWD .venv/bin/python benchmarks/int8_fidelity.py measure --root runs/int8
    PYTHONPATH=$PWD .venv/bin/python benchmarks/int8_fidelity.py rescore --root runs/int8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = {"d0": "efficientdet-d0", "lite0": "efficientdet-lite0"}


def data_root(root: Path) -> Path:
    return root / "data"


def make_data(root: Path, size: int) -> Any:
    from keras_efficient.data.synthetic import make_detection_dataset

    return make_detection_dataset(data_root(root), num_train=400, num_val=50,
                                  image_size=(size, size), max_objects=3, seed=0,
                                  difficulty="easy")


def held_out_set(root: Path, size: int, count: int) -> Any:
    """``count`` images of the same generator under another seed, never trained or calibrated
    on: on the 50 val images AP moved by ±1 between near-identical int8 files."""
    from keras_efficient.data.synthetic import make_detection_dataset
    from keras_efficient.export.verify import HeldOutSet

    data = make_detection_dataset(root / f"heldout-{size}-{count}", num_train=1, num_val=count,
                                  image_size=(size, size), max_objects=3, seed=7,
                                  difficulty="easy")
    return HeldOutSet(data.val_json, data.val_images_dir, data.coco("val").category_ids,
                      max_images=count)


def train(root: Path, models: Sequence[str], size: int, epochs: int) -> None:
    """Train each model (the demo's settings) unless its folder already holds a detector."""
    from keras_efficient.training.detector import DetectorTrainConfig, train_detector

    data = make_data(root, size)
    for name in models:
        folder = root / name / "train"
        if (folder / "detector.keras").is_file():
            print(f"{name}: trained detector found in {folder}", file=sys.stderr)
            continue
        config = DetectorTrainConfig(
            train_json=str(data.train_json), train_images=str(data.train_images_dir),
            output_dir=str(folder), model=MODELS[name], spec_overrides={"input_size": size},
            batch_size=16, epochs=epochs, steps_per_epoch=20, learning_rate=0.004,
            warmup_epochs=2.0, optimizer="adamw", weight_decay=1e-4, ema_decay=None,
            scale_range=(0.8, 1.25), seed=0, verbose=0)
        print(f"{name}: training {epochs} epochs x 20 steps x 16 images at {size}px",
              file=sys.stderr)
        train_detector(config)


METHODS = ("int8 cal-100 train", "qat", "float fine-tune control", "int8 float input", "int16x8",
           "selective-3", "selective-10", "selective-30", "int8 cal-10 train", "int8 cal-50 val",
           "int8 cal-100 flip")
DEBUG_IMAGES = 32
HELD_OUT_IMAGES = 300
QAT_EPOCHS = 3
QAT_LEARNING_RATE = 0.0005


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def qat_fine_tune(root: Path, name: str, size: int, qat: bool = True) -> Any:
    """``train --qat``: a short quantization-aware fine-tune of the trained float detector
    (``qat=False``: the same fine-tune in float, the control that separates the extra training
    from the quantization awareness)."""
    import keras

    from keras_efficient.training.detector import DetectorTrainConfig, train_detector

    folder = root / name / ("qat" if qat else "float_fine_tune")
    if not (folder / "detector.keras").is_file():
        data = make_data(root, size)
        config = DetectorTrainConfig(
            train_json=str(data.train_json), train_images=str(data.train_images_dir),
            output_dir=str(folder), model=MODELS[name], spec_overrides={"input_size": size},
            batch_size=16, epochs=QAT_EPOCHS, steps_per_epoch=20,
            learning_rate=QAT_LEARNING_RATE, warmup_epochs=0.0, optimizer="adamw",
            weight_decay=1e-4, ema_decay=None, scale_range=(0.8, 1.25), seed=1, verbose=0,
            weights=str(root / name / "train" / "detector.keras"), qat=qat)
        kind = "QAT" if qat else "float"
        log(f"{name}: {kind} fine-tune, {QAT_EPOCHS} epochs x 20 steps x 16 images, "
            f"lr {QAT_LEARNING_RATE}")
        train_detector(config)
    return keras.saving.load_model(folder / "detector.keras", safe_mode=True)


def measure_model(root: Path, name: str, size: int, methods: Sequence[str],
                  runs: int, debug_images: int = DEBUG_IMAGES,
                  held_out_images: int = HELD_OUT_IMAGES) -> list[dict[str, Any]]:
    """One row per method: AP of the same post-processing on the held-out split, size,
    LiteRT latency (2 threads), EdgeTPU report; the float row first."""
    import keras

    from keras_efficient.data.representative import representative_images
    from keras_efficient.export.detector_tflite import PostprocessOptions, convert_detector
    from keras_efficient.export.edgetpu import edgetpu_report
    from keras_efficient.export.quant_debug import debug_quantization
    from keras_efficient.export.verify import (
        detection_ap,
        keras_detector_predict_fn,
        latency_ms,
        tflite_detector_predict_fn,
    )

    data = make_data(root, size)
    model = keras.saving.load_model(root / name / "train" / "detector.keras", safe_mode=True)
    held_out = held_out_set(root, size, held_out_images)
    options = PostprocessOptions()
    out = root / name / "export"
    out.mkdir(parents=True, exist_ok=True)
    pad = {"pad_value": model.pad_value}
    train_images = list(representative_images(data.train_json, (size, size), count=100, **pad))
    val_images = list(representative_images(data.val_json, (size, size), count=50, **pad))
    calibration: dict[str, list[Any]] = {
        "int8 cal-100 train": train_images, "int8 cal-10 train": train_images[:10],
        "int8 cal-50 val": val_images,
        "int8 cal-100 flip": [image if i % 2 else image[:, :, ::-1].copy()
                              for i, image in enumerate(train_images)],
        "int8 float input": train_images, "int16x8": train_images,
        **{method: train_images for method in METHODS if method.startswith("selective")}}
    log(f"{name}: float AP (Keras) on {held_out.max_images} val images")
    float_ap = detection_ap(keras_detector_predict_fn(model, options), held_out)
    rows = [{"model": name, "method": "float (Keras)", "AP": float_ap["AP"],
             "AP50": float_ap["AP50"]}]
    worst = []
    if debug_images:
        log(f"{name}: per-layer int8 error (QuantizationDebugger, {debug_images} train images)")
        report = debug_quantization(model, train_images[:debug_images])
        report.write(out, count=10)
        worst = [{"tensor": layer.tensor, "op": layer.op, "layers": list(layer.layers),
                  "rmse/scale": layer.key("rmse/scale")} for layer in report.worst(5)]

    def convert(method: str) -> tuple[Any, bytes]:
        if method == "qat":
            qat = qat_fine_tune(root, name, size)
            return qat, convert_detector(qat, "int8", options=options, input_type="uint8")
        if method == "float fine-tune control":
            tuned = qat_fine_tune(root, name, size, qat=False)
            return tuned, convert_detector(tuned, "int8", options=options,
                                           representative=train_images, input_type="uint8")
        images = calibration[method]
        if method in ("int16x8", "int8 float input"):
            return model, convert_detector(model, method.split()[0], options=options,
                                           representative=images)
        if method.startswith("selective"):
            return model, convert_detector(model, "int8", options=options,
                                           representative=images,
                                           float_worst=int(method.split("-")[1]))
        return model, convert_detector(model, "int8", options=options, representative=images,
                                       input_type="uint8")

    for method in methods:
        log(f"{name}: {method}")
        reference, payload = convert(method)
        path = out / f"{name}_{method.replace(' ', '_')}.tflite"
        path.write_bytes(payload)
        got = detection_ap(tflite_detector_predict_fn(path, options, model.anchor_spec(),
                                                      pad_value=model.pad_value), held_out)
        row = {"model": name, "method": method, "AP": got["AP"], "AP50": got["AP50"],
               "delta": got["AP"] - float_ap["AP"], "bytes": len(payload),
               "latency_ms": latency_ms(path, train_images[0], 2, runs),
               "edgetpu": _edgetpu(edgetpu_report, payload)}
        if reference is not model:  # fine-tuned: also against its own Keras model
            row["keras_AP"] = detection_ap(keras_detector_predict_fn(reference, options),
                                           held_out)["AP"]
        rows.append(row)
        log(json.dumps(row))
    rows[0]["worst_layers"] = worst
    return rows


def rescore(root: Path, name: str, size: int, held_out_images: int) -> list[dict[str, Any]]:
    """AP of the files an earlier ``measure`` left in ``root/name/export`` on the held-out set
    (no conversion): the Keras float model, the fine-tuned models, every ``.tflite``."""
    import keras

    from keras_efficient.export.detector_tflite import PostprocessOptions
    from keras_efficient.export.verify import (
        detection_ap,
        keras_detector_predict_fn,
        tflite_detector_predict_fn,
    )

    held_out = held_out_set(root, size, held_out_images)
    options = PostprocessOptions()
    model = keras.saving.load_model(root / name / "train" / "detector.keras", safe_mode=True)
    keras_models = {"float (Keras)": model}
    for folder, label in (("qat", "qat (Keras)"), ("float_fine_tune", "fine-tuned (Keras)")):
        if (root / name / folder / "detector.keras").is_file():
            keras_models[label] = keras.saving.load_model(root / name / folder / "detector.keras",
                                                          safe_mode=True)
    rows = []
    for label, keras_model in keras_models.items():
        got = detection_ap(keras_detector_predict_fn(keras_model, options), held_out)
        rows.append({"model": name, "method": label, "AP": got["AP"], "AP50": got["AP50"]})
        log(json.dumps(rows[-1]))
    for path in sorted((root / name / "export").glob(f"{name}_*.tflite")):
        got = detection_ap(tflite_detector_predict_fn(path, options, model.anchor_spec(),
                                                      pad_value=model.pad_value), held_out)
        rows.append({"model": name, "method": path.stem[len(name) + 1:], "AP": got["AP"],
                     "AP50": got["AP50"], "delta": got["AP"] - rows[0]["AP"]})
        log(json.dumps(rows[-1]))
    return rows


def _edgetpu(report: Callable[[bytes], Any], payload: bytes) -> str:
    try:
        summary = report(payload).summary()
    except Exception as error:  # an int16 graph is no EdgeTPU candidate
        return f"n/a ({type(error).__name__})"
    first = summary["first_cpu_op"]
    text = f"{summary['mapped']} mapped, {summary['on_cpu']} CPU"
    return text + (f" (first: {first['op']})" if first else "")


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The closing table as Markdown (AP in points)."""
    lines = ["| model | method | float AP | int8 AP | Δ | size (MB) | LiteRT 2 thr (ms) | "
             "EdgeTPU report |", "|---|---|---|---|---|---|---|---|"]
    floats = {row["model"]: row["AP"] for row in rows if row["method"] == "float (Keras)"}
    for row in rows:
        if row["method"].startswith("float"):
            continue
        lines.append(f"| {row['model']} | {row['method']} | {100 * floats[row['model']]:.1f} | "
                     f"{100 * row['AP']:.1f} | {100 * row['delta']:+.1f} | "
                     f"{row['bytes'] / 1e6:.2f} | {row['latency_ms']:.1f} | {row['edgetpu']} |")
    for row in rows:
        for layer in row.get("worst_layers", []):
            lines.append(f"worst int8 layer of {row['model']}: {layer['rmse/scale']:.3f} x scale "
                         f"{layer['op']} {', '.join(layer['layers']) or layer['tensor']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("train", "measure", "rescore"))
    parser.add_argument("--root", type=Path, default=Path("runs/int8_fidelity"))
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["d0", "lite0"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--runs", type=int, default=20, help="timed LiteRT runs per artifact")
    parser.add_argument("--debug-images", dest="debug_images", type=int, default=DEBUG_IMAGES,
                        help="images for the per-layer report (0: no report)")
    parser.add_argument("--held-out", dest="held_out", type=int, default=HELD_OUT_IMAGES,
                        help="held-out images (another seed) for every AP")
    args = parser.parse_args(argv)
    if args.stage == "train":
        train(args.root, args.models, args.size, args.epochs)
        return 0
    rows = []
    if args.stage == "rescore":
        for name in args.models:
            rows += rescore(args.root, name, args.size, args.held_out)
        (args.root / "int8_rescored.json").write_text(json.dumps(rows, indent=2))
        for row in rows:
            delta = f"{100 * row['delta']:+.1f}" if "delta" in row else ""
            print(f"{row['model']:<6} {row['method']:<28} AP {100 * row['AP']:.1f}  AP50 "
                  f"{100 * row['AP50']:.1f}  {delta}")
        return 0
    for name in args.models:
        rows += measure_model(args.root, name, args.size, args.methods, args.runs,
                              args.debug_images, args.held_out)
        (args.root / "int8_fidelity.json").write_text(json.dumps(rows, indent=2))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
