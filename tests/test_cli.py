"""The keras-efficient command line."""

import numpy as np
import pytest
from PIL import Image

from keras_efficient.cli import main


def test_summary(capsys):
    assert main(["summary", "lite0"]) == 0
    out = capsys.readouterr().out
    assert "efficientnetlite0: 4,694,024 parameters, 0.385 B MACs at (224, 224)" in out


def test_demo_prints_top5(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "weights: random (weights=None)" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("1.", "5."))]) == 2


def test_classify_image_file_with_weights_file(tmp_path, capsys):
    import keras_efficient as ke

    model = ke.EfficientNetLite0(weights=None, classes=3, classifier_activation="softmax")
    weights = tmp_path / "lite0.weights.h5"
    model.save_weights(weights)
    picture = tmp_path / "p.png"
    Image.fromarray(np.full((50, 80, 4), 200, "uint8"), "RGBA").save(picture)
    with pytest.raises(ValueError, match="weight"):
        # classes differ from the default builder: a clear error, not a silent partial load
        main_raise(["classify", str(picture), "--model", "lite0", "--weights", str(weights)])
    assert main(["classify", str(picture), "--model", "lite0", "--weights", "none"]) == 0
    assert "top-5 for" in capsys.readouterr().out


def main_raise(argv):
    from keras_efficient.cli import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args)


def test_bad_weights_is_a_clear_error(capsys):
    assert main(["classify", "--weights", "missing.h5"]) == 2
    assert "weights` argument should be None" in capsys.readouterr().err


@pytest.mark.slow
def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "efficientnetb7" in out and "efficientnetlite4" in out
    assert "66,658,687" in out
