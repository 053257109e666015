"""Build the theory notebooks (.ipynb) from their jupytext sources (NN_*.py) and execute them.

Each notebook's source is a percent-format Python file beside it: ``# %%`` starts a code cell,
``# %% [markdown]`` a markdown cell whose lines are commented out. The sources are what one
edits, reviews and lints (ruff checks and formats them); the executed ``.ipynb`` next to each
is committed so that code hosts show the outputs, and ``tests/test_notebooks.py`` checks that its
cells equal its source's and re-executes it.

    python notebooks/build_notebooks.py --execute            # all (needs Chromium for the PNGs)
    python notebooks/build_notebooks.py --execute --only 03  # one
    python notebooks/build_notebooks.py --execute --no-png   # interactive figures only
    python notebooks/build_notebooks.py --check              # committed cells == sources?

Committed copies carry a PNG next to each interactive figure (POWERSMC_NOTEBOOK_PNG=1, needs
kaleido + Chromium) so that code hosts without JavaScript still show the charts; the test
suite re-executes them without PNGs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = sorted(HERE.glob("[0-9][0-9]_*.py"))


def notebook_path(source: Path) -> Path:
    """The executed notebook built from ``source``: same name, ``.ipynb``."""
    return source.with_suffix(".ipynb")


def build(source: Path) -> nbformat.NotebookNode:
    """Read a percent-format source into a notebook without outputs, with the venv's kernel."""
    nb = jupytext.read(source, fmt="py:percent")
    # Only the kernel is kept: jupytext's own bookkeeping would make every file differ by tool
    # version, and the cells are checked against the source anyway.
    nb.metadata = nbformat.NotebookNode(
        kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"},
        language_info={"name": "python"},
    )
    for cell in nb.cells:
        cell.metadata = nbformat.NotebookNode()
    return nb


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(cell type, source) of every cell: what must agree between a source and its notebook."""
    return [(c.cell_type, c.source) for c in nb.cells]


def execute(nb: nbformat.NotebookNode, timeout: int = 1200) -> nbformat.NotebookNode:
    """Run every cell in order from notebooks/ (so relative paths resolve); raises on an error."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    client.execute()
    return nb


def stale(sources: list[Path]) -> list[str]:
    """Names of committed notebooks that are missing or whose cells differ from their source."""
    out = []
    for source in sources:
        path = notebook_path(source)
        if not path.exists() or cells(nbformat.read(path, as_version=4)) != cells(build(source)):
            out.append(path.name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run and save with outputs")
    parser.add_argument("--only", nargs="*", default=None, help="name prefixes, e.g. 01 03")
    parser.add_argument("--no-png", action="store_true", help="skip static PNG copies")
    parser.add_argument(
        "--check", action="store_true", help="only report notebooks whose cells differ"
    )
    args = parser.parse_args(argv)
    sources = [s for s in SOURCES if not args.only or any(s.name.startswith(p) for p in args.only)]
    if args.check:
        bad = stale(sources)
        for name in bad:
            print(f"{name} differs from its source: rebuild it with --execute --only {name[:2]}")
        return 1 if bad else 0
    if args.execute and not args.no_png:
        os.environ["POWERSMC_NOTEBOOK_PNG"] = "1"
    for source in sources:
        nb = build(source)
        if args.execute:
            start = time.perf_counter()
            execute(nb)
            print(
                f"{source.stem}: executed in {time.perf_counter() - start:.0f} s", file=sys.stderr
            )
        nbformat.validate(nb)
        nbformat.write(nb, notebook_path(source))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
