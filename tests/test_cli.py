"""The keras-efficient command line."""

import numpy as np
import pytest
from PIL import Image

from keras_efficient.cli import main


def test_summary(capsys):
    assert main(["summary", "lite0"]) == 0
    out = capsys.readouterr().out
    assert "efficientnetlite0: 4,694,024 parameters, 0.385 B MACs at (224, 224)" in out


def test_summary_of_a_detector(capsys):
    assert main(["summary", "efficientdet-lite0"]) == 0
    out = capsys.readouterr().out
    assert "efficientdet-lite0: 3,290,606 parameters, 1.462 B MACs at (320, 320)" in out
    assert main(["summary", "efficientdet-lite0", "--no-top"]) == 2


def test_classify_generated_image_prints_top5(capsys):
    assert main(["classify", "--weights", "none"]) == 0
    out = capsys.readouterr().out
    assert "weights: random (weights=None)" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("1.", "5."))]) == 2


def test_eval_then_export_a_training_run_from_the_command_line(tiny_data, tiny_run, tmp_path,
                                                               capsys):
    """``eval`` and ``export --train-dir`` on the shared finished run of tests/conftest.py (the
    ``train`` command itself runs in tests/training/test_run_safety.py and, as separate
    processes, in tests/training/test_multi_worker.py)."""
    import json

    out = tiny_run.weights_path.parent
    assert main(["eval", "--train-dir", str(out), "--gt-json", str(tiny_data.val_json),
                 "--images", str(tiny_data.val_images_dir),
                 "--output", str(tmp_path / "m.json")]) == 0
    table = capsys.readouterr().out
    assert "AP50" in table and "triangle" in table
    assert json.loads((tmp_path / "m.json").read_text())["num_images"] == 4
    exported = tmp_path / "exported"
    recipe = tmp_path / "coral.json"
    recipe.write_text(json.dumps({"formats": ["int8"], "input_type": "uint8", "edgetpu": True,
                                  "representative_count": 4, "latency_runs": 2,
                                  "score_threshold": 0.01}))
    assert main(["export", "--model", "demo", "--train-dir", str(out), "--recipe", str(recipe),
                 "--output", str(exported)]) == 0
    manifest = json.loads((exported / "manifest.json").read_text())
    assert [a["format"] for a in manifest["artifacts"]] == ["tflite-int8"]
    accuracy = manifest["artifacts"][0]["accuracy"]
    assert set(accuracy["keras"]) == {"AP", "AP50", "AP75"}  # measured on the val split
    printed = capsys.readouterr().out
    assert "exporting the demo's trained detector" in printed
    assert "Number of operations that will run on Edge TPU" in printed
    assert "tflite-int8" in printed


def test_train_without_data_is_a_clear_error(capsys):
    assert main(["train", "--epochs", "1"]) == 2
    assert "train needs --train-json, --train-images, --output-dir" in capsys.readouterr().err


def test_train_resize_flag_reaches_the_config(tmp_path, monkeypatch):
    """``train --resize stretch`` (and ``demo --resize``) set the mode the detector records."""
    from keras_efficient import demo as demo_module
    from keras_efficient.training import detector as trainer

    seen = {}

    def fake_train(config, **kwargs):
        seen["train"] = config
        raise SystemExit(0)

    monkeypatch.setattr(trainer, "train_detector", fake_train)
    with pytest.raises(SystemExit):
        main(["train", "--train-json", "a.json", "--train-images", "x", "--output-dir",
              str(tmp_path), "--resize", "stretch", "--strategy", "default"])
    assert seen["train"].resize == "stretch"
    monkeypatch.setattr(demo_module, "run_demo", lambda config: seen.update(demo=config))
    assert main(["demo", "--resize", "stretch", "--output", str(tmp_path / "d")]) == 0
    assert seen["demo"].resize == "stretch"
    with pytest.raises(SystemExit, match="2"):  # argparse: invalid choice
        main(["train", "--train-json", "a.json", "--train-images", "x", "--output-dir",
              str(tmp_path), "--resize", "crop"])


def test_demo_runs_end_to_end_on_a_tiny_configuration(tmp_path):
    import json

    from keras_efficient.demo import DemoConfig, run_demo
    from tests.harness import TINY_OVERRIDES

    overrides = {k: v for k, v in TINY_OVERRIDES.items() if k != "input_size"}
    lines: list[str] = []
    metrics = run_demo(DemoConfig(output_dir=str(tmp_path / "demo"), image_size=64,
                                  num_train=8, num_val=4, epochs=1, steps_per_epoch=2,
                                  batch_size=4, num_drawn=2, spec_overrides=overrides,
                                  calibration_images=4),
                       log=lines.append)
    assert 0.0 <= metrics["AP50"] <= 1.0
    assert len(list((tmp_path / "demo" / "detections").glob("*.png"))) == 2
    assert (tmp_path / "demo" / "metrics.json").exists()
    text = "\n".join(lines)
    assert "4/5" in text and "AP50" in text and "5/5 int8 TFLite export" in text
    assert "TFLite int8" in text and "Number of operations that will run on Edge TPU" in text
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert set(summary["int8"]["int8"]) == {"AP", "AP50", "AP75"}
    assert (tmp_path / "demo" / "export" / "manifest.json").exists()


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


def test_bench_command_prints_the_table_and_writes_the_plot(tmp_path, capsys, monkeypatch):
    from keras_efficient import cli
    from keras_efficient.export import bench
    from keras_efficient.export.pipeline import ExportJob

    rows = [{"format": "keras", "bytes": 4_000_000, "latency_ms": {"1_threads": None,
                                                                   "2_threads": 9.0},
             "accuracy": {}},
            {"format": "tflite-float32", "bytes": 4_000_000,
             "latency_ms": {"1_threads": 12.0, "2_threads": 8.0},
             "accuracy": {"max_abs_delta": 1e-6}},
            {"format": "tflite-int8", "bytes": 1_000_000,
             "latency_ms": {"1_threads": 6.0, "2_threads": 4.0},
             "accuracy": {"max_abs_delta": 0.02, "top1_agreement": 1.0}}]
    seen = {}

    def fake_job(args, count):
        seen["count"] = count
        return ExportJob(model=type("M", (), {"name": "tiny"})(), representative=[],
                         weights_origin="random")

    def fake_benchmark(job, output, runs, compiled_model=False):
        seen["runs"], seen["compiled_model"] = runs, compiled_model
        output.mkdir(parents=True)
        return rows

    monkeypatch.setattr(cli, "_export_job", fake_job)
    monkeypatch.setattr(bench, "benchmark", fake_benchmark)
    assert main(["bench", "--output", str(tmp_path), "--runs", "3", "--images", "5"]) == 0
    out = capsys.readouterr().out
    assert seen == {"count": 5, "runs": 3, "compiled_model": False}
    assert "tflite-int8" in out and "0.50x" in out and "top-1 agree 100%" in out
    assert (tmp_path / "formats" / "bench.png").stat().st_size > 1000


def test_classifier_training_refuses_on_error_skip(tmp_path, capsys):
    from keras_efficient.cli import main

    out = tmp_path / "out"
    assert main(["train", "--task", "classify", "--train-images", str(tmp_path),
                 "--output-dir", str(out), "--on-error", "skip"]) == 2
    assert "--on-error skip applies to detector training" in capsys.readouterr().err
    assert not out.exists()
