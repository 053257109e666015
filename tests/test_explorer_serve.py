"""The public server hides /_stcore/metrics (issue 13): Streamlit 1.67 has no switch for it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = ["--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}"]
    env = {**os.environ, "POWERSMC_DATA_DIR": tempfile.mkdtemp(prefix="powersmc-serve-")}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [*command, *options], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while not _healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"server did not start: {log.read()[-2000:]!r}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _healthy(url: str) -> bool:
    with contextlib.suppress(OSError):
        return _status(f"{url}/_stcore/health") == 200
    return False


def test_the_public_server_has_no_metrics_route_and_plain_streamlit_has_one():
    with _server([sys.executable, "-m", "explorer.serve"]) as url:
        assert not _serves_metrics(url)
        assert _status(f"{url}/_stcore/health") == 200
    # The control: without the launcher the route answers, so the test above can fail.
    with _server([sys.executable, "-m", "streamlit", "run", "app.py"]) as url:
        assert _serves_metrics(url)
