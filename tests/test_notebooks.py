"""Execute every theory notebook with nbclient: a failing assert cell fails its test.

The notebooks are committed with outputs; here they are re-run in memory (the committed files
are not touched) from the notebooks/ folder, with fixed seeds inside each notebook. The kernel
is the ``python3`` kernelspec that ipykernel installs into the venv; jupyter_client starts it
with this interpreter (``sys.executable``), so a fresh ``make install`` is all it needs.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _generator():
    spec = importlib.util.spec_from_file_location(
        "build_notebooks", NOTEBOOKS / "build_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_notebook_is_committed():
    assert sorted(_generator().NOTEBOOKS) == [p.name for p in PATHS]
    readme = (NOTEBOOKS / "README.md").read_text()
    for path in PATHS:
        assert path.name in readme, f"{path.name} is missing from notebooks/README.md"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_notebook_matches_generator_and_has_outputs(path):
    committed = nbformat.read(path, as_version=4)
    cells = _generator().NOTEBOOKS[path.name]
    assert [c.source for c in committed.cells] == [c.source for c in cells], (
        f"{path.name} differs from notebooks/build_notebooks.py: rerun "
        "`python notebooks/build_notebooks.py --execute --only " + path.name[:2] + "`"
    )
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code[1:]), f"{path.name} was committed without outputs"
    assert path.stat().st_size < 3_000_000, f"{path.name} is too large to read on a code host"


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_executes_and_its_asserts_hold(path, monkeypatch):
    from nbclient import NotebookClient

    # Interactive JSON only: the PNG copies need Chromium and only matter for committed files.
    monkeypatch.delenv("POWERSMC_NOTEBOOK_PNG", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=1200,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError (with the failing cell) on any error
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    assert os.environ.get("POWERSMC_NOTEBOOK_PNG") is None
