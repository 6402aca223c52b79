"""Export recipes: one small JSON file per deployment target in the top-level ``export/`` folder.

A recipe names the formats to produce and their settings, e.g. ``export/android-int8.json``::

    {"description": "...", "formats": ["int8"], "input_type": "uint8",
     "representative_count": 100, "requires_trained_weights": true}
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from keras_efficient.export.tflite import INPUT_TYPES, QUANTIZATIONS

RECIPE_DIR = Path(__file__).resolve().parents[2] / "export"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What to export for one deployment target."""

    name: str
    formats: tuple[str, ...]
    description: str = ""
    input_type: str = "float32"
    representative_count: int = 100
    requires_trained_weights: bool = False
    latency_runs: int = 10

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in QUANTIZATIONS]
        if not self.formats or unknown:
            raise ValueError(f"Recipe {self.name!r}: formats must be a non-empty list drawn from "
                             f"{QUANTIZATIONS}; unknown: {unknown}.")
        if self.input_type not in INPUT_TYPES:
            raise ValueError(f"Recipe {self.name!r}: input_type must be one of {INPUT_TYPES}.")


def available_recipes(directory: Path = RECIPE_DIR) -> list[str]:
    """Names of the recipes in ``directory``."""
    return sorted(path.stem for path in directory.glob("*.json"))


def load_recipe(name_or_path: str | os.PathLike[str], directory: Path = RECIPE_DIR) -> Recipe:
    """A recipe by name (``android-int8``) or by path to a JSON file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = directory / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(f"Unknown export recipe {os.fspath(name_or_path)!r}; available: "
                         f"{', '.join(available_recipes(directory)) or 'none'} (in {directory}).")
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
    return Recipe(**values)
