"""The notebooks in notebooks/: stored clean (fast tier) and run top to bottom (``-m notebooks``).

``make test-notebooks`` (``pytest -m notebooks``) executes every notebook in a fresh ``python3``
kernel; each is sized to run in a few minutes on two CPU cores, offline. The kernel's temporary
folder is the test's ``tmp_path``, so whatever a notebook writes with ``tempfile`` is cleaned up
with it.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 900
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _read(path: Path):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(path, as_version=4)


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {REPO_ROOT / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_stored_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    notebook = _read(path)
    nbformat.validate(notebook)
    dirty = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (
        f"{path.name}: code cells {dirty} have outputs or execution counts; store notebooks "
        "without them (e.g. `jupyter nbconvert --clear-output --inplace` on the file).")


@pytest.fixture(scope="module")
def kernel_name() -> str:
    """``python3``, checked to start this interpreter (where keras_efficient is installed)."""
    kernelspec = pytest.importorskip("jupyter_client.kernelspec")
    specs = kernelspec.find_kernel_specs()
    if KERNEL_NAME not in specs:
        pytest.fail(f"No {KERNEL_NAME!r} Jupyter kernel (found: {sorted(specs)}); install "
                    f"ipykernel into this environment ({sys.prefix}).", pytrace=False)
    program = kernelspec.KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv[0]
    # jupyter_client replaces these generic names with the running interpreter.
    generic = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info)}
    if program not in generic and Path(program).resolve() != Path(sys.executable).resolve():
        pytest.fail(f"The {KERNEL_NAME!r} kernel ({specs[KERNEL_NAME]}) starts {program}, not "
                    f"this interpreter ({sys.executable}); remove that kernelspec or make it "
                    "start `python`.", pytrace=False)
    return KERNEL_NAME


def _error_report(path: Path, index: int, source: str, error: Exception) -> str:
    details = ANSI_ESCAPE.sub("", str(getattr(error, "traceback", "") or error))
    return (f"{path.name}: cell {index} failed ({type(error).__name__}).\n"
            f"--- cell source ---\n{source}\n--- error ---\n{details[-6000:]}")


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, kernel_name, tmp_path, monkeypatch):
    pytest.importorskip("nbclient")
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = _read(path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's tempfile folder
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(tmp_path)}})
    started = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            try:
                client.execute_cell(cell, index)
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
                pytest.fail(_error_report(path, index, cell.source, error), pytrace=False)
    print(f"{path.name}: ran in {time.perf_counter() - started:.0f} s")
