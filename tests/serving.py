"""One way the tests start the app: a real Streamlit server on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply,
    ):
        return reply.status == 200
    return False


@contextlib.contextmanager
def streamlit_server(
    command: Sequence[str],
    log: IO[bytes] | IO[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 90,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``command`` plus loopback server options; yields (url, process) once healthy, stops it after."""
    port = free_port()
    options = ["--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}"]
    options.append("--browser.gatherUsageStats=false")
    proc = subprocess.Popen(
        [*command, *options],
        cwd=ROOT,
        env=dict(os.environ if env is None else env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"streamlit did not answer on {url} within {timeout:g} s; see {log.name}"
                )
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
