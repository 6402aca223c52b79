"""One image decoder for every path: training (tf.data), prediction / evaluation / classify /
calibration (``load_image``), the image-folder datasets; 16-bit, grayscale, RGBA, palette, CMYK
and EXIF-rotated files; bad files named; prediction decodes one batch at a time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_efficient.data.classification import image_folder_dataset
from keras_efficient.data.coco import CocoDataset
from keras_efficient.data.decode import ImageDecodeError, read_image
from keras_efficient.data.pipeline import decode_image
from keras_efficient.data.representative import representative_images
from keras_efficient.data.transforms import load_image

H, W = 12, 20


def gradient16() -> np.ndarray:
    return (np.arange(H * W, dtype="uint32").reshape(H, W) * 65535 // (H * W - 1)).astype(
        "uint16")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("kinds")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (H, W, 3), dtype="uint8")
    paths = {name: folder / name for name in (
        "sixteen.png", "gray.png", "rgba.png", "palette.png", "cmyk.jpg", "rotated.jpg")}
    Image.fromarray(gradient16()).save(paths["sixteen.png"])  # mode I;16
    Image.fromarray(rgb[..., 0], mode="L").save(paths["gray.png"])
    Image.fromarray(np.dstack([rgb, rng.integers(0, 255, (H, W, 1), dtype="uint8")]),
                    mode="RGBA").save(paths["rgba.png"])
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    palette.save(paths["palette.png"], transparency=0)
    Image.fromarray(rgb).convert("CMYK").save(paths["cmyk.jpg"], quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90° clockwise (a phone photo)
    Image.fromarray(rgb).save(paths["rotated.jpg"], quality=95, exif=exif)
    return paths


def test_sixteen_bit_png_is_scaled_not_white(files):
    with Image.open(files["sixteen.png"]) as opened:
        assert opened.mode.startswith("I;16")
    pixels = read_image(files["sixteen.png"])
    expected = (gradient16().astype("int64") * 255 + 32767) // 65535
    np.testing.assert_array_equal(pixels[..., 0], expected)
    assert pixels.min() == 0 and pixels.max() == 255 and (pixels < 255).mean() > 0.9


def test_exif_orientation_is_applied(files):
    pixels = read_image(files["rotated.jpg"])
    assert pixels.shape == (W, H, 3)  # displayed portrait
    with Image.open(files["rotated.jpg"]) as opened:
        stored = np.asarray(opened.convert("RGB"))
    np.testing.assert_array_equal(pixels, np.rot90(stored, k=-1))


@pytest.mark.parametrize("name", ["sixteen.png", "gray.png", "rgba.png", "palette.png",
                                  "cmyk.jpg", "rotated.jpg"])
def test_every_path_sees_the_same_pixels(files, name):
    reference = read_image(files[name])
    assert reference.dtype == np.uint8 and reference.shape[-1] == 3
    np.testing.assert_array_equal(load_image(files[name]), reference.astype("float32"))
    training = decode_image(tf.constant(str(files[name]))).numpy()
    np.testing.assert_array_equal(training, reference)
    [calibration] = representative_images([str(files[name])], reference.shape[:2], count=1)
    np.testing.assert_allclose(calibration[0], reference.astype("float32"), atol=1e-3)


def test_classification_folders_use_the_same_decoder(files, tmp_path):
    for index, name in enumerate(("sixteen.png", "cmyk.jpg")):
        target = tmp_path / f"class{index}"
        target.mkdir()
        (target / name).write_bytes(files[name].read_bytes())
    dataset, names = image_folder_dataset(tmp_path, (H, W), batch_size=2, shuffle=False)
    assert names == ["class0", "class1"]
    images, labels = next(iter(dataset))
    assert labels.numpy().tolist() == [0, 1]
    np.testing.assert_allclose(images[0].numpy(), read_image(files["sixteen.png"]), atol=0.5)
    np.testing.assert_allclose(images[1].numpy(), read_image(files["cmyk.jpg"]), atol=0.5)


def test_bad_files_are_named_in_every_path(files, tmp_path):
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(files["rotated.jpg"].read_bytes()[:200])
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg: cannot decode the image.*skip"):
        read_image(truncated)
    with pytest.raises(ValueError, match=r"cut\.jpg"):
        load_image(truncated)
    with pytest.raises(ValueError, match=r"cut\.jpg"):
        next(representative_images([str(truncated)], (8, 8), count=1))
    in_pipeline = tf.data.Dataset.from_tensor_slices([str(truncated)]).map(decode_image)
    with pytest.raises(tf.errors.OpError, match=r"cut\.jpg: cannot decode"):
        next(iter(in_pipeline))


def test_coco_size_check_uses_the_displayed_size_with_a_hint(files, tmp_path):
    def dataset(height, width):
        annotations = tmp_path / f"ann_{height}x{width}.json"
        annotations.write_text(json.dumps({
            "images": [{"id": 1, "file_name": "rotated.jpg", "height": height, "width": width}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                             "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "thing"}]}))
        return CocoDataset(annotations, files["rotated.jpg"].parent)

    assert len(dataset(W, H)) == 1  # the displayed (rotated) size, as COCO tools give it
    with pytest.raises(ValueError, match="EXIF orientation rotates it"):
        dataset(H, W)  # the stored size


def test_predict_decodes_one_batch_at_a_time(monkeypatch):
    import keras_efficient.evaluation.predict as predict_module

    events: list[str] = []

    def counting_load(source):
        events.append("load")
        return np.zeros((8, 8, 3), "float32")

    class Inference:
        input_shape = ((None, 8, 8, 3), (None, 3))

        def predict_on_batch(self, inputs):
            events.append("run")
            batch = len(inputs[0])
            return {"num_detections": np.zeros(batch, "int32"),
                    "scores": np.zeros((batch, 1)), "boxes": np.zeros((batch, 1, 4)),
                    "classes": np.zeros((batch, 1))}

    monkeypatch.setattr(predict_module, "load_image", counting_load)
    found = predict_module.predict(Inference(), (f"{i}.png" for i in range(5)), batch_size=2)
    assert len(found) == 5
    assert events == ["load", "load", "run", "load", "load", "run", "load", "run"]
