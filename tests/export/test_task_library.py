"""Real consumer, slow tier: the Android Task Library (tflite-support 0.4.4's ``ObjectDetector``
and ``ImageClassifier``) runs our int8 exports with their metadata and returns what LiteRT and
our own decoding return when fed the same way (the image stretched to the input size, raw uint8
bytes).

tflite-support 0.4.4 pins ``protobuf<4``, which TensorFlow 2.21 refuses, so it runs in a
virtualenv of its own, built once with ``python -m venv`` + ``pip install tflite-support==0.4.4``
(on Python 3.11 pip resolves protobuf 3.20.3 and numpy 2.x; the Task API runs with numpy 2) and
kept in pytest's cache directory under a key of the version, the Python version and the base
interpreter. ``task_library_runner.py`` runs there and prints JSON. Skipped, with the reason,
where the system library libusb-1.0 is missing (its pybind modules link it), or pip cannot reach
the package registry, or no wheel exists for this Python.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow_lite_support.metadata.metadata_schema_py_generated")

from PIL import Image

from keras_efficient.export.runtime import load_interpreter, run
from tests.harness import CONSUMER_CLASS_NAMES as CLASS_NAMES
from tests.harness import CONSUMER_LABELS as LABELS
from tests.harness import CONSUMER_SIZE as SIZE
from tests.harness import (
    assert_same_detections,
    consumer_classifier_export,
    consumer_detector_export,
    our_stretched_detections,
)

pytestmark = pytest.mark.slow

REQUIREMENT = "tflite-support==0.4.4"
VENV_TIMEOUT_S = 120
INSTALL_TIMEOUT_S = 600  # about 30 s with a reachable registry
RUN_TIMEOUT_S = 120  # one runner call: about 2 s
RUNNER = Path(__file__).with_name("task_library_runner.py")
# pip's words when it cannot connect (urllib3's and the resolver's), as opposed to a refusal.
NETWORK_ERRORS = ("NewConnectionError", "Failed to establish a new connection",
                  "Temporary failure in name resolution", "Name or service not known",
                  "Network is unreachable", "ConnectTimeoutError", "ReadTimeoutError",
                  "ProxyError", "SSLError", "Could not fetch URL")


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _pip_skip_reason(output: str) -> str | None:
    """Why ``pip install`` failed when it is the environment's doing (no registry, no wheel for
    this Python), or None when it is not."""
    network = next((line.strip() for line in output.splitlines()
                    if any(error in line for error in NETWORK_ERRORS)), None)
    if network is not None:
        return f"pip cannot reach the package registry to install {REQUIREMENT}: {network}"
    missing = re.search(r"No matching distribution found for (\S+)", output)
    if missing:
        return (f"no wheel of {missing.group(1)} (for {REQUIREMENT}) on the package registry "
                f"for Python {sys.version_info.major}.{sys.version_info.minor} on "
                f"{sysconfig.get_platform()}")
    return None


def _venv_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _imports_task_library(python: Path) -> bool:
    if not python.is_file():
        return False
    check = subprocess.run([str(python), "-I", "-c", "import tflite_support.task.vision"],
                           capture_output=True, timeout=RUN_TIMEOUT_S)
    return check.returncode == 0


def _checked(command: list[str], timeout: int, what: str) -> subprocess.CompletedProcess[str]:
    """``command``'s result, or a skip when it did not finish in ``timeout`` seconds."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{what} did not finish in {timeout} s (a slow or unreachable registry?)")


def _build(target: Path) -> None:
    """A virtualenv with the Task Library at ``target``, built beside it and moved into place
    (a concurrent session that got there first wins)."""
    staging = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        made = _checked([sys.executable, "-m", "venv", str(staging)], VENV_TIMEOUT_S,
                        "python -m venv")
        if made.returncode != 0:
            pytest.skip(f"python -m venv cannot make a virtualenv here: "
                        f"{_tail(made.stdout + made.stderr, 3)}")
        pip = [str(_venv_python(staging)), "-I", "-m", "pip", "install", "--no-input",
               "--disable-pip-version-check", "--timeout", "30", "--retries", "1", REQUIREMENT]
        installed = _checked(pip, INSTALL_TIMEOUT_S, f"pip install {REQUIREMENT}")
        output = installed.stdout + installed.stderr
        if installed.returncode != 0:
            reason = _pip_skip_reason(output)
            if reason is not None:
                pytest.skip(reason)
            pytest.fail(f"pip install {REQUIREMENT} failed:\n{_tail(output)}")
        if not _imports_task_library(_venv_python(staging)):
            pytest.fail(f"{REQUIREMENT} installed but tflite_support.task.vision does not import")
        shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:  # another session's virtualenv took the place: use it
            if not _imports_task_library(_venv_python(target)):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@pytest.fixture(scope="session")
def task_library(request, tmp_path_factory) -> Path:
    """The interpreter of a virtualenv where ``tflite_support.task.vision`` imports."""
    if ctypes.util.find_library("usb-1.0") is None:
        pytest.skip("the system library libusb-1.0 is not installed (the Task Library's pybind "
                    "modules link it; on Debian/Ubuntu: apt-get install libusb-1.0-0)")
    interpreter = hashlib.sha256(sys.base_prefix.encode()).hexdigest()[:10]
    key = (f"{REQUIREMENT.replace('==', '-')}-py{sys.version_info.major}"
           f"{sys.version_info.minor}-{interpreter}")
    cache = getattr(request.config, "cache", None)
    root = (Path(cache.mkdir("task-library")) if cache is not None
            else tmp_path_factory.mktemp("task-library"))
    target = root / key
    if not _imports_task_library(_venv_python(target)):
        _build(target)
    return _venv_python(target)


def run_task_library(python: Path, task: str, model: Path,
                     images: list[Path]) -> list[list[list]]:
    """``task_library_runner.py``'s JSON: one list of rows per image."""
    command = [str(python), "-I", str(RUNNER), task, str(model), *map(str, images)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, f"the Task Library runner failed:\n{_tail(result.stderr)}"
    return json.loads(result.stdout)


def sample_images() -> list[np.ndarray]:
    """A square image at the input size, a 128×64 one and a 64×192 one (stretched to 64×64).
    The non-square ones are constant along the resized axis, and their stretches are ones
    where libyuv's bilinear filter (the Task Library's) gives the same bytes as our PIL one: a
    2× horizontal one would not (its 127/128 column weights, see docs/export.md, "What the
    Task Library returns"); :func:`test_task_library_feeds_the_bytes_our_stretch_feeds`
    checks it."""
    rng = np.random.default_rng(1)
    square = rng.integers(0, 256, (SIZE, SIZE, 3)).astype("uint8")
    tall = np.repeat(rng.integers(0, 256, (1, SIZE, 3)), 2 * SIZE, axis=0).astype("uint8")
    wide = np.repeat(rng.integers(0, 256, (SIZE, 1, 3)), 3 * SIZE, axis=1).astype("uint8")
    return [square, tall, wide]


def stretched(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` resized to the input size as our ``resize="stretch"`` does (PIL bilinear)."""
    return np.asarray(Image.fromarray(pixels).resize((SIZE, SIZE), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("task-library-images")
    paths = []
    for i, pixels in enumerate(sample_images()):
        paths.append(folder / f"image{i}.npy")
        np.save(paths[-1], pixels)
    return paths


def test_task_library_feeds_the_bytes_our_stretch_feeds(task_library, image_files, tmp_path):
    """A classifier whose scores are its input bytes shows what the Task Library feeds: for the
    sample images, exactly our stretch's bytes (so the other tests compare decodings)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.uint8)])
    def echo(image):
        return tf.reshape(tf.cast(image, tf.float32), [1, SIZE * SIZE * 3])

    converter = tf.lite.TFLiteConverter.from_concrete_functions([echo.get_concrete_function()],
                                                                echo)
    path = tmp_path / "echo.tflite"
    path.write_bytes(converter.convert())
    for file, rows in zip(image_files, run_task_library(task_library, "classify", path,
                                                        image_files), strict=True):
        fed = np.full(SIZE * SIZE * 3, -1.0)
        for index, _, score in rows:
            fed[index] = score
        expected = stretched(np.load(file))
        assert np.array_equal(fed.reshape(expected.shape), expected), (
            file.name, np.abs(fed.reshape(expected.shape) - expected).max())


def test_task_library_object_detector_returns_our_detections(task_library, image_files,
                                                              tmp_path):
    path = tmp_path / "detector.tflite"
    path.write_bytes(consumer_detector_export())
    found = run_task_library(task_library, "detect", path, image_files)
    for file, rows in zip(image_files, found, strict=True):
        for row in rows:
            assert LABELS[row[4]] == row[5]
        theirs = np.asarray([[*row[:5], row[6]] for row in rows], dtype="float64")
        pixels = np.load(file)
        ours = our_stretched_detections(path, pixels, LABELS)
        assert len(ours) == 100, file.name
        # The Task Library truncates each box's origin to whole pixels (float to int) and rounds
        # its width and height (ObjectDetector's OrientAndDenormalizeBoundingBox).
        assert_same_detections(theirs, ours, low=[0.0, 0.0, -0.5, -0.5],
                               high=[1.0, 1.0, 0.5, 0.5])
        height, width = pixels.shape[:2]  # boxes reach the far edges: the stretch is undone
        assert (ours[:, 0] + ours[:, 2]).max() > width - 1 and (ours[:, 1] + ours[:, 3]).max(
        ) > height - 1


def test_task_library_image_classifier_returns_our_scores(task_library, image_files, tmp_path):
    path = tmp_path / "classifier.tflite"
    path.write_bytes(consumer_classifier_export())
    found = run_task_library(task_library, "classify", path, image_files)
    interpreter = load_interpreter(path)
    for file, rows in zip(image_files, found, strict=True):
        theirs = np.full(len(CLASS_NAMES), -1.0)
        for index, name, score in rows:
            assert CLASS_NAMES[index] == name
            theirs[index] = score
        [ours] = run(interpreter, stretched(np.load(file))[None].astype("float32"))
        np.testing.assert_allclose(theirs, ours[0], atol=1e-6, err_msg=file.name)
        assert int(np.argmax(theirs)) == int(np.argmax(ours[0]))
