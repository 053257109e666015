"""Serve the app without ``/_stcore/metrics``: ``python -m explorer.serve [streamlit options]``.

Streamlit 1.67 registers its metrics route unconditionally (no option turns it off), and it
tells anyone with the link how many sessions are active, which cached functions exist and how
long model loads took. The public image starts the server through this module, which drops
that one route before Streamlit builds its web app; every other route, health included, stays.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["APP", "main", "without_metrics"]

APP = Path(__file__).resolve().parents[1] / "app.py"


def without_metrics() -> None:
    """Make Streamlit's app factory add no metrics route (it looks the factory up by name)."""
    from streamlit.web.server.starlette import starlette_app

    def no_routes(*_: Any, **__: Any) -> list[Any]:
        return []

    starlette_app.create_metrics_routes = no_routes


def main(argv: Sequence[str] | None = None) -> int:
    """``streamlit run app.py`` with the given options, metrics route removed."""
    from streamlit.web import cli

    without_metrics()
    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    try:
        cli.main()
    except SystemExit as done:
        return int(done.code or 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
