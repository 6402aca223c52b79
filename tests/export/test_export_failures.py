"""Export failures lose nothing and say what went wrong: killed runs, bad calibration images,
a full disk, and the output folder's permissions."""

import errno
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from keras_efficient import files
from keras_efficient.export import tflite
from keras_efficient.export.pipeline import ExportJob, export_model
from keras_efficient.export.recipes import Recipe
from keras_efficient.export.tflite import check_images, check_representative, convert
from keras_efficient.models.efficientnet import EfficientNet
from tests.harness import TINY_BACKBONE as TINY

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (1, 32, 32, 3)
FLOAT32 = Recipe(name="t", formats=("float32",), latency_runs=1, metadata=False)


@pytest.fixture(scope="module")
def classifier():
    return EfficientNet(TINY, weights=None, classes=3, input_shape=SHAPE[1:])


def samples(count=2, high=255.0):
    return [np.random.default_rng(i).uniform(0, high, SHAPE).astype("float32")
            for i in range(count)]


def quiet(*_):
    pass


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def our_files(folder):
    """What is in ``folder``, less the few-KB sources TF's autograph keeps there until exit."""
    return sorted(p.name for p in folder.iterdir()
                  if not p.name.startswith("__autograph_generated_file"))


@pytest.fixture
def system_temp(tmp_path, monkeypatch):
    """The system temp folder, pointed at an empty test folder."""
    folder = tmp_path / "system-temp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# --------------------------------------------------------------------------- killed runs


def test_stale_staging_of_dead_runs_is_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / f".out.staging-{dead_pid()}-0123abcd"
    (dead / "tinylite_saved_model").mkdir(parents=True)
    (dead / "tinylite_float32.tflite").write_bytes(b"x" * 1000)
    live = tmp_path / f".out.staging-{os.getppid()}-0123abcd"  # our parent is alive
    live.mkdir()
    ours_earlier = tmp_path / f".out.staging-{os.getpid()}-aaaabbbb"  # pid reused by us
    ours_earlier.mkdir()
    os.utime(ours_earlier, (0, 0))
    part = tmp_path / f".{dead_pid()}.out.part"
    part.write_bytes(b"half")
    unrelated = [tmp_path / ".out.backup", tmp_path / ".other.staging-1-0123abcd"]
    for path in unrelated:
        path.mkdir()

    staging = files.make_staging_folder(out)

    assert staging.name.startswith(f".out.staging-{os.getpid()}-")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {staging.name, live.name, *(p.name for p in unrelated)}


def test_killed_export_is_cleaned_by_the_rerun_and_temp_work_stays_beside_the_output(
        classifier, tmp_path, system_temp, monkeypatch):
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from keras_efficient.export import tflite
        from keras_efficient.export.pipeline import export_model
        from keras_efficient.export.recipes import Recipe
        from keras_efficient.models.efficientnet import EfficientNet
        from tests.export.test_export_failures import FLOAT32, SHAPE, samples
        from tests.harness import TINY_BACKBONE as TINY

        def hang(folder, *args, **kwargs):
            print("converting", folder, flush=True)
            time.sleep(600)

        tflite.convert_saved_model = hang
        model = EfficientNet(TINY, weights=None, classes=3, input_shape=SHAPE[1:])
        export_model(model, FLOAT32, {str(out)!r}, representative=samples(), log=print)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             env={**os.environ, "TMPDIR": str(system_temp)})
    try:
        deadline = time.monotonic() + 240
        line = ""
        while not line.startswith("converting") and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line and child.poll() is not None:
                break
        assert line.startswith("converting"), "the child never reached the conversion"
        work = Path(line.split(maxsplit=1)[1].strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    [stale] = [p for p in tmp_path.iterdir() if p.name.startswith(".out.staging-")]
    assert stale.name.startswith(f".out.staging-{child.pid}-")
    assert work.parent == stale  # the temporary SavedModel is inside the staging folder
    assert our_files(system_temp) == []

    seen = []
    original = tflite.convert_saved_model

    def spy(folder, *args, **kwargs):
        seen.append((Path(folder), our_files(system_temp)))
        return original(folder, *args, **kwargs)

    monkeypatch.setattr(tflite, "convert_saved_model", spy)
    export_model(classifier, FLOAT32, out, representative=samples(), log=quiet)

    [(folder, temp_during_run)] = seen
    assert folder.parent.name.startswith(f".out.staging-{os.getpid()}-")
    assert temp_during_run == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "system-temp"]
    assert our_files(system_temp) == []
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.txt", "manifest.json", "tinylite_float32.tflite"]


def test_export_tflite_keeps_its_temporary_saved_model_beside_the_file(classifier, tmp_path,
                                                                       system_temp, monkeypatch):
    seen = []
    original = tflite.convert_saved_model

    def spy(folder, *args, **kwargs):
        seen.append((Path(folder).parent.parent, our_files(system_temp)))
        return original(folder, *args, **kwargs)

    monkeypatch.setattr(tflite, "convert_saved_model", spy)
    tflite.export_tflite(classifier, tmp_path / "m.tflite", "float32")
    assert seen == [(tmp_path, [])]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "system-temp"]


# --------------------------------------------------------------------------- calibration images


def test_channels_first_images_are_refused(classifier):
    nchw = [np.transpose(image, (0, 3, 1, 2)) for image in samples()]
    with pytest.raises(ValueError, match=r"image 0 has shape \(1, 3, 32, 32\): channels first; "
                                         r"pass \[1, H, W, 3\].*np.transpose"):
        convert(classifier, "int8", representative=nchw)
    with pytest.raises(ValueError, match=r"\(3, 32, 32\): channels first"):
        check_images([nchw[0][0]], SHAPE)
    with pytest.raises(ValueError, match=r"image 1 has shape \(1, 1, 32, 32, 3\); the model "
                                         r"takes \(1, 32, 32, 3\)"):
        check_images([samples()[0], samples()[0][None]], SHAPE)


def test_images_scaled_to_unit_range_are_refused(classifier, tmp_path):
    scaled = [image / 255.0 for image in samples(3)]
    with pytest.raises(ValueError, match=r"max pixel [0-9.]+ over all 3 images: images look "
                                         r"scaled to \[0, 1\].*pass raw \[0, 255\] pixels"):
        convert(classifier, "int8", representative=scaled)
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
        export_model(classifier, FLOAT32, tmp_path / "out", representative=scaled, log=quiet)
    with pytest.raises(ValueError, match="mean-subtracted"):
        check_images([image - 127.5 for image in samples()], SHAPE)
    with pytest.raises(ValueError, match="more than 8 bits"):
        check_images([image * 256 for image in samples()], SHAPE)
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_images([np.full(SHAPE, np.nan, "float32")], SHAPE)
    assert list(tmp_path.iterdir()) == []


def test_a_dark_image_in_a_real_set_is_accepted():
    dark = np.zeros(SHAPE, "float32")  # max 0 alone, but the set as a whole is [0, 255]
    checked = check_representative([dark, *samples(), samples()[0][0]], "int8", SHAPE)
    assert checked is not None and len(checked) == 4
    assert all(image.shape == SHAPE and image.dtype == np.float32 for image in checked)
    assert check_images([np.full(SHAPE, 1.5, "float32")], SHAPE)[0].max() == 1.5


# --------------------------------------------------------------------------- disk full


def _disk_full_on(suffix, monkeypatch):
    """Writes through keras_efficient.files to ``*<suffix>.part`` fail half way with ENOSPC."""

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, payload):
            self.handle.write(payload[: len(payload) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_open(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)  # noqa: SIM115 (closed by the caller)
        return Full(handle) if str(path).endswith(f"{suffix}.part") else handle

    monkeypatch.setattr(files, "open", full_open, raising=False)


def test_disk_full_names_the_write_step_in_the_cli_and_leaves_nothing(
        classifier, tmp_path, monkeypatch, capsys):
    from keras_efficient import cli

    _disk_full_on(".tflite", monkeypatch)
    monkeypatch.setattr(cli, "_export_job", lambda args, count: ExportJob(
        classifier, samples(), weights_origin="random"))
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"formats": ["float32"], "latency_runs": 1, "metadata": false}')
    out = tmp_path / "exports" / "out"
    out.parent.mkdir()

    assert cli.main(["export", "--model", "x", "--recipe", str(recipe),
                     "--output", str(out)]) == 2

    err = capsys.readouterr().err
    assert err.startswith("keras-efficient: error: Export step 'float32: write' failed for "
                          "tinylite: [Errno 28] No space left on device"), err
    assert f"free space in {out.parent}" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []


def test_disk_full_on_the_manifest_names_it(classifier, tmp_path, monkeypatch):
    _disk_full_on("manifest.json", monkeypatch)
    with pytest.raises(tflite.ExportError, match=r"step 'manifest.json' failed.*No space left"):
        export_model(classifier, FLOAT32, tmp_path / "out", representative=samples(),
                     log=quiet)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- permissions


def test_output_folders_follow_the_umask(classifier, tmp_path):
    from keras_efficient.export.saved_model import export_classifier_saved_model

    previous = os.umask(0o027)
    try:
        export_model(classifier, FLOAT32, tmp_path / "out", representative=samples(1),
                     log=quiet)
        export_classifier_saved_model(classifier, tmp_path / "sm")
    finally:
        os.umask(previous)
    for folder in (tmp_path / "out", tmp_path / "sm"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750, folder
    assert stat.S_IMODE((tmp_path / "out" / "tinylite_float32.tflite").stat().st_mode) == 0o640
