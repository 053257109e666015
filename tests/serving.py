"""How the tests start the app and drive it.

``streamlit_server``: a real Streamlit server on a free loopback port. ``AppPage``: one
Playwright page on such a server, with the moves the browser tests share (open a page,
pick a model or an option, set a number, press Run and wait for that run's own alert,
read charts, metrics and alerts, take a full-page screenshot).
"""

from __future__ import annotations

import array
import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from explorer.browser import READ_ALERTS, READ_CHARTS, READ_METRICS

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


# ---- driving the app in a browser ------------------------------------------------------------
# The script has ended (Streamlit's own flag on the app root; its status widget is not
# drawn in 1.67), no element of an earlier run lingers (stale) and every Plotly chart
# element has been drawn (Plotly's bundle loads lazily, after the element shows).
SETTLED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && document.querySelectorAll('[data-stale="true"]').length === 0
        && Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'))
            .every(el => el.querySelector('.js-plotly-plot .main-svg'));
}"""
# What changes while the browser is still drawing: elements, their text, rendered charts.
SNAPSHOT = """() => [
    document.querySelectorAll('[data-testid="stElementContainer"]').length,
    document.querySelector('[data-testid="stMain"]')?.innerText.length,
    document.querySelectorAll('.js-plotly-plot .main-svg').length,
]"""
CONTENT_HEIGHT = """() => {
    const main = document.querySelector('[data-testid="stMainBlockContainer"]');
    return main ? Math.ceil(main.getBoundingClientRect().height) + 80 : 2400;
}"""
# The Live page's status line once a run has ended (finished, or cut by the demo's cap).
RUN_ENDED = re.compile(
    r"^(Finished: [\d,]+ steps?|Stopped at the demo's run-time cap after [\d,]+ steps?)"
)
_DTYPES = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d"}


def plain_array(value: Any) -> list[Any] | None:
    """A trace's x or y as a list: a list as is, Plotly 7's {dtype, bdata} decoded."""
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, dict) and "bdata" in value:
        out = array.array(_DTYPES[value["dtype"]])
        out.frombytes(base64.b64decode(value["bdata"]))
        return out.tolist()
    raise AssertionError(f"unexpected Plotly array {str(value)[:200]}")


# The summary's heading, not the glossary line "Chosen completion: the one particle …".
CHOSEN_HEADING = re.compile(r"^Chosen completion( \(stopped early\))?$")


class AppPage:
    """One browser page on the app at ``url`` (a fresh context: its own Streamlit session)."""

    def __init__(self, browser: Any, url: str, width: int = 1600, height: int = 1000) -> None:
        self.url = url
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(120_000)

    def close(self) -> None:
        self.context.close()

    # -- navigation and widgets
    def open(self, path: str, query: str = "", ready: str | None = None, timeout_s: float = 300):
        """Load ``/{path}?{query}`` and wait until the element ``ready`` (a CSS selector)
        shows, e.g. ".st-key-live_run button" once the page's model has loaded."""
        self.page.goto(f"{self.url}/{path}" + (f"?{query}" if query else ""))
        self.page.wait_for_selector('[data-testid="stMainBlockContainer"]')
        if ready is not None:
            self.page.locator(ready).first.wait_for(state="visible", timeout=timeout_s * 1000)
        self.settle()
        return self

    def settle(self, timeout_s: float = 120) -> None:
        """Wait for the rerun a widget change triggers to end and be drawn: the script has
        ended, nothing stale lingers, and the page stopped changing for a second (the
        browser draws the last deltas, Plotly charts above all, well after the script
        ends on a busy machine)."""
        deadline = time.monotonic() + timeout_s
        self.page.wait_for_timeout(500)
        last = None
        while time.monotonic() < deadline:
            self.page.wait_for_function(SETTLED, timeout=timeout_s * 1000)
            now = self.page.evaluate(SNAPSHOT)
            if now == last:
                return
            last = now
            self.page.wait_for_timeout(1000)
        raise AssertionError(f"the page did not settle within {timeout_s:g} s")

    def select(self, key: str, option: str) -> None:
        """Pick ``option`` (its whole shown text) in the selectbox with widget key ``key``."""
        # A react-aria ComboBox: a click on the input may only focus it; its button opens it.
        self.page.locator(f".st-key-{key} [role='combobox']").click()
        options = self.page.get_by_role("listbox").locator("[role='option']")
        try:
            options.first.wait_for(timeout=3000)
        except Exception:  # playwright's TimeoutError: the list stayed closed
            self.page.locator(f".st-key-{key} button[aria-label='Open']").click()
            options.first.wait_for()
        texts = [t.strip() for t in options.all_inner_texts()]
        assert option in texts, f"{option!r} is not offered by {key}: {texts}"
        options.nth(texts.index(option)).click()
        self.settle()

    def pick_model(self, name: str) -> None:
        """The sidebar's model picker."""
        self.select("model_choice", name)

    def set_number(self, key: str, value: Any) -> None:
        box = self.page.locator(f".st-key-{key} input")
        box.fill(str(value))
        box.press("Enter")
        self.settle()

    def click(self, key: str) -> None:
        self.page.locator(f".st-key-{key} button").click()

    # -- runs
    def run_live(self, timeout_s: float = 420) -> str:
        """Press Live SMC's Run and wait for this run's own end line (its run id differs
        from any shown before the click): the status alert's text."""
        before = set(self.alerts())
        self.click("live_run")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ended = [a for a in self.alerts() if RUN_ENDED.match(a) and a not in before]
            if ended:
                self.settle()
                self.page.get_by_text(CHOSEN_HEADING).first.wait_for()
                # The summary streams in after its heading: its metrics come last.
                self.page.locator('[data-testid="stMetric"]').last.wait_for()
                self.settle()
                return ended[0]
            if errors := self.page.locator('[data-testid="stException"]').all_inner_texts():
                raise AssertionError(f"exception on the page: {errors[0][:500]}")
            self.page.wait_for_timeout(250)
        raise AssertionError(f"no end of run within {timeout_s:g} s; alerts: {self.alerts()}")

    def wait_for_text(self, text: str, timeout_s: float = 300) -> None:
        self.page.wait_for_function(
            f"() => document.body.innerText.includes({json.dumps(text)})",
            timeout=timeout_s * 1000,
        )
        self.settle()

    # -- reading the page
    def text(self) -> str:
        return self.page.locator('[data-testid="stMain"]').inner_text()

    def alerts(self) -> list[str]:
        return self.page.evaluate(READ_ALERTS)

    def metrics(self) -> dict[str, dict[str, str | None]]:
        """label -> {value, delta} of every st.metric."""
        return {m["label"]: m for m in self.page.evaluate(READ_METRICS)}

    def charts(self) -> list[dict[str, Any]]:
        """Every Plotly chart: {key, title, traces: [{name, type, x, y}]}, arrays as lists."""
        charts = self.page.evaluate(READ_CHARTS)
        for chart in charts:
            for trace in chart["traces"]:
                trace["x"], trace["y"] = plain_array(trace["x"]), plain_array(trace["y"])
        return charts

    def chart(self, key_prefix: str, timeout_s: float = 30) -> dict[str, Any]:
        """The one chart whose Streamlit key starts with ``key_prefix``; read again for up to
        ``timeout_s`` while a redraw (a chart element replaced by its successor) is under way."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [c for c in self.charts() if c["key"].startswith(key_prefix)]
            if len(found) == 1 or time.monotonic() > deadline:
                break
            self.page.wait_for_timeout(250)
        assert len(found) == 1, f"{len(found)} charts keyed {key_prefix}*: {self.chart_keys()}"
        return found[0]

    def chart_keys(self) -> list[str]:
        return [c["key"] for c in self.charts()]

    def exceptions(self) -> int:
        return self.page.locator('[data-testid="stException"]').count()

    def screenshot(self, path: Path, fold: str | None = None) -> None:
        """A full-page screenshot: the app scrolls inside its own container, so the window
        gets the content's height first (``fold``: an expander's title to fold before)."""
        if fold is not None:
            self.page.get_by_text(fold).first.click()
            self.page.wait_for_timeout(500)
        width = self.page.viewport_size["width"]
        self.page.set_viewport_size({"width": width, "height": self.page.evaluate(CONTENT_HEIGHT)})
        self.page.wait_for_timeout(2500)  # Plotly redraws at the new size
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
