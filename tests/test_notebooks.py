"""The theory notebooks: built from their jupytext sources, committed executed, and re-run.

Each ``notebooks/NN_*.ipynb`` is built from ``notebooks/NN_*.py`` (percent format) by
``notebooks/build_notebooks.py``; its cells must equal the source's, so the code that ruff lints
is the code whose outputs are committed. The notebooks are then re-run in memory (the committed
files are not touched) from the notebooks/ folder with nbclient, with fixed seeds inside each
notebook: a failing assert cell fails its test. The kernel is the ``python3`` kernelspec that
ipykernel installs into the venv; jupyter_client starts it with this interpreter
(``sys.executable``), so a fresh ``make install`` is all it needs.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _builder():
    spec = importlib.util.spec_from_file_location(
        "build_notebooks", NOTEBOOKS / "build_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_source_has_its_committed_notebook():
    sources = _builder().SOURCES
    assert sources, "no notebook sources (notebooks/NN_*.py) found"
    assert [s.with_suffix(".ipynb").name for s in sources] == [p.name for p in PATHS]
    readme = (NOTEBOOKS / "README.md").read_text()
    for path in PATHS:
        assert path.name in readme, f"{path.name} is missing from notebooks/README.md"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_notebook_matches_its_source_and_has_outputs(path):
    builder = _builder()
    committed = nbformat.read(path, as_version=4)
    expected = builder.cells(builder.build(path.with_suffix(".py")))
    assert builder.cells(committed) == expected, (
        f"{path.name} differs from {path.stem}.py: rerun "
        "`python notebooks/build_notebooks.py --execute --only " + path.name[:2] + "`"
    )
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code[1:]), f"{path.name} was committed without outputs"
    assert path.stat().st_size < 3_000_000, f"{path.name} is too large to read on a code host"


def test_source_drift_is_caught(tmp_path):
    """The comparison above can fail: one changed character in a code cell is reported."""
    builder = _builder()
    source = builder.SOURCES[0]
    edited = tmp_path / source.name
    edited.write_text(source.read_text().replace("alpha = 4.0", "alpha = 4.5", 1))
    committed = nbformat.read(builder.notebook_path(source), as_version=4)
    assert builder.cells(builder.build(edited)) != builder.cells(committed)


def _execute(path: Path) -> list:
    """Run one notebook in memory with its own kernel; returns its error outputs."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=1200,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError (with the failing cell) on any error
    return [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


@pytest.fixture(scope="module")
def executions() -> Iterator[dict[Path, Future]]:
    """Every notebook started at once, two kernels at a time (their toy maths is single-threaded:
    on 2 cores this halves the notebooks' share of the suite); the slowest first."""
    with pytest.MonkeyPatch.context() as patch, ThreadPoolExecutor(max_workers=2) as pool:
        # Interactive JSON only: the PNG copies need Chromium and only matter for committed files.
        patch.delenv("POWERSMC_NOTEBOOK_PNG", raising=False)
        order = sorted(PATHS, key=lambda p: p.stem not in SLOWEST)
        futures = {path: pool.submit(_execute, path) for path in order}
        yield futures
        for future in futures.values():
            future.cancel()


# Measured here, alone: the real-model notebook and the two Monte-Carlo sweeps take longest.
SLOWEST = ("05_renyi_diagnostics_real_model", "03_bridging_keeps_target", "04_mh_vs_smc")


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_executes_and_its_asserts_hold(path, executions):
    errors = executions[path].result()  # re-raises the notebook's CellExecutionError
    assert not errors
    assert os.environ.get("POWERSMC_NOTEBOOK_PNG") is None
