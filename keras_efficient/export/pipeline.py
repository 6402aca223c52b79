"""Run a recipe: produce every format, verify each against Keras, write a manifest.

All artifacts, and the temporary SavedModels of TFLite conversion, are written into a hidden
staging folder beside the output (``.<name>.staging-<pid>-<hex>``) that is renamed to the output
folder only when every step succeeded, so a failed export leaves nothing behind and its error
names the step that failed; staging folders of killed runs are removed by the next export to the
same folder. The output folder's mode follows the umask. Per artifact the manifest records the
file, size, sha256, input/output specs, op histogram, tensor types, accuracy against Keras
(max |Δ| and top-1 agreement for classifiers, COCO AP against the Keras model for detectors),
LiteRT latency at 1 and 2 threads, the EdgeTPU report (int8) and whether Task Library metadata
was written.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import platform
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_efficient.data.transforms import pad_channels
from keras_efficient.export.detector_tflite import convert_detector
from keras_efficient.export.edgetpu import (
    INSTALL_HINT,
    compile_for_edgetpu,
    edgetpu_report,
    find_compiler,
)
from keras_efficient.export.recipes import Recipe
from keras_efficient.export.runtime import load_interpreter, op_histogram, tensor_types
from keras_efficient.export.tflite import ExportError, check_images, convert, static_input_shape
from keras_efficient.export.verify import (
    HeldOutSet,
    compare_outputs,
    detection_ap,
    keras_detector_predict_fn,
    latency_ms,
    median_ms,
    tflite_detector_predict_fn,
)
from keras_efficient.files import (
    make_staging_folder,
    publish_folder,
    sha256_of,
    write_bytes_atomic,
)
from keras_efficient.models.efficientdet import EfficientDetector

# Our models normalise pixels in-graph: the Task Library must feed raw [0, 255] pixels.
RAW_PIXELS_MEAN = (0.0,)
RAW_PIXELS_STD = (1.0,)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclasses.dataclass
class ExportJob:
    """What is exported: the model and what the checks and the metadata need to know.

    A raw detector (an ``EfficientDetector``) carries its spec and label map; ``labels`` (the
    class names for metadata and ``labels.txt``) and ``category_ids`` (the dataset's ids, which
    the SavedModel returns) default to the detector's and may override them; ``held_out`` is the
    COCO-format set for the detector AP check.

    Example::

        job = ExportJob(model, images, weights_origin="imagenet", labels=class_names)
        rows = benchmark(job, "bench-out")
    """

    model: Any
    representative: Sequence[np.ndarray]
    weights_origin: str = "unknown"
    labels: Sequence[str] | None = None
    category_ids: Sequence[int] | None = None
    held_out: HeldOutSet | None = None

    @property
    def is_detector(self) -> bool:
        return isinstance(self.model, EfficientDetector)

    def detection_category_ids(self) -> list[int]:
        """The dataset category id of each class index (a detector's own by default)."""
        return list(self.category_ids if self.category_ids is not None
                    else self.model.category_ids)

    def class_names(self) -> list[str]:
        if self.labels is not None:
            return list(self.labels)
        if self.is_detector and self.model.label_map is not None:
            return list(self.model.labels)
        output = self.model.output
        count = int((output["class_logits"] if isinstance(output, dict) else output).shape[-1])
        return [f"class_{i}" for i in range(count)]


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__}
    try:
        from importlib.metadata import version

        versions["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:  # not installed: the runtime falls back to tf.lite
        versions["ai_edge_litert"] = "not installed"
    return versions


def _io_specs(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": d["name"], "shape": [int(v) for v in d["shape"]],
             "dtype": np.dtype(d["dtype"]).name,
             "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]}
            for d in details]


def consumer_warning(name: str, file: str, trained: str, consumer: str,
                     accuracy: dict[str, Any]) -> str:
    """The warning for a detector exported for a consumer that feeds it otherwise than it was
    trained (a letterbox-trained detector for the Task Library / MediaPipe, which stretch), with
    the AP difference the verification measured.

    Example::

        consumer_warning("lite0", "lite0_int8.tflite", "letterbox", "stretch", accuracy)
    """
    ours, theirs = accuracy["tflite"]["AP"], accuracy["consumer"]["tflite"]["AP"]
    return (f"{name} was trained with resize={trained!r}, but this recipe's consumers (Task "
            f"Library, MediaPipe) {consumer} every image: {file} measured AP {100 * theirs:.1f} "
            f"as they feed it vs {100 * ours:.1f} as trained ({100 * (theirs - ours):+.1f}) on "
            f"the held-out set. Train with resize={consumer!r} (keras-efficient train --resize "
            f"{consumer}) for these apps, or feed the model {trained}ed images yourself.")


def _failure(step: str, name: str, error: BaseException, folder: Path) -> ExportError:
    """The ExportError for ``step``, with a hint when the disk (or a file-size limit) is full."""
    reason = str(error)
    if (isinstance(error, OSError) and error.errno in _DISK_FULL) or (
            "No space left on device" in reason or "File too large" in reason):
        reason += (f" (the disk or a file-size limit is full: free space in {folder} or choose "
                   "an output folder on another disk)")
    return ExportError(f"Export step '{step}' failed for {name}: {reason}")


class _Export:
    """One run of :func:`export_model` (state shared by its steps)."""

    def __init__(self, job: ExportJob, recipe: Recipe, staging: Path, samples: list[np.ndarray],
                 log: Callable[..., Any]):
        self.job, self.recipe, self.staging, self.log = job, recipe, staging, log
        self.samples = samples
        self.options = recipe.postprocess_options()
        self.name = job.model.name
        self.reference_ap: dict[str, float] | None = None
        self.warnings: list[str] = []

    def tflite(self, quantization: str) -> dict[str, Any]:
        job, recipe = self.job, self.recipe
        input_type = recipe.input_type if quantization == "int8" else "float32"
        edgetpu = recipe.edgetpu and quantization == "int8"
        selective: dict[str, Any] = {"edgetpu": edgetpu}
        if quantization == "int8":
            selective.update(float_layers=recipe.float_layers, float_worst=recipe.float_worst)
        step = "convert"
        try:
            if job.is_detector:
                payload = convert_detector(job.model, quantization,
                                           options=self.options, representative=self.samples,
                                           input_type=input_type, work_dir=self.staging,
                                           **selective)
            else:
                payload = convert(job.model, quantization, representative=self.samples,
                                  input_type=input_type, work_dir=self.staging, **selective)
            step = "metadata"
            metadata = self.metadata_applies()
            if metadata:
                payload = self.with_metadata(payload)
            step = "write"
            path = write_bytes_atomic(self.staging / f"{self.name}_{quantization}.tflite",
                                      payload)
            step = "verify in LiteRT"
            interpreter = load_interpreter(path)
            entry: dict[str, Any] = {
                "format": f"tflite-{quantization}", "file": path.name,
                "bytes": path.stat().st_size, "sha256": sha256_of(path),
                "inputs": _io_specs(interpreter.get_input_details()),
                "outputs": _io_specs(interpreter.get_output_details()),
                "ops": op_histogram(interpreter), "tensor_types": tensor_types(interpreter),
                "metadata": metadata, "accuracy": self.accuracy(path),
            }
            if getattr(job.model, "qat", False):
                # Ranges from quantization-aware training, not from the representative images.
                entry["calibration"] = "quantization-aware training (no representative images)"
            step = "latency"
            entry["latency_ms"] = {f"{t}_threads": latency_ms(path, self.samples[0], t,
                                                              recipe.latency_runs)
                                   for t in (1, 2)}
            if quantization == "int8" and recipe.edgetpu:
                step = "EdgeTPU"
                entry["edgetpu"] = self.edgetpu(path)
        except Exception as error:
            raise _failure(f"{quantization}: {step}", self.name, error,
                           self.staging.parent) from error
        return entry

    def metadata_applies(self) -> bool:
        return self.recipe.metadata and (not self.job.is_detector
                                         or self.options.postprocess not in ("none", "network"))

    def with_metadata(self, payload: bytes) -> bytes:
        from keras_efficient.export import metadata

        writer = (metadata.write_detector_metadata if self.job.is_detector
                  else metadata.write_classifier_metadata)
        return writer(payload, labels=self.job.class_names(), mean=RAW_PIXELS_MEAN,
                      std=RAW_PIXELS_STD, name=self.name,
                      description=f"{self.name} exported by keras_efficient "
                                  f"(weights: {self.job.weights_origin})")

    def accuracy(self, path: Path) -> dict[str, Any]:
        job = self.job
        if not job.is_detector:
            return compare_outputs(job.model, path, self.samples[:8])
        if job.held_out is None:
            return {"note": "no held-out set given: detection AP not measured"}
        if self.reference_ap is None:
            self.log(f"  COCO AP of the Keras model on {job.held_out.max_images} held-out images")
            self.reference_ap = detection_ap(
                keras_detector_predict_fn(job.model, self.options), job.held_out)
        model, reference, held_out = job.model, self.reference_ap, job.held_out

        def measured(resize: str) -> dict[str, Any]:
            got = detection_ap(tflite_detector_predict_fn(path, self.options,
                                                          model.anchor_spec(),
                                                          pad_value=model.pad_value,
                                                          resize=resize), held_out)
            return {"tflite": got, "AP_delta": round(got["AP"] - reference["AP"], 5),
                    "AP50_delta": round(got["AP50"] - reference["AP50"], 5)}

        result: dict[str, Any] = {"keras": reference, "resize": model.resize,
                                  **measured(model.resize)}
        consumer = self.recipe.consumer_resize
        if consumer is not None:
            # As the recipe's consumer (Task Library, MediaPipe) feeds the file: stretched bytes.
            as_fed = (measured(consumer) if consumer != model.resize
                      else {key: result[key] for key in ("tflite", "AP_delta", "AP50_delta")})
            result["consumer"] = {"resize": consumer, **as_fed}
            if consumer != model.resize:
                self.warnings.append(consumer_warning(self.name, path.name, model.resize,
                                                      consumer, result))
                self.log(f"  warning: {self.warnings[-1]}")
        return result

    def edgetpu(self, path: Path) -> dict[str, Any]:
        report = edgetpu_report(path)
        (self.staging / f"{path.stem}_edgetpu_report.txt").write_text(report.table() + "\n")
        result: dict[str, Any] = {"offline": report.summary()}
        if find_compiler() is None:
            self.log(f"  edgetpu_compiler not found; offline report only. {INSTALL_HINT}")
            result["compiled"] = None
            return result
        compiled, compiled_report = compile_for_edgetpu(path, self.staging)
        result["compiled"] = {"file": compiled.name, "bytes": compiled.stat().st_size,
                              "sha256": sha256_of(compiled),
                              "report": compiled_report.summary()}
        return result

    def saved_model(self) -> dict[str, Any]:
        import tensorflow as tf

        from keras_efficient.export.saved_model import (
            export_classifier_saved_model,
            export_detector_saved_model,
        )

        job = self.job
        folder = self.staging / f"{self.name}_saved_model"
        step = "write"
        try:
            if job.is_detector:
                export_detector_saved_model(job.model, folder,
                                            category_ids=job.detection_category_ids(),
                                            max_detections=self.options.max_detections,
                                            score_threshold=self.options.score_threshold,
                                            iou_threshold=self.options.iou_threshold)
            else:
                export_classifier_saved_model(job.model, folder, labels=job.labels)
            step = "verify"
            loaded = tf.saved_model.load(str(folder))
            raw = loaded.signatures["raw"]
            deltas = []
            for image in self.samples[:4]:
                got = {k: v.numpy() for k, v in raw(images=tf.constant(image)).items()}
                want = job.model.predict(image, verbose=0)
                want = want if isinstance(want, dict) else {"predictions": want}
                deltas += [float(np.max(np.abs(got[k] - want[k]))) for k in want]
            step = "latency"
            pixels = tf.constant(np.clip(self.samples[0], 0, 255).astype("uint8"))
            serve = loaded.signatures["serving_default"]
            serve(images=pixels)
            latency = median_ms(lambda: serve(images=pixels), self.recipe.latency_runs)
        except Exception as error:
            raise _failure(f"saved_model: {step}", self.name, error,
                           self.staging.parent) from error
        files = [p for p in folder.rglob("*") if p.is_file()]
        return {"format": "saved_model", "file": folder.name,
                "bytes": sum(p.stat().st_size for p in files),
                "sha256": sha256_of(folder / "saved_model.pb"),
                "signatures": ["serving_default", "serving_image_bytes", "raw"],
                "accuracy": {"raw_max_abs_delta": max(deltas)},
                "latency_ms": {"serving_default": latency}}


def export_model(model: Any, recipe: Recipe, output_dir: str | os.PathLike[str], *,
                 representative: Sequence[np.ndarray] = (), weights_origin: str = "unknown",
                 labels: Sequence[str] | None = None,
                 category_ids: Sequence[int] | None = None, held_out: HeldOutSet | None = None,
                 debug_quantization: int = 0, log: Any = print) -> dict[str, Any]:
    """Produce every format of ``recipe`` for ``model`` in ``output_dir``; return the manifest.

    ``representative``: ``[1, H, W, 3]`` float images in [0, 255], preprocessed as at inference;
    they calibrate int8 and check classifiers; channels-first or rescaled images are refused
    (:func:`~keras_efficient.export.tflite.check_images`). A raw detector (an
    ``EfficientDetector``) carries its spec and label map: the recipe's post-processing applies
    and ``held_out`` enables the AP check. ``labels`` (default: the detector's) name the classes
    in ``labels.txt`` and the Task Library metadata. ``debug_quantization=N`` also runs
    :func:`~keras_efficient.export.quant_debug.debug_quantization` on the representative images:
    ``quantization_debug.{csv,md,png}`` in the folder, the N worst layers in the manifest
    (``quantization_debug``).

    Example::

        manifest = export_model(detector, load_recipe("android-int8"), "export/lite0",
                                representative=images,
                                held_out=HeldOutSet("val.json", "val/", category_ids))
    """
    out = Path(output_dir)
    if out.exists():
        raise ValueError(f"Export folder {out} already exists; remove it or choose another.")
    if not out.parent.exists() or not os.access(out.parent, os.W_OK):
        raise ValueError(f"Cannot write into {out.parent}: it does not exist or is not "
                         "writable.")
    if recipe.requires_trained_weights and weights_origin in ("none", "random"):
        raise ValueError(f"Recipe {recipe.name!r} needs trained weights (int8 calibration and "
                         "accuracy checks are meaningless on random weights); pass --weights.")
    if not list(representative):
        raise ValueError("The representative dataset is empty: export needs sample images to "
                         "calibrate and verify (e.g. keras_efficient.data.representative_images).")
    job = ExportJob(model, representative, weights_origin, labels, category_ids, held_out)
    samples = check_images(list(representative)[: recipe.representative_count],
                           static_input_shape(model))
    manifest: dict[str, Any] = {"model": model.name, "weights": weights_origin,
                                "recipe": {**dataclasses.asdict(recipe),
                                           "formats": list(recipe.formats),
                                           "float_layers": list(recipe.float_layers)},
                                "versions": _versions(),
                                "task": "detection" if job.is_detector else "classification",
                                "artifacts": []}
    if job.is_detector:
        # What a consumer needs to feed an image as the Keras model saw it: its resize mode and
        # the pad value (the mean colour, 0 after the in-graph normalization), which the .tflite
        # file does not hold.
        manifest["preprocessing"] = {"resize": model.resize,
                                     "interpolation": "bilinear, no antialias",
                                     "pad_value": [float(v) for v in
                                                   pad_channels(model.pad_value, 3)]}
    staging = make_staging_folder(out)
    step = "labels.txt"
    try:
        run = _Export(job, recipe, staging, samples, log)
        (staging / "labels.txt").write_text("\n".join(job.class_names()) + "\n")
        if job.is_detector and recipe.postprocess in ("none", "network"):
            from keras_efficient.export.detector_tflite import write_anchors_csv

            step = "anchors.csv"
            write_anchors_csv(model, staging / "anchors.csv")
        for fmt in recipe.formats:
            log(f"export {model.name} -> {fmt}")
            entry = run.saved_model() if fmt == "saved_model" else run.tflite(fmt)
            manifest["artifacts"].append(entry)
        if debug_quantization:
            from keras_efficient.export.quant_debug import debug_quantization as debug

            step = "quantization debug"
            log(f"int8 error per layer of {model.name} (QuantizationDebugger)")
            report = debug(model, samples, work_dir=staging)
            files = report.write(staging, count=debug_quantization)
            manifest["quantization_debug"] = {**report.summary(debug_quantization),
                                              "files": sorted(p.name for p in files.values())}
        if run.warnings:
            manifest["warnings"] = run.warnings
        step = "manifest.json"
        write_bytes_atomic(staging / "manifest.json", json.dumps(manifest, indent=2).encode())
        step = f"move into {out}"
        publish_folder(staging, out)
    except ExportError:
        raise
    except Exception as error:
        raise _failure(step, model.name, error, out.parent) from error
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log(f"export written to {out}")
    return manifest


def export_job(job: ExportJob, recipe: Recipe, output_dir: str | os.PathLike[str], *,
               debug_quantization: int = 0, log: Any = print) -> dict[str, Any]:
    """:func:`export_model` for an :class:`ExportJob` (e.g. from ``keras_efficient.export.jobs``).

    Example::

        manifest = export_job(trained_detector_job("runs/demo/train"),
                              load_recipe("android-int8"), "export/demo")
    """
    return export_model(job.model, recipe, output_dir, representative=job.representative,
                        weights_origin=job.weights_origin, labels=job.labels,
                        category_ids=job.category_ids, held_out=job.held_out,
                        debug_quantization=debug_quantization, log=log)
