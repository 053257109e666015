"""The public server: ``python -m explorer.serve [streamlit options]``.

It is ``streamlit run app.py`` with what a public demo needs and Streamlit has no
option for:

* no ``/_stcore/metrics`` route. Streamlit 1.67 registers it unconditionally, and it
  tells anyone with the link how many sessions are active, which cached functions exist
  and how long model loads took; the launcher drops that one route before Streamlit
  builds its web app (health and every other route stay);
* ``explorer.guard.DemoGuard`` in front of Streamlit's routes: per-address caps on
  sessions, bounded uploads, the signed visitor cookie;
* in demo mode, Streamlit's own byte caps set to the demo's (``demo_server_options``:
  ``maxUploadSize``, ``maxMessageSize``, ``maxWidgetStateSize``), its agent API kept off
  and closed sessions kept 60 s, after the caller's options so that the demo's caps win;
* logging for the run journal (``explorer.*`` at INFO on stderr: "run started",
  "run ended", refusals), which nothing else configures.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from explorer.settings import DemoSettings, SettingsError, demo_settings

__all__ = [
    "APP",
    "configure_logging",
    "demo_server_options",
    "install_guard",
    "main",
    "without_metrics",
]

APP = Path(__file__).resolve().parents[1] / "app.py"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def without_metrics() -> None:
    """Make Streamlit's app factory add no metrics route (it looks the factory up by name)."""
    from streamlit.web.server.starlette import starlette_app

    def no_routes(*_: Any, **__: Any) -> list[Any]:
        return []

    starlette_app.create_metrics_routes = no_routes


def install_guard(settings: DemoSettings) -> None:
    """Put ``DemoGuard`` behind Streamlit's middleware, in front of its routes."""
    from starlette.middleware import Middleware
    from streamlit.web.server.starlette import starlette_app

    from explorer.guard import DemoGuard, mark_installed

    streamlit_middleware = starlette_app.create_streamlit_middleware

    def with_guard() -> list[Any]:
        return [*streamlit_middleware(), Middleware(DemoGuard, settings=settings)]

    starlette_app.create_streamlit_middleware = with_guard
    mark_installed()


def demo_server_options(settings: DemoSettings) -> list[str]:
    """Streamlit options carrying the demo's byte caps (none outside demo mode)."""
    if not settings.enabled:
        return []
    return [
        f"--server.maxUploadSize={max(1, math.ceil(settings.max_upload_mb))}",
        f"--server.maxMessageSize={settings.max_message_mb}",
        f"--server.maxWidgetStateSize={settings.max_widget_state_mb}",
        # A session per HTTP request, past the guard's websocket bounds: never in public.
        "--server.enableAgentApi=false",
        # A closed tab's session (state, uploads) is kept this long for a reconnect; with
        # the guard's new-session rate this bounds the closed sessions one address leaves.
        "--server.disconnectedSessionTTL=60",
    ]


def configure_logging() -> None:
    """``explorer.*`` records at INFO on stderr, once (the run journal lives there)."""
    logger = logging.getLogger("explorer")
    if not any(getattr(h, "_powersmc", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._powersmc = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """``streamlit run app.py`` with the given options, guarded, metrics route removed."""
    from streamlit.web import cli

    try:
        settings = demo_settings()
    except SettingsError as err:
        print(f"explorer.serve: {err}", file=sys.stderr)
        return 2
    configure_logging()
    without_metrics()
    install_guard(settings)
    given = list(sys.argv[1:] if argv is None else argv)
    sys.argv = ["streamlit", "run", str(APP), *given, *demo_server_options(settings)]
    try:
        cli.main()
    except SystemExit as done:
        return int(done.code or 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
