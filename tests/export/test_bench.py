"""keras-efficient bench: every format side by side, a table and a PNG plot."""

import numpy as np
from PIL import Image

from keras_efficient.export.bench import benchmark, format_table, plot
from keras_efficient.export.pipeline import ExportJob
from keras_efficient.models.efficientnet import EfficientNet
from tests.harness import TINY_BACKBONE as TINY


def test_benchmark_rows_table_and_plot(tmp_path):
    model = EfficientNet(TINY, weights=None, classes=4, input_shape=(48, 48, 3))
    images = [np.random.default_rng(i).uniform(0, 255, (1, 48, 48, 3)).astype("float32")
              for i in range(4)]
    rows = benchmark(ExportJob(model, images, weights_origin="random"), tmp_path / "b",
                     runs=2, formats=("float32", "int8"), log=lambda *_: None)
    assert [row["format"] for row in rows] == ["keras", "tflite-float32", "tflite-int8"]
    table = format_table(rows).splitlines()
    assert table[0].split()[:2] == ["format", "MB"]
    assert table[2].split()[0] == "tflite-float32" and "1.00x" in table[2]
    assert "top-1 agree" in table[3]
    png = plot(rows, tmp_path / "bench.png", "tiny")
    with Image.open(png) as image:
        assert image.size[0] > 400 and image.format == "PNG"
    assert (tmp_path / "b" / "manifest.json").exists()


def test_compiled_model_timed_beside_the_interpreter(tmp_path):
    model = EfficientNet(TINY, weights=None, classes=4, input_shape=(48, 48, 3))
    images = [np.random.default_rng(i).uniform(0, 255, (1, 48, 48, 3)).astype("float32")
              for i in range(4)]
    rows = benchmark(ExportJob(model, images, weights_origin="random"), tmp_path / "b",
                     runs=2, formats=("int8",), log=lambda *_: None, compiled_model=True)
    runtimes = rows[1]["runtimes"]
    assert set(runtimes) == {"interpreter", "compiled_model"}
    assert all(isinstance(value, float) and value > 0 for value in runtimes.values())
    assert "compiled" in format_table(rows).splitlines()[0]
