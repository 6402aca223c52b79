"""The offline main job: synthetic data -> train a Lite0-class detector -> COCO metrics -> images.

Everything runs on the CPU from built-in data, so ``make demo`` works on a fresh machine without
network. The defaults are tuned to finish in well under 20 minutes on 2 cores while actually
learning (see the README for the figures it reaches).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from keras_efficient.data.synthetic import make_detection_dataset
from keras_efficient.data.transforms import load_image
from keras_efficient.data.visualize import LEGIBLE_SIZE, draw_detections
from keras_efficient.detection.inference import inference_model
from keras_efficient.evaluation.coco_metrics import format_metrics_table
from keras_efficient.evaluation.detector import evaluate_detector
from keras_efficient.evaluation.predict import predict
from keras_efficient.training.detector import DetectorTrainConfig, train_detector


@dataclasses.dataclass
class DemoConfig:
    """Knobs of the demo; the defaults are the tuned, tested ones.

    Example::

        run_demo(dataclasses.replace(DemoConfig(), epochs=5, export_int8=False))
    """

    output_dir: str = "runs/demo"
    image_size: int = 128
    # (height, width) of the generated images; None: square at image_size. A phone-like 3:4
    # makes letterboxing and stretching differ (benchmarks/resize_modes.py).
    data_size: tuple[int, int] | None = None
    num_train: int = 400
    num_val: int = 50
    difficulty: str = "easy"
    max_objects: int = 3
    epochs: int = 25
    steps_per_epoch: int = 20
    batch_size: int = 16
    learning_rate: float = 0.004
    warmup_epochs: float = 2.0
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    ema_decay: float | None = None
    scale_range: tuple[float, float] = (0.8, 1.25)
    resize: str = "letterbox"
    num_drawn: int = 4
    export_int8: bool = True
    calibration_images: int = 100
    seed: int = 0
    spec_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


def run_demo(config: DemoConfig | None = None, log: Any = print) -> dict[str, Any]:
    """Run the whole demo and return the validation metrics.

    Example::

        metrics = run_demo(DemoConfig(output_dir="runs/demo"))
        metrics["AP50"], metrics["detections_dir"]
    """
    config = config or DemoConfig()
    out = Path(config.output_dir)
    started = time.perf_counter()

    def step(message: str) -> None:
        log(f"[{time.perf_counter() - started:6.0f}s] {message}")

    total = 5 if config.export_int8 else 4
    step(f"1/{total} synthetic COCO dataset: {config.num_train} train + {config.num_val} val "
         "images "
         f"of {'x'.join(map(str, config.data_size or (config.image_size,) * 2))}px "
         f"({config.difficulty}) in {out / 'data'}")
    data = make_detection_dataset(out / "data", num_train=config.num_train,
                                  num_val=config.num_val,
                                  image_size=config.data_size or (config.image_size,
                                                                  config.image_size),
                                  max_objects=config.max_objects, seed=config.seed,
                                  difficulty=config.difficulty)  # type: ignore[arg-type]
    train_config = DetectorTrainConfig(
        train_json=str(data.train_json), train_images=str(data.train_images_dir),
        output_dir=str(out / "train"), model="efficientdet-lite0",
        spec_overrides={"input_size": config.image_size, **config.spec_overrides},
        batch_size=config.batch_size,
        epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
        learning_rate=config.learning_rate, warmup_epochs=config.warmup_epochs,
        optimizer=config.optimizer,
        weight_decay=config.weight_decay, ema_decay=config.ema_decay,
        scale_range=config.scale_range, resize=config.resize, seed=config.seed, verbose=0)
    step(f"2/{total} training EfficientDet-Lite0 at {config.image_size}px ({config.resize}) "
         "from scratch: "
         f"{config.epochs} epochs x {config.steps_per_epoch} steps x {config.batch_size} images "
         "(the first epoch includes graph compilation)")
    result = train_detector(train_config, overwrite=True)  # a rerun replaces the demo's run

    step(f"3/{total} COCO evaluation on the val split")
    val = data.coco("val")
    metrics = evaluate_detector(result.detector, data.val_json, data.val_images_dir,
                                progress=False, output_json=out / "metrics.json")
    log(format_metrics_table(metrics))

    step(f"4/{total} drawing {config.num_drawn} val images with detections into "
         f"{out / 'detections'}")
    model = inference_model(result.detector, class_aware=False)
    paths = [Path(record.path) for record in val.records[:config.num_drawn]]
    drawn = out / "detections"
    drawn.mkdir(parents=True, exist_ok=True)
    for path, found in zip(paths, predict(model, paths, score_threshold=0.3), strict=True):
        draw_detections(load_image(path), found["boxes"], found["classes"], found["scores"],
                        labels=val.class_names, path=drawn / f"{Path(path).stem}.png",
                        min_size=LEGIBLE_SIZE)
    summary: dict[str, Any] = {"AP": metrics["AP"], "AP50": metrics["AP50"],
                               "weights": str(result.weights_path),
                               "labels": str(result.labels_path)}
    if config.export_int8:
        step("5/5 int8 TFLite export (TFLite_Detection_PostProcess op, Task Library metadata), "
             f"AP on the val split, EdgeTPU report, into {out / 'export'}")
        summary["int8"] = export_int8(out, data.val_json, config, log)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    int8 = summary.get("int8")
    int8_text = "" if int8 is None else (
        f"; int8 TFLite AP {100 * int8['int8']['AP']:.1f} vs float {100 * int8['float']['AP']:.1f}"
        + ("" if not int8.get("consumer") else
           f" ({100 * int8['consumer']['AP']:.1f} as MediaPipe feeds it)"))
    step(f"done: AP50 {100 * metrics['AP50']:.1f}, AP {100 * metrics['AP']:.1f}{int8_text}; "
         f"weights {result.weights_path}")
    return {**metrics, "seconds": summary["seconds"], "detections_dir": str(drawn)}


def export_int8(out: Path, val_json: Path, config: DemoConfig, log: Any) -> dict[str, Any]:
    """Export the trained detector with the ``edgetpu`` recipe, print float vs int8 AP and the
    EdgeTPU report; return the two APs and the artifact.

    Example::

        export_int8(Path("runs/demo"), Path("runs/demo/data/annotations/instances_val.json"),
                    DemoConfig(), print)  # {"float": {...}, "int8": {...}, "file": ...}
    """
    import shutil

    from keras_efficient.export.jobs import trained_detector_job
    from keras_efficient.export.pipeline import export_job
    from keras_efficient.export.recipes import load_recipe

    recipe = dataclasses.replace(load_recipe("edgetpu"), eval_images=config.num_val,
                                 representative_count=config.calibration_images)
    job = trained_detector_job(out / "train", count=recipe.representative_count,
                               eval_json=val_json, eval_images=config.num_val)
    target = out / "export"
    if (target / "manifest.json").exists():
        shutil.rmtree(target)  # the previous demo run's export
    manifest = export_job(job, recipe, target, log=log)
    artifact = manifest["artifacts"][0]
    accuracy = artifact["accuracy"]
    float_ap, int8_ap = accuracy["keras"], accuracy["tflite"]
    fed_as = accuracy["resize"]
    rows = [(f"Keras float32 ({fed_as})", float_ap), (f"TFLite int8 ({fed_as})", int8_ap)]
    consumer = accuracy.get("consumer")
    if consumer is not None and consumer["resize"] != fed_as:
        rows.append((f"TFLite int8 as MediaPipe feeds it ({consumer['resize']}, raw bytes)",
                     consumer["tflite"]))
    log(f"same post-processing for both (best class per anchor, class-agnostic NMS, score > "
        f"{recipe.score_threshold}), {config.num_val} val images:")
    width = max(len(name) for name, _ in rows) + 2
    log(f"{'model':<{width}}{'AP':>7}{'AP50':>7}{'AP75':>7}")
    for name, values in rows:
        log(f"{name:<{width}}" + "".join(f"{100 * values[k]:>7.1f}"
                                          for k in ("AP", "AP50", "AP75")))
    log(f"int8 - float: AP {100 * accuracy['AP_delta']:+.2f}, AP50 "
        f"{100 * accuracy['AP50_delta']:+.2f}; {artifact['file']} "
        f"{artifact['bytes'] / 1e6:.2f} MB, {artifact['latency_ms']['2_threads']:.1f} ms "
        "(LiteRT, 2 threads)")
    log((target / f"{Path(artifact['file']).stem}_edgetpu_report.txt").read_text().rstrip())
    return {"float": float_ap, "int8": int8_ap, "resize": fed_as,
            "consumer": None if consumer is None else consumer["tflite"],
            "file": str(target / artifact["file"])}
