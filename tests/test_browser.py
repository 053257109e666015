"""The app in a real browser: `streamlit run app.py` driven by Playwright with Debian's Chromium.

Opens Live SMC, runs the embedded SmolLM2 model for a short generation, waits for the
run to finish, and checks that the Plotly charts rendered with data and that no
Streamlit exception box is shown. The screenshot goes to test-output/live_smc.png
(the README's docs/screenshots/live_smc.png is a copy of it).

Playwright cannot download browsers here, so the test uses /usr/bin/chromium and
installs the Debian package when it is missing and the test runs as root (as the
Makefile's `browser` target does); otherwise it is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import streamlit_server

from explorer.browser import CHROMIUM, CHROMIUM_ARGS, COUNT_CHARTS_WITH_DATA

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
# First load of the embedded model converts the GGUF file (~20 s); the run itself takes
# seconds on an idle CPU and much longer on a loaded shared one.
RUN_TIMEOUT_S = 420
# The stop test needs a run that cannot end before the click lands: llama.cpp writes the
# default haiku in ~2 s (34 steps, EOS), while counting runs to the token limit.
STOP_PROMPT = "Count from 1 to 1000, separated by commas."
STOP_TOKENS = 256
PAST_FIRST_STEP = re.compile(rf"step ([2-9]|[1-9][0-9]+)/{STOP_TOKENS}")

pytestmark = pytest.mark.slow


def ensure_chromium() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, timeout=1200)
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "Debian chromium is missing and cannot be installed (needs root): apt-get install chromium"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    OUTPUT.mkdir(exist_ok=True)
    with (
        (OUTPUT / "streamlit-server.log").open("w") as log,
        streamlit_server([sys.executable, "-m", "streamlit", "run", "app.py"], log, timeout=60) as (
            url,
            _,
        ),
    ):
        yield url


CONTENT_HEIGHT = """() => {
    const main = document.querySelector('[data-testid="stMainBlockContainer"]');
    return main ? Math.ceil(main.getBoundingClientRect().height) + 80 : 2400;
}"""


def settle(page) -> None:
    """Wait for the rerun a widget change triggers: until then old elements linger (stale)."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => document.querySelectorAll('[data-stale=\"true\"]').length === 0"
        ' && !document.querySelector(\'[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"]\')'
    )


def set_number(page, key: str, value: str) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(value)
    box.press("Enter")
    settle(page)


def test_live_smc_runs_embedded_model_in_a_browser(server: str) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    executable = ensure_chromium()
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"{server}/live_smc")
            # The default model is the embedded SmolLM2; the page shows its controls once loaded.
            run_button = page.locator(".st-key-live_run button")
            run_button.wait_for(state="visible", timeout=RUN_TIMEOUT_S * 1000)
            page.locator(".st-key-live_prompt_mode").get_by_text("Free text").click()
            settle(page)
            set_number(page, "live_alpha", "2")
            set_number(page, "live_n", "4")

            # Stop mid-run: the part decoded so far is kept and reported.
            prompt_box = page.locator(".st-key-live_prompt textarea")
            prompt_box.fill(STOP_PROMPT)
            prompt_box.press("Control+Enter")
            settle(page)
            set_number(page, "live_max_tokens", str(STOP_TOKENS))
            run_button.click()
            # Redraws are throttled to the drawing cost, so any step past the first will do:
            # on a slow machine step 2 may never be drawn on its own.
            page.get_by_text(PAST_FIRST_STEP).wait_for(timeout=RUN_TIMEOUT_S * 1000)
            page.locator(".st-key-live_stop button").click()
            page.get_by_text("Stopped at step", exact=False).wait_for()

            # A short run to the end: every chart drawn, the chosen completion shown.
            set_number(page, "live_max_tokens", "12")
            run_button.click()
            page.get_by_text("Finished:", exact=False).wait_for(timeout=RUN_TIMEOUT_S * 1000)
            # The app scrolls inside its own container, not the document: fold the settings
            # and give the window the content's height, so every chart is laid out and lands
            # in the screenshot.
            page.get_by_text("Sampler settings").click()
            page.wait_for_timeout(500)
            page.set_viewport_size({"width": 1600, "height": page.evaluate(CONTENT_HEIGHT)})
            page.wait_for_timeout(3000)
            n_charts = page.evaluate(COUNT_CHARTS_WITH_DATA)
            exceptions = page.locator('[data-testid="stException"]').count()
            page.screenshot(path=str(OUTPUT / "live_smc.png"), full_page=True)
            assert exceptions == 0, "a Streamlit exception box is shown"
            assert n_charts >= 5, f"only {n_charts} Plotly charts rendered with data"
            assert page.get_by_text("Chosen completion").count() >= 1

            # Both runs are in the session's history, and the Runs page replays the last one.
            page.locator('[data-testid="stSidebarNav"]').get_by_text("Runs").click()
            page.locator(".st-key-runs_step").wait_for()
            page.wait_for_timeout(2000)
            assert page.get_by_text("stopped", exact=False).count() >= 1
            assert page.evaluate(COUNT_CHARTS_WITH_DATA) >= 5
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
