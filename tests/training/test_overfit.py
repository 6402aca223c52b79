"""Overfit check: a detector trained on a few images must find them again (slow tier)."""

import pytest

from keras_efficient.data.synthetic import make_detection_dataset
from keras_efficient.evaluation.detector import evaluate_detector
from keras_efficient.training.detector import DetectorTrainConfig, train_detector


@pytest.mark.slow
def test_detector_overfits_four_images(tmp_path):
    data = make_detection_dataset(tmp_path / "data", num_train=4, num_val=0,
                                  image_size=(128, 128), max_objects=2, seed=5)
    result = train_detector(DetectorTrainConfig(
        train_json=str(data.train_json), train_images=str(data.train_images_dir),
        output_dir=str(tmp_path / "run"), spec_overrides={"input_size": 128},
        # 600 steps: BatchNormalization's moving statistics (momentum 0.99, the reference's)
        # keep 0.99^steps of their initial values; after 300 steps that 5% still made the
        # inference-mode network output the same boxes for every image.
        batch_size=4, epochs=60, steps_per_epoch=10, learning_rate=0.003, optimizer="adamw",
        weight_decay=0.0, ema_decay=None, flip=False, scale_range=(1.0, 1.0), verbose=0))
    train = data.coco("train")
    metrics = evaluate_detector(result.detector, data.train_json,
                                data.train_images_dir, label_map=train.category_ids,
                                progress=False)
    assert metrics["AP50"] >= 0.9, metrics
