"""Image-folder classification datasets and representative images for quantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_efficient.data.classification import image_folder_dataset
from keras_efficient.data.representative import representative_images
from keras_efficient.data.transforms import load_image, resize_and_pad


def test_image_folder_dataset(image_folder) -> None:
    counts = {}
    for subset in ("training", "validation"):
        dataset, names = image_folder_dataset(image_folder.root, (24, 24), batch_size=4,
                                              validation_split=0.25, subset=subset, seed=7)
        assert names == ["circle", "square", "triangle"]
        labels = []
        for images, batch_labels in dataset:
            assert images.dtype == "float32" and images.shape[1:] == (24, 24, 3)
            assert float(np.min(images)) >= 0.0 and float(np.max(images)) <= 255.0
            assert float(np.max(images)) > 100.0  # [0, 255], not [0, 1]
            labels.extend(batch_labels.numpy().tolist())
        counts[subset] = len(labels)
        assert set(labels) <= {0, 1, 2}
    assert counts == {"training": 9, "validation": 3}


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        image_folder_dataset(tmp_path / "nothing", (8, 8))
    with pytest.raises(ValueError, match="no class sub-folders"):
        image_folder_dataset(tmp_path, (8, 8))
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="together"):
        image_folder_dataset(tmp_path, (8, 8), validation_split=0.2)


def test_representative_from_synthetic_json_and_folder(synthetic, image_folder,
                                                       tmp_path: Path) -> None:
    images = list(representative_images(synthetic, (48, 64), count=4, seed=1))
    assert len(images) == 4
    assert all(i.shape == (1, 48, 64, 3) and i.dtype == np.float32 for i in images)
    from_json = list(representative_images(synthetic.train_json, (48, 64), count=4, seed=1))
    assert all(np.array_equal(a, b) for a, b in zip(images, from_json, strict=True))
    # Exactly the inference preprocessing.
    paths = sorted(synthetic.train_images_dir.glob("*.png"))
    expected = [resize_and_pad(load_image(p), (48, 64))[0] for p in paths]
    assert any(np.array_equal(images[0][0], e) for e in expected)

    nested = tmp_path / "nested" / "deeper"
    nested.mkdir(parents=True)
    Image.new("L", (30, 20), 128).save(nested / "gray.PNG")
    assert [i.shape for i in representative_images(tmp_path / "nested", (16, 16))] == [
        (1, 16, 16, 3)]
    folder = list(representative_images(image_folder.root, (16, 16), count=500))
    assert len(folder) == 12  # every image once when fewer than count
    other_seed = list(representative_images(image_folder.root, (16, 16), count=3, seed=9))
    assert not all(np.array_equal(a, b) for a, b in zip(folder[:3], other_seed, strict=True))


def test_representative_empty_source(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(ValueError, match="No images found"):
        representative_images(tmp_path / "empty", (16, 16))
    with pytest.raises(ValueError, match="neither a COCO json nor a folder"):
        representative_images(tmp_path / "missing", (16, 16))
