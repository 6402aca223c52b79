"""train_classifier on a synthetic image folder."""

import json

from keras_efficient.data.synthetic import make_classification_dataset
from keras_efficient.models.efficientnet import EfficientNet
from keras_efficient.training import classifier
from keras_efficient.training.classifier import ClassifierTrainConfig, train_classifier
from tests.harness import TINY_BACKBONE


def test_train_classifier_writes_weights_labels_and_metrics(tmp_path, monkeypatch):
    # The Lite0 row thinned to the tiny backbone (a quarter of the width and depth): tracing
    # the training and evaluation steps of the full Lite0 costs tens of CPU-seconds, and
    # nothing asserted here depends on the backbone's size (the builders are tested in
    # tests/models).
    built = []

    def tiny_efficientnet(scaling, **kwargs):
        built.append(scaling)
        return EfficientNet(TINY_BACKBONE, **kwargs)

    monkeypatch.setattr(classifier, "EfficientNet", tiny_efficientnet)
    folder = make_classification_dataset(tmp_path / "folder", per_class=6, image_size=(32, 32))
    result = train_classifier(ClassifierTrainConfig(
        train_images=str(folder.root), output_dir=str(tmp_path / "run"), model="lite0",
        image_size=32, batch_size=4, epochs=2, validation_split=0.25, verbose=0))
    assert built == ["lite0"]
    assert result["class_names"] == list(folder.class_names)
    assert result["model"].output_shape == (None, len(folder.class_names))
    assert (tmp_path / "run" / "classifier.weights.h5").exists()
    assert (tmp_path / "run" / "labels.txt").read_text().split() == list(folder.class_names)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= 1.0 and metrics["num_examples"] > 0
    assert len(result["history"]["loss"]) == 2
