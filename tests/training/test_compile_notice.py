"""CompileNotice: one line before the first step, one with its duration after it, nothing more."""

from __future__ import annotations

import io

from keras_efficient.training.callbacks import CompileNotice


def test_compile_notice_announces_the_first_step_and_reports_its_time():
    ticks = iter([10.0, 32.5])
    stream = io.StringIO()
    notice = CompileNotice(stream=stream, clock=lambda: next(ticks))
    notice.on_train_batch_begin(0)
    assert stream.getvalue() == ("compiling the training step (the first step traces and "
                                 "optimizes the graph, once per run)...\n")
    notice.on_train_batch_end(0)
    for batch in (1, 2):  # later steps: silent, and the clock is not read again
        notice.on_train_batch_begin(batch)
        notice.on_train_batch_end(batch)
    lines = stream.getvalue().splitlines()
    assert lines[1:] == ["training step compiled and run once in 22.5 s"]
    assert notice.seconds == 22.5
