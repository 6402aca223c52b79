"""What a training run may do with its output folder: start fresh, resume, or refuse.

A folder that holds a finished run, or an interrupted run of another configuration, is never
silently overwritten: training refuses with the reason and the fix (``overwrite=True`` /
``--overwrite``, or another folder). An interrupted run of the same configuration resumes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CONFIG_FILE = "train_config.json"
BACKUP_DIR = "backup"
# Settings that do not change what is trained (a rerun may change them and still resume).
NOT_COMPARED = frozenset({"verbose", "output_dir"})


def _normalised(values: Mapping[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(dict(values), default=str))
    return {key: value for key, value in loaded.items() if key not in NOT_COMPARED}


def prepare_output_folder(output: Path, config: Mapping[str, Any], *, weights_file: str,
                          run_files: Sequence[str], overwrite: bool = False) -> str:
    """Check ``output`` for an earlier run; returns ``"new"``, ``"resume"`` or ``"overwrite"``
    (after removing that run's ``run_files``), or raises ``ValueError`` naming the fix.

    Example::

        mode = prepare_output_folder(Path("runs/mine"), dataclasses.asdict(config),
                                     weights_file="detector.weights.h5",
                                     run_files=("labels.txt", "detector.weights.h5", "backup"))
    """
    if output.exists() and not output.is_dir():
        raise ValueError(f"The output folder {output} exists and is not a folder; choose "
                         "another output_dir.")
    config_path = output / CONFIG_FILE
    has_weights = (output / weights_file).exists()
    has_backup = (output / BACKUP_DIR).exists()
    if not (config_path.exists() or has_weights or has_backup):
        return "new"
    if overwrite:
        for name in (*run_files, CONFIG_FILE, BACKUP_DIR):
            target = output / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        return "overwrite"
    previous: dict[str, Any] | None = None
    if config_path.exists():
        try:
            previous = json.loads(config_path.read_text())
        except ValueError:
            previous = None
    model = (previous or {}).get("model", "an unknown model")
    fix = ("Pass --overwrite (overwrite=True) to replace it, or choose another output folder.")
    if has_weights and not has_backup:
        raise ValueError(f"{output} already holds a finished training run ({model}); training "
                         f"again would replace its weights and labels. {fix}")
    if previous is None:
        raise ValueError(f"{output} holds weights or a resume backup but no readable "
                         f"{CONFIG_FILE}, so it cannot be resumed safely. {fix}")
    old, new = _normalised(previous), _normalised(config)
    changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
    if changed:
        details = ", ".join(f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in changed[:6])
        raise ValueError(f"{output} holds an interrupted run of another configuration "
                         f"({details}); resuming it with these settings would mix two runs. "
                         f"Rerun with the same settings to resume. {fix}")
    return "resume"
