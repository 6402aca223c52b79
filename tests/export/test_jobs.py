"""Export jobs: paths recorded by training resolve from any working directory."""

import pytest

from keras_efficient.export.jobs import _resolve, trained_detector_job


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
