"""A hostile visitor in a real browser: a demo-mode server on loopback, headless Chromium.

The inputs of issue 13 (hostile link keys, owner-token fixation, an upload of N = 10,000,
log W = 800, a 5,000-digit boxed answer, a trace whose texts hold Markdown images and
links) are sent through the browser. For each page render the test asserts:

* no traceback text (``Traceback``, ``File "``, ``stException``) on the page;
* no request to another origin than the app's (images from injected Markdown would be
  fetched from 127.0.0.1:8765 or ev.il): every request the page makes is counted by host;
* bounded server CPU time: the server process's user + system CPU seconds (``/proc``
  through psutil) around each render stay under ``RENDER_CPU_S``, a generous multiple of
  the ~1 s figure budget the demo's trace caps are sized for (docs/deploy.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from serving import streamlit_server

from explorer.browser import CHROMIUM, CHROMIUM_ARGS

psutil = pytest.importorskip("psutil")
sync_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
RENDER_CPU_S = 8.0  # 8x the ~1 s budget: the 2-core machine is shared while tests run
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "stException")

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_explorer_bounds import records, trace_bytes  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, psutil.Process]]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is missing: apt-get install chromium")
    OUTPUT.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "POWERSMC_DEMO": "1",
        "POWERSMC_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "POWERSMC_DEMO_MODELS": "toy-trap,toy-random",
        # One browser opens many pages here; the per-address session caps have their own test.
        "POWERSMC_NEW_SESSIONS_PER_MINUTE": "10000",
        "POWERSMC_SESSIONS_PER_ADDRESS": "1000",
    }
    command = [sys.executable, "-m", "explorer.serve"]
    with (
        (OUTPUT / "hostile-server.log").open("w") as log,
        streamlit_server(command, log, env) as (url, proc),
    ):
        yield url, psutil.Process(proc.pid)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()


class Visit:
    """One browser page that counts requests by host and measures server CPU per render."""

    def __init__(self, browser, url: str, server: psutil.Process) -> None:
        self.origin = urlsplit(url).netloc
        self.server = server
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.hosts: dict[str, int] = {}
        self.page.on("request", self._count)

    def _count(self, request) -> None:
        host = urlsplit(request.url).netloc or request.url.split(":", 1)[0]
        self.hosts[host] = self.hosts.get(host, 0) + 1

    def cpu(self) -> float:
        times = self.server.cpu_times()
        return times.user + times.system

    def render(self, action, says: str | None = None) -> float:
        """Run ``action`` (navigation or an upload), wait for the app to settle (and show
        ``says``); the server's CPU seconds meanwhile."""
        before = self.cpu()
        action()
        if says is not None:
            self.page.wait_for_function(
                f"() => document.body.innerText.includes({json.dumps(says)})", timeout=90_000
            )
        self.settle()
        return self.cpu() - before

    def settle(self, timeout_s: float = 90) -> None:
        self.page.wait_for_selector(
            '[data-testid="stMainBlockContainer"]', timeout=timeout_s * 1000
        )
        deadline = time.monotonic() + timeout_s
        time.sleep(1.0)
        while time.monotonic() < deadline:  # the status widget shows while a script runs
            if not self.page.query_selector('[data-testid="stStatusWidget"]'):
                return
            time.sleep(0.3)

    def check(self, cpu_s: float) -> None:
        text = self.page.inner_text("body")
        html = self.page.content()
        for marker in TRACEBACK_MARKERS:
            assert marker not in text and marker not in html, marker
        others = {h: n for h, n in self.hosts.items() if h not in (self.origin, "data", "blob")}
        assert not others, f"requests to other origins: {others}"
        assert cpu_s < RENDER_CPU_S, f"one render took {cpu_s:.1f} s of server CPU"


HOSTILE_LINKS = [
    "/?%21%5B%5D%28http%3A%2F%2F127.0.0.1%3A8765%2Fpix.png%29=1",  # ?![](http://…/pix.png)=1
    "/?%5BSession%20expired%3A%20log%20in%5D%28%2F%2Fev.il%29=1",  # ?[Session expired…](//ev.il)=1
    "/live_smc?owner=attackerChosenToken02&model=toy-trap&n=16&alpha=2&tokens=500&prompt=hello",
]


def test_hostile_links_render_without_tracebacks_or_foreign_fetches(server, browser):
    url, proc = server
    visit = Visit(browser, url, proc)
    for link in HOSTILE_LINKS:
        cpu = visit.render(lambda link=link: visit.page.goto(url + link))
        visit.check(cpu)
        visit.page.wait_for_function(  # never kept in the address bar
            "() => !window.location.href.includes('attackerChosenToken02')", timeout=60_000
        )
    visit.page.close()


def hostile_traces() -> list[tuple[str, bytes, str]]:
    markdown = "![x](http://127.0.0.1:8765/pix.png) [log in](//ev.il) **bold**"
    wide = trace_bytes(records(10_000))
    log_w = trace_bytes(records(4)).decode()
    first = log_w.split('"log_weights": [', 1)[1].split(",", 1)[0]
    log_w = log_w.replace(f'"log_weights": [{first}', '"log_weights": [800.0', 1).encode()
    boxed = trace_bytes(records(4, 2, text="\\boxed{" + "7" * 3900 + "}"), reference="42")
    return [  # (file name, bytes, what the page says)
        ("wide.jsonl", wide, "the limit is 1024"),  # N = 10,000 refused naming the cap
        ("logw800.jsonl", log_w, "normalised"),  # log W = 800 refused
        ("boxed.jsonl", boxed, "Loaded boxed"),
        ("markdown.jsonl", trace_bytes(records(4, 3, text=markdown), prompt=markdown), "Loaded"),
    ]


def test_hostile_uploads_render_without_tracebacks_foreign_fetches_or_long_cpu(
    server, browser, tmp_path
):
    url, proc = server
    visit = Visit(browser, url, proc)
    visit.render(lambda: visit.page.goto(url + "/runs"))
    for name, data, says in hostile_traces():
        path = tmp_path / name
        path.write_bytes(data)
        cpu = visit.render(
            lambda path=path: visit.page.set_input_files('input[type="file"]', str(path)), says
        )
        visit.check(cpu)
    cpu = visit.render(lambda: visit.page.reload())  # the history renders on a later visit
    visit.check(cpu)
    visit.page.screenshot(path=str(OUTPUT / "hostile_runs.png"), full_page=True)
    visit.page.close()
