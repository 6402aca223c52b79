"""The ``keras-efficient`` command line: list, summary, classify, detect, demo, train, eval,
export, bench."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from keras_efficient.batch_inference import Detector


def _quiet_tensorflow() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cmd_list(args: argparse.Namespace) -> int:
    """Print every EfficientNet classifier variant with parameters and MACs, ours next to the
    published figures (detectors are not listed).

    Example::

        # keras-efficient list
        args = build_parser().parse_args(['list'])
        cmd_list(args)
    """
    from keras_efficient.configs import EFFICIENTNET_VARIANTS
    from keras_efficient.models import get_model
    from keras_efficient.models.profile import count_macs

    header = (f"{'model':<20}{'input':>6}{'params':>13}{'MACs (ours)':>14}"
              f"{'MACs (paper)':>14}{'ratio':>7}{'top-1':>7}")
    print(header)
    print("-" * len(header))
    for name, row in EFFICIENTNET_VARIANTS.items():
        model = get_model(name, weights=None)
        macs = count_macs(model)
        print(f"{name:<20}{row.resolution:>6}{model.count_params():>13,}{macs / 1e9:>13.3f}B"
              f"{row.published_macs / 1e9:>13.3f}B{macs / row.published_macs:>7.3f}"
              f"{row.published_top1:>7.1f}", flush=True)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """Print a model's Keras summary, parameter count and MACs.

    Example::

        # keras-efficient summary lite0
        args = build_parser().parse_args(['summary', 'lite0'])
        cmd_summary(args)
    """
    from keras_efficient.configs.names import is_detector
    from keras_efficient.models import get_model
    from keras_efficient.models.profile import count_macs

    detector = is_detector(args.name)
    if detector and args.no_top:
        raise ValueError("--no-top applies to classifiers; a detector has no classifier top.")
    model = get_model(args.name, weights=None, **({} if detector else
                                                  {"include_top": not args.no_top}))
    model.summary(line_length=110, expand_nested=False)
    print(f"{model.name}: {model.count_params():,} parameters, "
          f"{count_macs(model) / 1e9:.3f} B MACs at {model.input_shape[1:3]}")
    return 0


def _weights_arg(value: str) -> str | None:
    return None if value.lower() == "none" else value


def _generated_image(size: int, seed: int) -> np.ndarray:
    """A ``size`` x ``size`` picture of random shapes (``classify`` without images)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(6):
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        extent = int(rng.integers(size // 8, size // 3))
        fill = tuple(int(v) for v in rng.integers(0, 255, 3))
        box = (x0, y0, x0 + extent, y0 + extent)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return np.asarray(canvas, dtype="float32")


def cmd_classify(args: argparse.Namespace) -> int:
    """Classify images (files, folders, globs; a generated image when none) and print the
    top-k with class names: the ImageNet index for ImageNet weights, a training run's labels
    for ``--train-dir``.

    Example::

        # keras-efficient classify photos/ cat.jpg --model b4
        args = build_parser().parse_args(['classify', 'photos/', 'cat.jpg', '--model', 'b4'])
        cmd_classify(args)
    """
    from keras_efficient.batch_inference import classify_images

    labels: list[str] | None = None
    weights: str | None
    if args.train_dir:
        from keras_efficient.training.run_folder import load_trained_classifier

        run = load_trained_classifier(args.train_dir)
        model, labels, weights = run.model, run.labels, str(run.weights_path)
    else:
        from keras_efficient.models import get_model

        weights = _weights_arg(args.weights)
        model = get_model(args.model, weights=weights)
        if weights == "imagenet" and model.output_shape[-1] == 1000:
            labels = _imagenet_names()
    size = int(model.input_shape[1] or 224)
    print(f"{model.name}: {model.count_params():,} parameters, input {size}x{size}, "
          f"weights: {weights or 'random (weights=None)'}")
    if not args.images:
        image = _generated_image(size, args.seed)
        probabilities = model.predict(image[None], verbose=0)[0]
        rows = [{"file": f"a generated {size}x{size} image (seed {args.seed})",
                 "top": [(int(i), labels[i] if labels else f"class {i}",
                          float(probabilities[i]))
                         for i in np.argsort(probabilities)[::-1][:args.top]]}]
    else:
        rows = classify_images(model, args.images, labels=labels, top=args.top,
                               progress=len(args.images) > 1 or Path(args.images[0]).is_dir(),
                               on_error=args.on_error)
    for row in rows:
        print(f"top-{len(row['top'])} for {row['file']}:")
        for rank, (index, name, score) in enumerate(row["top"], start=1):
            print(f"  {rank}. {name:<28} (class {index:>4}) p={score:.4f}")
    if args.output:
        from keras_efficient.files import write_json_atomic

        write_json_atomic(args.output, rows)
        print(f"results: {args.output}")
    return 0


def _imagenet_names() -> list[str] | None:
    """ImageNet class names from the cache, else downloaded once; ``None`` (with a note) when
    neither works, e.g. offline."""
    from keras_efficient.models.imagenet import cached_imagenet_class_names, decode_predictions

    names = cached_imagenet_class_names()
    if names is None:
        try:
            decode_predictions(np.zeros((1, 1000)), top=1)  # fetches and verifies the index
            names = cached_imagenet_class_names()
        except (OSError, ValueError) as error:
            print(f"note: ImageNet class names unavailable ({error}); printing class numbers.")
    return names


def cmd_detect(args: argparse.Namespace) -> int:
    """Detect objects in one's own images with a trained run, a named variant with weights or
    an exported ``.tflite``; write a COCO-results JSON and drawn PNGs.

    Example::

        # keras-efficient detect photos/ --train-dir runs/mine --output runs/mine/found
        args = build_parser().parse_args(['detect', 'photos/', '--train-dir', 'runs/mine'])
        cmd_detect(args)
    """
    from keras_efficient.batch_inference import detect_images, keras_detector, tflite_detector

    labels, ids = _detect_labels(args)
    if args.tflite:
        pad_value, resize = None, args.resize
        if args.train_dir:  # the run it was exported from knows its resize mode and pad value
            from keras_efficient.training.run_folder import load_trained_detector

            trained = load_trained_detector(args.train_dir).model
            pad_value, resize = trained.pad_value, resize or trained.resize
        detector = tflite_detector(args.tflite, labels=labels, category_ids=ids,
                                   resize=resize, pad_value=pad_value)
        source = f"{args.tflite} (LiteRT, {resize or 'resize as its manifest.json records'})"
    elif args.train_dir:
        from keras_efficient.training.run_folder import load_trained_detector

        run = load_trained_detector(args.train_dir, weights=args.weights)
        detector = keras_detector(run.model, score_threshold=args.score_threshold,
                                  max_detections=args.max_detections)
        source = f"{run.model.name} from {args.train_dir}"
    else:
        detector, source = _named_detector(args, labels, ids)
    output = Path(args.output or Path("runs") / "detect")
    print(f"detecting with {source} (score >= {args.score_threshold})")
    results = detect_images(detector, args.images, output, score_threshold=args.score_threshold,
                            draw=not args.no_draw, on_error=args.on_error)
    images = json.loads((output / "images.json").read_text())
    for image in images:
        mine = [r for r in results if r["image_id"] == image["id"]]
        best = ", ".join(f"{r['category_name']} {r['score']:.2f}" for r in mine[:5])
        print(f"  {image['file_name']}: {len(mine)} detections{': ' + best if best else ''}")
    print(f"{len(images)} images, {len(results)} detections\nresults: "
          f"{output / 'detections.json'}" + ("" if args.no_draw else f"\ndrawings: {output}"))
    return 0


def _detect_labels(args: argparse.Namespace) -> tuple[list[str] | None, list[int] | None]:
    """Class names and category ids from ``--labels`` (labels.txt or labels.json), or from
    ``--train-dir`` when a ``.tflite`` is given, else ``None`` (the source's own)."""
    if args.labels:
        path = Path(args.labels)
        if not path.is_file():
            raise ValueError(f"No such labels file: {path}.")
        if path.suffix == ".json":
            entries = json.loads(path.read_text())
            return [str(e["name"]) for e in entries], [int(e["id"]) for e in entries]
        return [line for line in path.read_text().splitlines() if line], None
    if args.tflite and args.train_dir:
        entries = json.loads((Path(args.train_dir) / "labels.json").read_text())
        return [str(e["name"]) for e in entries], [int(e["id"]) for e in entries]
    return None, None


def _named_detector(args: argparse.Namespace, labels: list[str] | None,
                    ids: list[int] | None) -> tuple[Detector, str]:
    """``--model NAME --weights coco|FILE``: COCO names for ``coco``, ``--labels`` otherwise."""
    from keras_efficient.batch_inference import keras_detector
    from keras_efficient.configs.coco import coco_label_map
    from keras_efficient.configs.efficientdet import get_efficientdet_spec
    from keras_efficient.models.efficientdet import EfficientDet

    if not args.weights:
        raise ValueError("detect needs --train-dir DIR, --tflite FILE, or --model NAME with "
                         "--weights coco|FILE.")
    if labels is None:
        if args.weights != "coco":
            raise ValueError("--weights FILE needs --labels (labels.txt or labels.json of the "
                             "classes it was trained on), or use --train-dir.")
        labels, ids = coco_label_map()
    model = EfficientDet(get_efficientdet_spec(args.model), num_classes=len(labels),
                         weights=args.weights,
                         label_map=list(zip(ids or range(1, len(labels) + 1), labels,
                                            strict=True)))
    detector = keras_detector(model, score_threshold=args.score_threshold,
                              max_detections=args.max_detections)
    return detector, f"{model.spec.name} ({args.weights})"


def cmd_demo(args: argparse.Namespace) -> int:
    """The offline main job: synthetic data, train a detector, evaluate, draw detections.

    Example::

        # keras-efficient demo --quick
        args = build_parser().parse_args(['demo', '--quick'])
        cmd_demo(args)
    """
    from keras_efficient.demo import DemoConfig, run_demo

    config = DemoConfig(output_dir=args.output, resize=args.resize)
    if args.quick:
        config = dataclasses.replace(config, num_train=32, num_val=8, epochs=1,
                                     steps_per_epoch=2, batch_size=4, num_drawn=1,
                                     calibration_images=8)
    run_demo(config)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a detector on COCO-format data, or a classifier on an image folder.

    Example::

        # keras-efficient train --config settings.json
        args = build_parser().parse_args(['train', '--config', 'settings.json'])
        cmd_train(args)
    """
    if args.task == "classify":
        return _train_classifier(args)
    from keras_efficient.training.detector import DetectorTrainConfig, train_detector
    from keras_efficient.training.strategy import choose_strategy

    values = _settings(args, ("train_json", "train_images", "output_dir", "model", "batch_size",
                              "epochs", "steps_per_epoch", "learning_rate", "optimizer",
                              "weights", "backbone_weights", "ema_decay", "on_error",
                              "resize"))
    if args.image_size:
        values.setdefault("spec_overrides", {})
        values["spec_overrides"] = {**dict(values["spec_overrides"]),  # type: ignore[call-overload]
                                    "input_size": args.image_size}
    if args.mixed_precision:
        values["mixed_precision"] = True
    if args.qat:
        values["qat"] = True
    _require(values, ("train_json", "train_images", "output_dir"), "train")
    unknown = set(values) - {f.name for f in dataclasses.fields(DetectorTrainConfig)}
    if unknown:
        raise ValueError(f"Unknown training settings in the config: {sorted(unknown)}.")
    config = DetectorTrainConfig(**values)  # type: ignore[arg-type]
    # Before any other TensorFlow op: a multi-worker strategy cannot be made after one.
    strategy = choose_strategy(args.strategy, connect_timeout=args.connect_timeout)
    result = train_detector(config, strategy=strategy, overwrite=args.overwrite)
    print(f"weights: {result.weights_path}\nlabels: {result.labels_path}")
    return 0


def _settings(args: argparse.Namespace, keys: Sequence[str]) -> dict[str, object]:
    """Settings from ``--config`` (JSON), overridden by the flags that were given."""
    values: dict[str, object] = json.loads(Path(args.config).read_text()) if args.config else {}
    values.update({key: getattr(args, key) for key in keys if getattr(args, key) is not None})
    if args.freeze_backbone:
        values["freeze_backbone"] = True
    return values


def _require(values: dict[str, object], keys: Sequence[str], command: str) -> None:
    missing = [key for key in keys if key not in values]
    if missing:
        raise ValueError(f"{command} needs {', '.join('--' + k.replace('_', '-') for k in missing)}"
                         " (as flags or in --config).")


def _train_classifier(args: argparse.Namespace) -> int:
    from keras_efficient.training.classifier import ClassifierTrainConfig, train_classifier
    from keras_efficient.training.strategy import choose_strategy

    values = _settings(args, ("train_images", "output_dir", "model", "batch_size", "epochs",
                              "learning_rate", "optimizer", "weights", "ema_decay",
                              "image_size"))
    _require(values, ("train_images", "output_dir"), "train --task classify")
    if args.on_error == "skip":
        raise ValueError("--on-error skip applies to detector training (COCO annotations); "
                         "an image folder for --task classify is read as it is: remove or "
                         "re-encode the files it names instead.")
    config = ClassifierTrainConfig(**values)  # type: ignore[arg-type]
    strategy = choose_strategy(args.strategy, connect_timeout=args.connect_timeout)
    result = train_classifier(config, strategy, overwrite=args.overwrite)
    print(f"top-1 {result['metrics']['top1']:.3f}, top-5 {result['metrics']['top5']:.3f}; "
          f"weights in {values['output_dir']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """COCO metrics of a trained detector on a COCO-format split.

    Example::

        # keras-efficient eval --train-dir runs/a --gt-json v.json
        args = build_parser().parse_args(['eval', '--train-dir', 'runs/a', '--gt-json', 'v.json'])
        cmd_eval(args)
    """
    from keras_efficient.configs.efficientdet import get_efficientdet_spec
    from keras_efficient.data.coco import CocoDataset
    from keras_efficient.evaluation.coco_metrics import format_metrics_table
    from keras_efficient.evaluation.detector import evaluate_detector
    from keras_efficient.models.efficientdet import EfficientDet
    from keras_efficient.training.run_folder import load_trained_detector

    data = CocoDataset(args.gt_json, args.images, on_error=args.on_error)
    if data.skipped:
        print(f"skipped (--on-error skip): {data.skipped}", file=sys.stderr)
    if len(data) == 0:
        from keras_efficient.evaluation.coco_metrics import NO_IMAGES

        raise ValueError(f"{args.gt_json}: {NO_IMAGES}")
    if args.train_dir:
        run = load_trained_detector(args.train_dir, weights=args.weights,
                                    input_size=args.image_size)
        detector = run.model
    elif args.weights:
        spec = get_efficientdet_spec(args.model)
        if args.image_size:
            spec = spec.with_(input_size=args.image_size)
        detector = EfficientDet(spec, num_classes=data.num_classes, weights=args.weights)
    else:
        raise ValueError("eval needs --train-dir (a train output folder) or --weights.")
    metrics = evaluate_detector(detector, args.gt_json, data_image_dir(data, args.images),
                                label_map=data.category_ids, output_json=args.output,
                                image_ids=[record.image_id for record in data.records])
    print(format_metrics_table(metrics))
    return 0


def _export_job(args: argparse.Namespace, count: int) -> object:
    """The export job the flags describe (see ``keras_efficient.export.jobs``)."""
    from keras_efficient.export import jobs

    trained = Path(args.train_dir) / "train_config.json"
    if args.model == "demo" and trained.exists():
        print(f"exporting the demo's trained detector ({args.train_dir})")
        return jobs.trained_detector_job(args.train_dir, count=count, eval_json=args.eval_json)
    if args.model == "demo":
        print(f"no trained demo model in {args.train_dir} (run `make demo` first): exporting a "
              "freshly built EfficientDet-Lite0 with RANDOM weights, calibrated on synthetic "
              "images")
        return jobs.fresh_detector_job(count=min(count, 16))
    if args.representative is None:
        raise ValueError("--representative (an image folder or COCO json) is needed to "
                         "calibrate and verify the export.")
    weights = None if args.weights in (None, "none") else str(args.weights)
    print(f"exporting {args.model} with weights: {weights or 'random'}")
    return jobs.variant_job(args.model, weights=weights, representative=args.representative,
                            count=count, eval_json=args.eval_json)


def cmd_export(args: argparse.Namespace) -> int:
    """Export a model with a recipe: every format verified in LiteRT, plus a manifest.

    Example::

        # keras-efficient export --recipe edgetpu
        args = build_parser().parse_args(['export', '--recipe', 'edgetpu'])
        cmd_export(args)
    """
    from keras_efficient.export.pipeline import ExportJob, export_job
    from keras_efficient.export.recipes import ARTIFACT_DIR, load_recipe

    recipe = load_recipe(args.recipe) if args.recipe else None
    job = _export_job(args, recipe.representative_count if recipe else 100)
    assert isinstance(job, ExportJob)
    if recipe is None:
        recipe = load_recipe("server" if job.weights_origin == "random" else "android-int8")
    if args.float_layers or args.float_worst:
        recipe = dataclasses.replace(recipe, float_layers=tuple(args.float_layers or ()),
                                     float_worst=args.float_worst)
    output = Path(args.output or ARTIFACT_DIR / f"{job.model.name}-{recipe.name}")
    manifest = export_job(job, recipe, output, debug_quantization=args.debug_quantization)
    from keras_efficient.export.bench import format_table

    print(format_table(manifest["artifacts"]))
    for row in manifest.get("quantization_debug", {}).get("worst", []):
        print(f"  int8 error {row['rmse/scale']:8.3f} x scale  {row['op']:<18} "
              f"{', '.join(row['layers']) or row['tensor']}")
    for artifact in manifest["artifacts"]:
        if "edgetpu" in artifact:
            print((output / f"{Path(artifact['file']).stem}_edgetpu_report.txt").read_text())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Every format of one model side by side: latency, size, accuracy; a PNG plot.

    Example::

        # keras-efficient bench --runs 30
        args = build_parser().parse_args(['bench', '--runs', '30'])
        cmd_bench(args)
    """
    import tempfile

    from keras_efficient.export.bench import benchmark, format_table, plot
    from keras_efficient.export.pipeline import ExportJob

    job = _export_job(args, args.images)
    assert isinstance(job, ExportJob)
    output = Path(args.output or tempfile.mkdtemp(prefix="keras_efficient_bench_")) / "formats"
    rows = benchmark(job, output, runs=args.runs, compiled_model=args.compiled_model)
    print(format_table(rows))
    png = plot(rows, output / "bench.png", f"{job.model.name} ({job.weights_origin})")
    print(f"plot: {png}\nartifacts and manifest: {output}")
    return 0


def data_image_dir(data: object, images: str | None) -> str:
    """The image folder: the one given, else the folder of the first record.

    Example::

        data_image_dir(CocoDataset("val.json"), None)  # the folder of the first image
    """
    if images:
        return images
    records = getattr(data, "records", [])
    if not records:
        raise ValueError("The dataset has no images; pass --images.")
    return str(Path(records[0].path).parent)


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of ``keras-efficient``: one subcommand per ``cmd_*`` function.

    Example::

        args = build_parser().parse_args(["export", "--recipe", "server"])
        args.func(args)  # cmd_export
    """
    parser = argparse.ArgumentParser(prog="keras-efficient", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="all variants with params, MACs and input size"
                   ).set_defaults(func=cmd_list)

    summary = sub.add_parser("summary", help="the Keras summary of one variant")
    summary.add_argument("name", help="variant, e.g. b0, efficientnetb4, lite0")
    summary.add_argument("--no-top", action="store_true", help="without the classifier")
    summary.set_defaults(func=cmd_summary)

    classify = sub.add_parser("classify", help="classify images (files, folders, globs)")
    classify.add_argument("images", nargs="*", help="image files, folders or glob patterns "
                          "(default: one generated image)")
    classify.add_argument("--model", default="b0", help="variant name (default b0)")
    classify.add_argument("--weights", default="imagenet",
                          help="'imagenet', 'none' or a weights file")
    classify.add_argument("--train-dir", dest="train_dir",
                          help="a `train --task classify` output folder (model, labels)")
    classify.add_argument("--top", type=int, default=5, help="classes to print per image")
    classify.add_argument("--output", help="also write the results as JSON here")
    classify.add_argument("--seed", type=int, default=0, help="seed of the generated image")
    classify.add_argument("--on-error", dest="on_error", choices=("raise", "skip"),
                          default="skip", help="an image that cannot be decoded: skip it and "
                          "report it (default), or stop with an error")
    classify.set_defaults(func=cmd_classify)

    detect = sub.add_parser("detect", help="detect objects in images; COCO JSON + drawings")
    detect.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    detect.add_argument("--train-dir", dest="train_dir",
                        help="a `train` output folder (model, weights, labels)")
    detect.add_argument("--model", default="lite0",
                        help="detector variant for --weights (default lite0)")
    detect.add_argument("--weights", help="'coco' or a detector weights file (with --model)")
    detect.add_argument("--tflite", help="an exported detector .tflite (run in LiteRT)")
    detect.add_argument("--labels", help="labels.txt or labels.json naming the classes")
    detect.add_argument("--resize", choices=("letterbox", "stretch"),
                        help="--tflite only: letterbox or stretch (as the Android Task Library "
                        "and MediaPipe feed it); default: as the detector was trained (its "
                        "--train-dir, else the export's manifest.json)")
    detect.add_argument("--score-threshold", dest="score_threshold", type=float, default=0.3)
    detect.add_argument("--max-detections", dest="max_detections", type=int, default=100)
    detect.add_argument("--output", help="output folder (default runs/detect)")
    detect.add_argument("--no-draw", dest="no_draw", action="store_true",
                        help="only the JSON, no drawn PNGs")
    detect.add_argument("--on-error", dest="on_error", choices=("raise", "skip"),
                        default="skip", help="an image that cannot be decoded: skip it and "
                        "report it (default), or stop with an error before any output")
    detect.set_defaults(func=cmd_detect)

    demo = sub.add_parser("demo", help="offline main job: synthetic data, train, evaluate")
    demo.add_argument("--output", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--quick", action="store_true", help="a tiny smoke run (seconds, not AP)")
    demo.add_argument("--resize", choices=("letterbox", "stretch"), default="letterbox",
                      help="train letterboxed (default) or stretched (as phones feed)")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="train a detector on COCO-format data")
    train.add_argument("--task", choices=("detect", "classify"), default="detect",
                       help="detect: COCO json + images; classify: an image folder of classes")
    train.add_argument("--config", help="JSON file with DetectorTrainConfig (or, for "
                       "classify, ClassifierTrainConfig) fields")
    train.add_argument("--train-json", dest="train_json")
    train.add_argument("--train-images", dest="train_images",
                       help="image folder (classify: <folder>/<class>/*.png)")
    train.add_argument("--output-dir", dest="output_dir")
    train.add_argument("--model", help="detector name, e.g. lite0, d0 (default lite0)")
    train.add_argument("--image-size", dest="image_size", type=int)
    train.add_argument("--batch-size", dest="batch_size", type=int)
    train.add_argument("--epochs", type=int)
    train.add_argument("--steps-per-epoch", dest="steps_per_epoch", type=int)
    train.add_argument("--learning-rate", dest="learning_rate", type=float)
    train.add_argument("--optimizer", choices=("sgd", "adamw"))
    train.add_argument("--ema-decay", dest="ema_decay", type=float)
    train.add_argument("--weights", help="None, 'coco' or a detector weights file")
    train.add_argument("--backbone-weights", dest="backbone_weights", help="'imagenet' or path")
    train.add_argument("--resize", choices=("letterbox", "stretch"),
                       help="how images become the input, recorded in the model: letterbox "
                       "(default; automl's, keep the aspect and pad) or stretch (as the Android "
                       "Task Library and MediaPipe feed; train so for those apps)")
    train.add_argument("--freeze-backbone", dest="freeze_backbone", action="store_true")
    train.add_argument("--mixed-precision", dest="mixed_precision", action="store_true")
    train.add_argument("--qat", action="store_true",
                       help="quantization-aware fine-tuning of the trained detector in "
                            "--weights (its int8 export then needs no calibration)")
    train.add_argument("--on-error", dest="on_error", choices=("raise", "skip"),
                       help="bad annotations / unreadable images: raise (default) or skip "
                       "them (counted and reported)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a finished (or differently configured) run in the output "
                       "folder instead of refusing")
    train.add_argument("--strategy", choices=("auto", "default", "mirrored", "multi-worker"),
                       default="auto",
                       help="tf.distribute strategy (default auto: multi-worker when TF_CONFIG "
                       "lists several workers, mirrored on several GPUs)")
    train.add_argument("--connect-timeout", dest="connect_timeout", type=float, default=300.0,
                       help="seconds a multi-worker run waits for the other workers (300)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("eval", help="COCO metrics of a trained detector")
    evaluate.add_argument("--model", default="lite0", help="detector name (default lite0)")
    evaluate.add_argument("--train-dir", dest="train_dir",
                          help="output folder of `train` (config, weights)")
    evaluate.add_argument("--weights", help="detector weights file")
    evaluate.add_argument("--gt-json", dest="gt_json", required=True)
    evaluate.add_argument("--images", help="image folder (default: found from the json)")
    evaluate.add_argument("--image-size", dest="image_size", type=int)
    evaluate.add_argument("--output", help="write the metrics as JSON here")
    evaluate.add_argument("--on-error", dest="on_error", choices=("raise", "skip"),
                          default="raise", help="unreadable images / bad annotations: raise "
                          "(default) or skip them (evaluated on the rest, and reported)")
    evaluate.set_defaults(func=cmd_eval)

    export = sub.add_parser("export", help="export with a recipe (built-in or a JSON file)")
    bench = sub.add_parser("bench", help="one model in every format: latency, size, accuracy")
    for command in (export, bench):
        command.add_argument("--model", default="demo",
                             help="'demo' (the demo's trained detector) or a variant name")
        command.add_argument("--weights", help="weights file for a named variant (default "
                             "random)")
        command.add_argument("--train-dir", dest="train_dir", default="runs/demo/train",
                             help="where the demo's trained detector is (for --model demo)")
        command.add_argument("--representative",
                             help="image folder or COCO json for calibration")
        command.add_argument("--eval-json", dest="eval_json",
                             help="COCO json of a held-out set for the detector AP check")
    export.add_argument("--recipe", help="built-in recipe (server, android-int8, edgetpu, all) "
                        "or a JSON path (default android-int8 with trained weights, server "
                        "without)")
    export.add_argument("--output", help="output folder (default runs/export/<model>-<recipe>)")
    export.add_argument("--debug-quantization", dest="debug_quantization", type=int, nargs="?",
                        const=10, default=0, metavar="N",
                        help="also report each layer's int8 error (TensorFlow's "
                             "QuantizationDebugger): quantization_debug.csv/.md/.png in the "
                             "folder, the N worst layers (default 10) in manifest.json")
    export.add_argument("--float-layers", dest="float_layers", nargs="+", metavar="NAME",
                        help="selective int8: keep these layers (Keras layer or tensor names) "
                             "float; float input, CPU/GPU recipes only (not edgetpu)")
    export.add_argument("--float-worst", dest="float_worst", type=int, default=0, metavar="N",
                        help="selective int8: keep the N worst layers of the per-layer "
                             "quantization report float (not for edgetpu)")
    export.set_defaults(func=cmd_export)
    bench.add_argument("--output", help="folder for the artifacts and bench.png (default: a "
                       "temporary folder)")
    bench.add_argument("--runs", type=int, default=20, help="timed runs per format")
    bench.add_argument("--images", type=int, default=32, help="calibration images")
    bench.add_argument("--compiled-model", dest="compiled_model", action="store_true",
                       help="also time each TFLite file in LiteRT's CompiledModel beside the "
                            "Interpreter (2 threads, interleaved)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``keras-efficient`` console script.

    Example::

        main(["list"])  # 0; errors in the inputs print a message and return 2
    """
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as error:
        # ExportError (a failed export step) lives beside TensorFlow: only raised once loaded.
        export = sys.modules.get("keras_efficient.export.tflite")
        if not isinstance(error, (ValueError, OSError, getattr(export, "ExportError", ()))):
            raise
        print(f"keras-efficient: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
