"""Inference model, predict on images of any size, drawing."""

import keras
import numpy as np
import pytest

import keras_efficient as ke
from keras_efficient.configs.efficientdet import get_efficientdet_spec
from keras_efficient.data.transforms import load_image, resize_and_pad, stretch
from keras_efficient.data.visualize import draw_detections
from keras_efficient.detection.anchors import generate_anchors
from keras_efficient.detection.box_coding import encode_boxes
from keras_efficient.detection.inference import inference_model
from keras_efficient.evaluation.predict import inference_resize, predict

SPEC = get_efficientdet_spec("lite0").with_(input_size=128, fpn_filters=16, fpn_cells=1,
                                            head_repeats=1)


class PlantedOutputs(keras.layers.Layer):
    """Raw-detector outputs fixed to given arrays, whatever the image."""

    def __init__(self, logits: np.ndarray, codes: np.ndarray) -> None:
        super().__init__()
        self.logits, self.codes = logits, codes

    def call(self, image):
        batch = keras.ops.shape(image)[0]
        return {
            "class_logits": keras.ops.broadcast_to(self.logits, (batch, *self.logits.shape)),
            "box_regression": keras.ops.broadcast_to(self.codes, (batch, *self.codes.shape)),
        }


def planted_raw_model(box_in_input: np.ndarray, num_classes: int = 3,
                      resize: str = "letterbox") -> keras.Model:
    """A raw detector whose outputs encode one known box of class 2 at its best anchor."""
    anchors = generate_anchors(SPEC.anchor_spec())
    codes = encode_boxes(np.broadcast_to(box_in_input, anchors.shape), anchors)
    overlap = np.minimum(anchors[:, 2:], box_in_input[2:]) - np.maximum(anchors[:, :2],
                                                                         box_in_input[:2])
    best = int(np.argmax(np.prod(np.clip(overlap, 0, None), axis=1)))
    logits = np.full((len(anchors), num_classes), -10.0, "float32")
    logits[best, 2] = 5.0
    image = keras.Input((128, 128, 3))
    model = keras.Model(image, PlantedOutputs(logits, codes.astype("float32"))(image),
                        name="planted")
    # What inference_model reads from an EfficientDetector.
    model.image_size = (128, 128)
    model.anchor_spec = SPEC.anchor_spec
    model.resize = resize
    return model


def test_boxes_come_back_in_original_pixels(tmp_path):
    original = np.zeros((200, 400, 3), "float32")  # scale 128/400 = 0.32, padded bottom
    box_original = np.array([40.0, 100.0, 160.0, 300.0], "float32")
    detector = planted_raw_model(box_original * 0.32)
    model = inference_model(detector, score_threshold=0.5)
    [result] = predict(model, [original], score_threshold=0.5)
    assert result["classes"].tolist() == [2]
    np.testing.assert_allclose(result["boxes"][0], box_original, atol=0.05)
    assert result["scores"][0] == pytest.approx(1 / (1 + np.exp(-5.0)), rel=1e-5)


def test_stretched_boxes_come_back_per_axis():
    """A detector trained with ``resize="stretch"`` gets the whole image resized to its input
    (the model sees a 200x400 image squeezed to 128x128) and its boxes are scaled back per axis."""
    original = np.zeros((200, 400, 3), "float32")
    original[:, :200] = 255.0  # a left half that letterboxing and stretching place differently
    box_original = np.array([40.0, 100.0, 160.0, 300.0], "float32")
    detector = planted_raw_model(box_original * [0.64, 0.32, 0.64, 0.32], resize="stretch")
    model = inference_model(detector, score_threshold=0.5)
    assert inference_resize(model) == "stretch"
    [result] = predict(model, [original], score_threshold=0.5)
    np.testing.assert_allclose(result["boxes"][0], box_original, atol=0.05)
    # Fed stretched: predict gives what the inference model gives on the stretched image.
    from keras_efficient.models.efficientdet import EfficientDet
    from tests.harness import tiny_spec

    keras.utils.set_random_seed(0)
    real = inference_model(EfficientDet(tiny_spec(), num_classes=3, resize="stretch"),
                           max_detections=5, score_threshold=0.0)
    image = np.random.default_rng(0).uniform(0, 255, (40, 100, 3)).astype("float32")
    [found] = predict(real, [image])
    want = real.predict([stretch(image, (64, 64))[None], np.asarray([[1.0, 40, 100]])],
                        verbose=0)
    np.testing.assert_allclose(found["boxes"], want["boxes"][0], atol=1e-4)
    np.testing.assert_allclose(found["scores"], want["scores"][0], atol=1e-6)


def test_real_detector_static_shapes_and_files(tmp_path):
    detector = ke.EfficientDet(SPEC, num_classes=4)
    model = inference_model(detector, max_detections=7, class_aware=False)
    assert tuple(model.output["boxes"].shape) == (None, 7, 4)
    picture = tmp_path / "p.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 60), "uint8")).save(picture)
    results = predict(model, [picture, np.zeros((300, 100, 3))], batch_size=2)
    assert len(results) == 2
    for result in results:
        assert result["boxes"].shape[1:] == (4,)
        assert len(result["boxes"]) <= 7
    assert (results[0]["boxes"][:, [0, 2]] <= 90).all()
    assert (results[0]["boxes"][:, [1, 3]] <= 60).all()


def test_resize_and_pad_and_load_image():
    image = np.arange(20 * 10 * 3, dtype="float32").reshape(20, 10, 3)
    padded, scale = resize_and_pad(image, (40, 40))
    assert scale == 2.0 and padded.shape == (40, 40, 3)
    assert (padded[:, 20:] == 0).all() and padded[:, :20].any()
    assert load_image(np.zeros((5, 6))).shape == (5, 6, 3)
    with pytest.raises(ValueError, match="image array"):
        load_image(np.zeros((5, 6, 2)))


def test_draw_detections_writes_png(tmp_path):
    path = tmp_path / "out.png"
    drawn = draw_detections(np.zeros((50, 50, 3)), np.array([[10, 10, 40, 40]]), [1], [0.9],
                            labels=["a", "b"], path=path)
    assert path.exists() and drawn.shape == (50, 50, 3)
    assert drawn[10, 25].any()  # the box's top edge is coloured
    assert not drawn[25, 25].any()


def test_no_images_give_an_empty_list():
    detector = planted_raw_model(np.array([10.0, 10.0, 60.0, 60.0], "float32"))
    model = inference_model(detector, score_threshold=0.5)
    assert predict(model, []) == []
    assert predict(model, iter(()), batch_size=4) == []
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        predict(model, [np.zeros((8, 8, 3))], batch_size=0)


def test_evaluate_classifier_skips_empty_batches():
    from keras_efficient.evaluation.classification import evaluate_classifier

    image = keras.Input((4,))
    model = keras.Model(image, keras.layers.Dense(3)(image))
    empty = (np.zeros((0, 4), "float32"), np.zeros((0,), "int64"))
    full = (np.zeros((2, 4), "float32"), np.array([0, 1]))
    result = evaluate_classifier(lambda x: model.predict(x, verbose=0), [empty, full, empty],
                                 ks=(1,))
    assert result["num_examples"] == 2
    with pytest.raises(ValueError, match="empty dataset"):
        evaluate_classifier(model, [empty])
