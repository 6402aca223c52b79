"""The offline Edge TPU report on tiny converted graphs, and the compiler wrapper (faked)."""

import json
import os
import stat
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_efficient.export import edgetpu
from keras_efficient.export.edgetpu import (
    AFTER_CUT,
    DYNAMIC_TENSOR,
    INSTALL_HINT,
    MAPPED,
    UNSUPPORTED_OP,
    UNSUPPORTED_RANK,
    UNSUPPORTED_TYPE,
    EdgeTPUCompilerError,
    compile_for_edgetpu,
    edgetpu_report,
    find_compiler,
    parse_compiler_log,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Statistics for quantized inputs were expected:UserWarning")

RNG = np.random.default_rng(0)
W1 = tf.constant(RNG.normal(0, 0.3, (3, 3, 3, 8)).astype("float32"))
B1 = tf.constant(RNG.normal(0, 0.1, (8,)).astype("float32"))
DW = tf.constant(RNG.normal(0, 0.3, (3, 3, 8, 1)).astype("float32"))
W2 = tf.constant(RNG.normal(0, 0.3, (1, 1, 8, 16)).astype("float32"))


def _stem(x):
    x = tf.nn.relu6(tf.nn.conv2d(x, W1, 2, "SAME") + B1)
    return tf.nn.relu6(tf.nn.depthwise_conv2d(x, DW, [1, 1, 1, 1], "SAME"))


def _head(x):
    return tf.nn.relu6(tf.nn.conv2d(x, W2, 1, "SAME"))


def _good(x):
    return _head(_stem(x))


def _tiled(x):
    return _head(tf.tile(_stem(x), [1, 1, 2, 1]))


def _rank5(x):
    x = _stem(x)  # [1, 16, 16, 8]
    x = tf.reduce_max(tf.reshape(x, [1, 2, 8, 16, 8]), axis=1)
    return _head(x)


def _convert(body, int8=True, batch=1, input_type=tf.uint8):
    fn = tf.function(body, input_signature=[tf.TensorSpec([batch, 32, 32, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], fn)
    if int8:
        images = [RNG.uniform(0, 255, (1, 32, 32, 3)).astype("float32") for _ in range(3)]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = input_type
        converter.inference_output_type = tf.float32
    return bytes(converter.convert())


@pytest.fixture(scope="module")
def good():
    return _convert(_good)


def _statuses(report):
    return [(op.op, op.reason) for op in report.ops]


def test_int8_model_maps_everything_but_the_output_dequantize(good, tmp_path):
    path = tmp_path / "good.tflite"
    path.write_bytes(good)
    report = edgetpu_report(path)
    assert report == edgetpu_report(good) and report.source == "offline"
    names = [op.op for op in report.ops]
    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE"
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= set(names)
    assert all(op.mapped for op in report.ops[:-1])
    assert report.ops[-1].reason == UNSUPPORTED_TYPE
    assert (report.mapped_count, report.cpu_count) == (len(names) - 1, 1)
    assert report.first_unmapped == report.ops[-1]
    assert [op.index for op in report.ops] == list(range(len(names)))

    table = report.table()
    assert f"{'CONV_2D':<30} {names.count('CONV_2D'):<10} {MAPPED}" in table
    assert "Operator                       Count      Status" in table
    assert f"DEQUANTIZE                     1          {UNSUPPORTED_TYPE}" in table
    summary = json.loads(json.dumps(report.summary()))
    assert summary["mapped"] == len(names) - 1 and summary["on_cpu"] == 1
    assert summary["first_cpu_op"] == {"index": len(names) - 1, "op": "DEQUANTIZE",
                                       "reason": UNSUPPORTED_TYPE}
    assert sum(row["count"] for row in summary["rows"]) == len(names)


def test_float_model_runs_entirely_on_cpu():
    report = edgetpu_report(_convert(_good, int8=False))
    assert report.ops[0].reason == UNSUPPORTED_TYPE
    assert report.mapped_count == 0 and report.first_unmapped == report.ops[0]


def test_leading_float_quantize_stays_on_cpu_without_cutting_the_graph():
    report = edgetpu_report(_convert(_good, input_type=tf.float32))
    assert _statuses(report)[0] == ("QUANTIZE", UNSUPPORTED_TYPE)
    assert all(op.mapped for op in report.ops[1:-1]) and report.cpu_count == 2


def test_dynamic_batch_is_flagged():
    report = edgetpu_report(_convert(_good, batch=None))
    assert report.mapped_count == 0
    assert DYNAMIC_TENSOR in {op.reason for op in report.ops}
    assert any("dynamic-sized" in note for note in report.notes)


def test_tile_is_unsupported_and_cuts_the_graph():
    report = edgetpu_report(_convert(_tiled))
    names = [op.op for op in report.ops]
    cut = names.index("TILE")
    assert all(op.mapped for op in report.ops[:cut])
    assert report.ops[cut].reason == UNSUPPORTED_OP and report.first_unmapped == report.ops[cut]
    after = report.ops[cut + 1:]
    assert after and not any(op.mapped for op in after)
    assert ("CONV_2D", AFTER_CUT) in _statuses(report)[cut + 1:]


def test_more_than_three_non_unit_dimensions_are_flagged():
    report = edgetpu_report(_convert(_rank5))
    first = report.first_unmapped
    assert first is not None and first.reason == UNSUPPORTED_RANK
    assert first.op in {"RESHAPE", "REDUCE_MAX"}
    assert all(op.mapped for op in report.ops[:first.index])
    assert any("[1, 2, 8, 16, 8]" in note for note in report.notes)


def test_not_a_tflite_file(tmp_path):
    with pytest.raises(ValueError, match="TFL3"):
        edgetpu_report(b"definitely not a flatbuffer")
    with pytest.raises(ValueError, match="does not exist"):
        edgetpu_report(tmp_path / "missing.tflite")


# --- compile_for_edgetpu with a fake compiler ---------------------------------------------

LOG = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 412 ms.

Input model: {model}
Input size: 12.00KiB
Output model: {out}
Output size: 80.00KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 8
Operation log: {log}

Model successfully compiled but not all operations are supported by the Edge TPU.
Number of operations that will run on Edge TPU: 7
Number of operations that will run on CPU: 1

Operator                       Count      Status

QUANTIZE                       1          Mapped to Edge TPU
CONV_2D                        4          Mapped to Edge TPU
DEPTHWISE_CONV_2D              2          Mapped to Edge TPU
DEQUANTIZE                     1          Operation is working on an unsupported data type
Compilation child process completed within timeout period.
Compilation succeeded!
"""


def _fake_compiler(folder, body):
    folder.mkdir()
    script = folder / "edgetpu_compiler"
    script.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


@pytest.fixture
def model_file(tmp_path, good):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(good)
    return path


def test_compile_parses_the_compiler_summary(tmp_path, model_file, monkeypatch):
    log = LOG.format(model="tiny.tflite", out="tiny_edgetpu.tflite", log="tiny_edgetpu.log")
    (tmp_path / "expected.log").write_text(log)
    bin_dir = _fake_compiler(tmp_path / "bin", f"""\
        # args: -s -o DIR MODEL
        [ "$1" = "-s" ] && [ "$2" = "-o" ] || exit 3
        printf 'EDGETPU' > "$3/tiny_edgetpu.tflite"
        cp "{tmp_path / 'expected.log'}" "$3/tiny_edgetpu.log"
        cat "{tmp_path / 'expected.log'}"
        """)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert find_compiler() == str(bin_dir / "edgetpu_compiler")
    out = tmp_path / "out"
    out.mkdir()
    path, report = compile_for_edgetpu(model_file, out)
    assert path == out / "tiny_edgetpu.tflite" and path.read_bytes() == b"EDGETPU"
    assert sorted(p.name for p in out.iterdir()) == ["tiny_edgetpu.log", "tiny_edgetpu.tflite"]
    assert report.source == "edgetpu_compiler"
    assert report.compiler_version == "16.0.384591198"
    assert report.rows() == [("QUANTIZE", 1, MAPPED), ("CONV_2D", 4, MAPPED),
                             ("DEPTHWISE_CONV_2D", 2, MAPPED),
                             ("DEQUANTIZE", 1, UNSUPPORTED_TYPE)]
    assert (report.mapped_count, report.cpu_count) == (7, 1)
    assert report.first_unmapped is not None and report.first_unmapped.op == "DEQUANTIZE"
    assert json.loads(json.dumps(report.summary()))["first_cpu_op"]["index"] is None
    # The table round-trips through the parser.
    assert parse_compiler_log(report.table()).rows() == report.rows()


def test_failing_compiler_is_a_clear_error_and_leaves_nothing(tmp_path, model_file,
                                                              monkeypatch):
    bin_dir = _fake_compiler(tmp_path / "bin", """\
        printf 'partial' > "$3/tiny_edgetpu.tflite"
        echo "Edge TPU Compiler version 16.0.384591198"
        echo "ERROR: Attempting to use a delegate that only supports static-sized tensors" >&2
        echo "Compilation failed!" >&2
        exit 1
        """)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(EdgeTPUCompilerError, match=r"exit code 1(.|\n)*static-sized tensors"):
        compile_for_edgetpu(model_file, out)
    assert list(out.iterdir()) == []


def test_missing_compiler_explains_how_to_install(tmp_path, model_file, monkeypatch):
    monkeypatch.setattr(edgetpu.shutil, "which", lambda name: None)
    assert find_compiler() is None
    with pytest.raises(EdgeTPUCompilerError, match="apt-get install edgetpu-compiler"):
        compile_for_edgetpu(model_file, tmp_path)
    assert "coral-edgetpu-stable main" in INSTALL_HINT and "x86-64" in INSTALL_HINT
