"""A pytest plugin that reports the CPU time each test costs, for the CI budget (issue 14).

Wall-clock durations mislead on a shared machine; CPU seconds do not (much). Each test is
charged the CPU time of the pytest process plus that of the child processes it waited for
(worker and subprocess tests), over setup, call and teardown. The summary gives the tier's
total with the import and collection cost, the costliest tests and the sum per file.

Run with ``make test-cpu`` or ``python -m pytest -q -p tests.cpu_report``; with
``CPU_REPORT=path`` every test's line is also appended to ``path`` as it finishes (useful
when a long run may be cut short).
"""

from __future__ import annotations

import os
import resource
import time
from collections import defaultdict
from collections.abc import Generator
from typing import Any

import pytest

_rows: list[tuple[float, float, str]] = []
_marks: dict[str, float] = {}


def _cpu_seconds() -> float:
    """User + system seconds of this process and of its waited-for children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def pytest_configure(config: pytest.Config) -> None:
    _marks["configured"] = _cpu_seconds()


def pytest_collection_finish(session: pytest.Session) -> None:
    _marks["collected"] = _cpu_seconds()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, Any, None]:
    cpu, wall = _cpu_seconds(), time.perf_counter()
    yield
    row = (_cpu_seconds() - cpu, time.perf_counter() - wall, item.nodeid)
    _rows.append(row)
    path = os.environ.get("CPU_REPORT")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{row[0]:8.1f} {row[1]:8.1f} {row[2]}\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    write = terminalreporter.write_line
    total = _cpu_seconds()
    collected = _marks.get("collected", total)
    write(f"CPU seconds: {total:.1f} in all; {collected:.1f} before the first test (imports "
          f"and collection); {sum(row[0] for row in _rows):.1f} in {len(_rows)} tests")
    write("costliest tests (CPU s, wall s):")
    for cpu, wall, node in sorted(_rows, reverse=True)[:30]:
        write(f"{cpu:8.1f} {wall:8.1f}  {node}")
    per_file: dict[str, float] = defaultdict(float)
    for cpu, _, node in _rows:
        per_file[node.split("::", 1)[0]] += cpu
    write("CPU s per file:")
    for name, cpu in sorted(per_file.items(), key=lambda item: -item[1]):
        write(f"{cpu:8.1f}  {name}")
