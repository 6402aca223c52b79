"""The single training entry point dispatches on the config type."""

import pytest

from keras_efficient.training import api


def test_train_dispatches_on_the_config_type(monkeypatch):
    calls = []

    def recorder(kind):
        return lambda config, strategy=None, overwrite=False: calls.append((kind, overwrite))

    monkeypatch.setattr(api, "train_detector", recorder("det"))
    monkeypatch.setattr(api, "train_classifier", recorder("cls"))
    api.train(api.DetectorTrainConfig(train_json="a", train_images="b", output_dir="c"))
    api.train(api.ClassifierTrainConfig(train_images="b", output_dir="c"), overwrite=True)
    assert calls == [("det", False), ("cls", True)]
    with pytest.raises(TypeError, match="DetectorTrainConfig or ClassifierTrainConfig"):
        api.train({"train_json": "a"})
