"""Export recipes: one small JSON file per deployment target.

The built-in recipes ship inside the package, beside this module (``server``, ``android-int8``,
``edgetpu``, ``all``), so they work from a wheel as from a checkout. A recipe of one's own is a
JSON file passed by path. A recipe names the formats to produce and their settings, e.g.
``android-int8.json``::

    {"description": "...", "formats": ["int8"], "input_type": "uint8",
     "representative_count": 100, "requires_trained_weights": true,
     "postprocess": "custom_op", "metadata": true, "edgetpu": false}

``formats``: any of ``saved_model``, ``float32``, ``float16``, ``dynamic``, ``int8``.
Detector-only keys: ``postprocess`` (``custom_op``, ``builtin_nms`` or ``none``),
``score_threshold``, ``iou_threshold``, ``max_detections``, ``pre_nms_top_k``, ``op_top_k``
and ``eval_images`` (held-out images for the AP check). ``metadata`` writes Android Task Library
metadata into every ``.tflite``; ``edgetpu`` adds the EdgeTPU report to int8 exports and
compiles them when ``edgetpu_compiler`` is installed. ``consumer_resize`` says how the target's
apps feed a detector (``"stretch"``: the Task Library and MediaPipe resize every image to the
input): the verification then also measures AP fed that way and warns, with the measured
difference, when the detector was trained otherwise. ``float_layers`` (layer or tensor names)
and ``float_worst`` (the N worst layers of the per-layer quantization report) keep those layers
float in the int8 export (selective quantization: float input, CPU/GPU targets only; refused
with ``edgetpu``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from keras_efficient.configs.efficientdet import check_resize
from keras_efficient.export.detector_tflite import PostprocessOptions
from keras_efficient.export.tflite import INPUT_TYPES, QUANTIZATIONS, check_options

FORMATS = ("saved_model", *QUANTIZATIONS)

RECIPE_DIR = Path(__file__).resolve().parent
"""The built-in recipes (package data: ``keras_efficient/export/recipes/*.json``)."""

ARTIFACT_DIR = Path("runs") / "export"
"""Where exports go by default, relative to the working directory:
``runs/export/<model>-<recipe>``."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What to export for one deployment target.

    Example::

        recipe = dataclasses.replace(load_recipe("android-int8"), score_threshold=0.3)
        mine = Recipe(name="fp16", formats=("float16",), metadata=False)
    """

    name: str
    formats: tuple[str, ...]
    description: str = ""
    input_type: str = "float32"
    representative_count: int = 100
    requires_trained_weights: bool = False
    latency_runs: int = 10
    postprocess: str = "custom_op"
    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    max_detections: int = 100
    pre_nms_top_k: int = 1000
    op_top_k: int = 0
    eval_images: int = 50
    metadata: bool = True
    edgetpu: bool = False
    consumer_resize: str | None = None
    float_layers: tuple[str, ...] = ()
    float_worst: int = 0

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if not self.formats or unknown:
            raise ValueError(f"Recipe {self.name!r}: formats must be a non-empty list drawn from "
                             f"{FORMATS}; unknown: {unknown}.")
        if self.input_type not in INPUT_TYPES:
            raise ValueError(f"Recipe {self.name!r}: input_type must be one of {INPUT_TYPES}.")
        if self.metadata and self.input_type == "int8":
            raise ValueError(f"Recipe {self.name!r}: Task Library metadata needs uint8 or float32 "
                             "input (the Task Library feeds no int8 images); set input_type to "
                             "uint8 or metadata to false.")
        if self.consumer_resize is not None:
            try:
                check_resize(self.consumer_resize)
            except ValueError as error:
                raise ValueError(f"Recipe {self.name!r}: consumer_{error}") from error
        if self.edgetpu and "int8" not in self.formats:
            raise ValueError(f"Recipe {self.name!r}: edgetpu needs the int8 format.")
        if (self.float_layers or self.float_worst) and "int8" not in self.formats:
            raise ValueError(f"Recipe {self.name!r}: float_layers/float_worst apply to the int8 "
                             "format, which the recipe does not produce.")
        try:
            self.postprocess_options()
            check_options("int8", self.input_type, float_layers=self.float_layers,
                          float_worst=self.float_worst, edgetpu=self.edgetpu)
        except ValueError as error:
            raise ValueError(f"Recipe {self.name!r}: {error}") from error

    def postprocess_options(self) -> PostprocessOptions:
        """The detector post-processing this recipe asks for."""
        return PostprocessOptions(**{field.name: getattr(self, field.name)
                                     for field in dataclasses.fields(PostprocessOptions)})


def available_recipes(directory: Path = RECIPE_DIR) -> list[str]:
    """Names of the recipes in ``directory``.

    Example::

        available_recipes()  # ["all", "android-int8", "edgetpu", "server"]
    """
    return sorted(path.stem for path in directory.glob("*.json"))


def load_recipe(name_or_path: str | os.PathLike[str], directory: Path = RECIPE_DIR) -> Recipe:
    """A recipe by name (``android-int8``) or by path to a JSON file.

    Example::

        load_recipe("edgetpu").formats  # ("int8",)
        load_recipe("my_recipes/tablet.json")
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = directory / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(f"Unknown export recipe {os.fspath(name_or_path)!r}; built-in: "
                         f"{', '.join(available_recipes(directory)) or 'none'} (in {directory}); "
                         "or pass the path of a recipe JSON file of your own.")
    try:
        values: dict[str, Any] = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"Export recipe {path} is not valid JSON: {error}") from error
    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"Export recipe {path} has unknown keys {unknown}; known: "
                         f"{sorted(fields)}.")
    values.setdefault("name", path.stem)
    values["formats"] = tuple(values.get("formats", ()))
    if "float_layers" in values:
        values["float_layers"] = tuple(values["float_layers"])
    return Recipe(**values)
