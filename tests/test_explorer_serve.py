"""The public server hides /_stcore/metrics (issue 13): Streamlit 1.67 has no switch for it."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from serving import streamlit_server

pytestmark = pytest.mark.slow


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def _serves_metrics(url: str) -> bool:
    """True when the path answers with metrics (an unknown path gets the app's index page)."""
    with urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=5) as reply:
        body = reply.read().decode("utf-8", "replace")
        return "openmetrics" in reply.headers.get("content-type", "") or "# TYPE" in body


@contextlib.contextmanager
def _server(command: list[str]) -> Iterator[str]:
    env = {**os.environ, "POWERSMC_DATA_DIR": tempfile.mkdtemp(prefix="powersmc-serve-")}
    with (
        tempfile.NamedTemporaryFile(suffix=".log") as log,
        streamlit_server(command, log, env) as (
            url,
            _,
        ),
    ):
        yield url


def test_the_public_server_has_no_metrics_route_and_plain_streamlit_has_one():
    with _server([sys.executable, "-m", "explorer.serve"]) as url:
        assert not _serves_metrics(url)
        assert _status(f"{url}/_stcore/health") == 200
    # The control: without the launcher the route answers, so the test above can fail.
    with _server([sys.executable, "-m", "streamlit", "run", "app.py"]) as url:
        assert _serves_metrics(url)
