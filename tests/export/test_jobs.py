"""Export jobs: paths recorded by training resolve from any working directory; a fresh
detector's synthetic images do not outlive the job."""

import gc
from pathlib import Path

import pytest

from keras_efficient.export.jobs import _resolve, fresh_detector_job, trained_detector_job


def test_relative_training_paths_resolve_from_another_directory(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.json").write_text("{}")
    train_dir = tmp_path / "runs" / "demo" / "train"
    train_dir.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert _resolve("data/train.json", train_dir) == tmp_path / "data" / "train.json"
    with pytest.raises(ValueError, match="does not exist here or under any parent"):
        _resolve("data/missing.json", train_dir)


def test_untrained_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"No trained detector in .*train_config\.json"):
        trained_detector_job(tmp_path)


def test_fresh_detector_job_removes_its_synthetic_images():
    job = fresh_detector_job(count=2)
    folder = next(p for p in Path(job.held_out.annotations).parents
                  if p.name.startswith("keras_efficient_export_"))
    assert folder.is_dir()
    assert len(job.representative) == 2 and job.is_detector
    del job
    gc.collect()
    assert not folder.exists()
