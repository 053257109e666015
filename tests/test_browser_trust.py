"""Issue 20's findings in a real browser: what the pages say about a run can be trusted.

Each test drives the app in headless Debian Chromium (Playwright) and reads what a
visitor sees: the status line, the answer metric and headline, and the Plotly charts'
own data (``AppPage.charts``). One server per mode, module-scoped: a full-mode
``streamlit run app.py`` and, for the run-time cap, a demo server (``explorer.serve``,
``POWERSMC_DEMO=1``) with a 4 s cap. Toy models where the finding allows (runs are
instant); the embedded SmolLM2 with a few tokens where it needs text.

Findings covered (each test fails if its behaviour regresses):

1. a run cut during the prompt echo reads "unfinished", never graded;
2. the majority vote reports a vote share, not the weighted mass P̂;
3. toy-random's known answer and the grade agree (no empty known answer "✓ correct");
4. a free-text run has no answer chart and no "(no answer) P̂ = 1.000" line;
5. a run cut by the demo's cap has its last step drawn (the charts end at step K);
6. screenshots of Live SMC with the exact-target panel, Compare and the Theory lab.

To add a finding: a test taking ``full`` (or ``demo``) and ``browser``, an ``AppPage``
opened on a link that sets the widgets (``live_smc?model=…&n=…&tokens=…``), then
``run_live()`` and the readers (``metrics``, ``chart``, ``alerts``, ``text``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from serving import CHOSEN_HEADING, AppPage, streamlit_server

from explorer.answer_view import RULE_LABELS
from explorer.browser import CHROMIUM, CHROMIUM_ARGS
from explorer.presets import TEXT_PRESETS

sync_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
CAP_S = 4  # the demo server's POWERSMC_DEMO_MAX_RUN_SECONDS
READY = ".st-key-live_run button"  # Live SMC's Run button: shown once the model has loaded
ARITHMETIC = next(p for p in TEXT_PRESETS if "6 * 7 - 5" in p.prompt)
LONG_PROMPT = "Write a very long story about a dragon and a knight."
VERDICTS = ("✓ correct", "✗ wrong")

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def server_env(data: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "POWERSMC_DATA_DIR": str(data),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is missing: apt-get install chromium")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Iterator[str]:
    """A full-mode server (no caps but the app's own)."""
    OUTPUT.mkdir(exist_ok=True)
    env = server_env(tmp_path_factory.mktemp("full-data"))
    command = [sys.executable, "-m", "streamlit", "run", "app.py"]
    with (
        (OUTPUT / "trust-server.log").open("w") as log,
        streamlit_server(command, log, env) as (url, _),
    ):
        yield url


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[str]:
    """A demo server whose run-time cap is CAP_S seconds."""
    OUTPUT.mkdir(exist_ok=True)
    env = server_env(
        tmp_path_factory.mktemp("demo-data"),
        POWERSMC_DEMO="1",
        POWERSMC_DEMO_MAX_RUN_SECONDS=str(CAP_S),
        POWERSMC_NEW_SESSIONS_PER_MINUTE="1000",
        POWERSMC_SESSIONS_PER_ADDRESS="100",
    )
    command = [sys.executable, "-m", "explorer.serve"]
    with (
        (OUTPUT / "trust-demo-server.log").open("w") as log,
        streamlit_server(command, log, env) as (url, _),
    ):
        yield url


@pytest.fixture
def app(browser, request) -> Iterator[Callable[[str], AppPage]]:
    """``app(url)``: a fresh AppPage (its own browser context, so its own session)."""
    pages: list[AppPage] = []
    failed_before = request.session.testsfailed

    def make(url: str) -> AppPage:
        pages.append(AppPage(browser, url))
        return pages[-1]

    yield make
    failed = request.session.testsfailed > failed_before  # the call's report came first
    for i, page in enumerate(pages):
        if failed:  # what the page showed when the test failed
            page.page.screenshot(path=str(OUTPUT / f"trust-failed-{request.node.name}-{i}.png"))
        page.close()


def live(**params: object) -> str:
    """The query of a Live SMC link setting these widgets (model, n, tokens, prompt, preset)."""
    return urlencode({k: str(v) for k, v in params.items()})


def headline(page: AppPage) -> str:
    """The answer view's one line ("Decided answer (rule): …"), or "" when none is shown."""
    found = page.page.locator('[data-testid="stMarkdownContainer"]').filter(
        has_text="Decided answer ("
    )
    return found.first.inner_text() if found.count() else ""


def answer_chart(page: AppPage) -> list[dict]:
    return [c for c in page.charts() if c["key"].startswith("live_answers_")]


# ---- 1. a run cut during the prompt echo -------------------------------------------------------
def test_arithmetic_run_cut_at_max_tokens_reads_unfinished_and_is_not_graded(full, app):
    page = app(full).open(
        "live_smc", live(model="smollm2", preset=ARITHMETIC.name, n=4, tokens=3), READY
    )
    assert ARITHMETIC.prompt in page.text(), "the link did not pick the arithmetic preset"
    status = page.run_live()
    assert status.startswith("Finished: 3 steps"), status
    answer = page.metrics()["answer"]
    assert answer["value"] == "unfinished", answer
    assert answer["delta"] == "not graded", answer
    for rule in ("weighted-vote", "chosen", "majority-vote"):
        if rule != "weighted-vote":  # the default rule
            page.select("live_answer_rule", RULE_LABELS[rule])
        line = headline(page)
        assert line.startswith(f"Decided answer ({rule}): unfinished"), line
        text = page.text()
        assert not any(v in text for v in VERDICTS), f"{rule}: a verdict is shown"
        assert "✓" not in line and "✗" not in line, line
    assert page.exceptions() == 0


# ---- 2. the majority vote shows the vote share --------------------------------------------------
def test_majority_vote_reports_the_vote_share_not_the_weighted_mass(full, app):
    n = 8
    page = app(full).open("live_smc", live(model="toy-trap", n=n, tokens=8), READY)
    page.run_live()
    weighted = headline(page)
    assert weighted.startswith("Decided answer (weighted-vote)"), weighted
    assert "weighted mass P̂ =" in weighted, weighted
    assert "weighted mass" in answer_chart(page)[0]["title"].lower()

    page.select("live_answer_rule", RULE_LABELS["majority-vote"])
    line = headline(page)
    assert line.startswith("Decided answer (majority-vote)"), line
    assert re.search(r"vote share = \d\.\d{3}", line), line
    assert "P̂" not in line and "weighted mass" not in line, line
    share = float(re.search(r"vote share = (\d\.\d{3})", line).group(1))
    assert abs(share * n - round(share * n)) < 1e-2, f"{share} is no count out of {n}"
    [chart] = answer_chart(page)
    assert "vote share" in chart["title"].lower(), chart["title"]
    bars = [v for trace in chart["traces"] if trace["type"] == "bar" for v in trace["y"]]
    assert bars and all(abs(v * n - round(v * n)) < 1e-6 for v in bars), bars
    assert page.exceptions() == 0


# ---- 3. toy-random: known answer and grade agree ------------------------------------------------
def test_toy_random_known_answer_and_grade_agree(full, app):
    page = app(full).open("live_smc", "", READY)  # the sidebar's picker, not a link
    page.pick_model("toy-random")
    page.page.locator(READY).wait_for()
    # The empty prompt: the mode is the empty completion, so no known answer and no grade.
    assert "none (the mode is the empty completion)" in page.text()
    page.run_live()
    text = page.text()
    assert not any(v in text for v in VERDICTS), "graded without a known answer"
    metrics = page.metrics()  # drawn, with min ESS where a graded answer would be
    assert "min ESS" in metrics and "answer" not in metrics, metrics
    assert not answer_chart(page) and headline(page) == ""

    # Prefix "a": the known answer is "c a"; the grade is that of the answer shown.
    page.select("live_toy_prefix", "a")
    caption = re.search(r"Known answer \(exact mode of π_α for every α > 0\): (.+)", page.text())
    assert caption is not None and caption.group(1).strip() == "c a", page.text()[:2000]
    page.run_live()
    answer = page.metrics()["answer"]
    expected = "✓ correct" if answer["value"] == "c a" else "✗ wrong (expected c a)"
    assert answer["delta"] == expected, answer
    line = headline(page)
    assert line.endswith("known answer: c a"), line
    assert page.exceptions() == 0


# ---- 4. free text: no answer chart --------------------------------------------------------------
def test_free_text_run_has_no_answer_chart_or_grade(full, app):
    page = app(full).open(
        "live_smc", live(model="smollm2", prompt="Write a haiku about particles.", n=4, tokens=4),
        READY,
    )  # fmt: skip
    assert page.page.locator(".st-key-live_prompt textarea").input_value().startswith("Write a")
    page.run_live()
    assert page.page.get_by_text("Chosen completion").count() >= 1  # the summary is drawn
    text = page.text()
    assert not answer_chart(page), page.chart_keys()
    assert headline(page) == "" and "(no answer)" not in text and "P̂ = 1.000" not in text
    assert page.page.locator(".st-key-live_answer_rule").count() == 0
    metrics = page.metrics()
    assert "min ESS" in metrics and "answer" not in metrics, metrics
    assert not any(v in text for v in VERDICTS)
    assert page.exceptions() == 0


# ---- 5. the run-time cap: the last step is drawn ------------------------------------------------
def test_run_cut_by_the_demo_cap_draws_its_last_step(demo, app):
    """The cap ends a run after a step is decoded: before its redraw (the usual case, the
    step is drawn only by ``LiveCharts.settle``) or, when the deadline passes during a
    redraw, after it. Which one is a matter of timing, so two runs are cut: a regression
    goes unseen only if both deadlines fall in a redraw (a small share of a run's time)."""
    page = app(demo).open(
        "live_smc", live(model="smollm2", prompt=LONG_PROMPT, n=8, tokens=96), READY
    )
    for seed in (0, 1):
        page.set_number("live_seed", seed)
        status = page.run_live()
        found = re.match(r"Stopped at the demo's run-time cap after (\d+) steps?", status)
        assert found is not None, f"the {CAP_S} s cap did not end the run: {status}"
        k = int(found.group(1))
        assert 1 <= k < 96
        for key in ("live_ess_", "live_schedule_", "live_heatmap_"):
            xs = [x for trace in page.chart(key)["traces"] if trace["x"] for x in trace["x"]]
            assert xs and max(xs) == k, f"{key}: last step drawn {max(xs, default=None)}, not {k}"
        assert page.page.get_by_text(f"Particles at step {k}").count() == 1
        assert page.exceptions() == 0


# ---- 6. screenshots ------------------------------------------------------------------------------
def test_screenshot_live_toy_with_the_exact_target_panel(full, app):
    page = app(full).open("live_smc", live(model="toy-trap", n=8, tokens=8), READY)
    page.run_live()
    for key in ("live_target_", "live_target_tv_"):
        chart = page.chart(key) if key != "live_target_" else _target_bars(page)
        assert any(t["x"] or t["y"] for t in chart["traces"]), f"{key} has no data"
    page.screenshot(OUTPUT / "trust_live_toy_target.png", fold="Sampler settings")
    assert page.exceptions() == 0


def _target_bars(page: AppPage) -> dict:
    found = [
        c
        for c in page.charts()
        if c["key"].startswith("live_target_") and not c["key"].startswith("live_target_tv_")
    ]
    assert len(found) == 1, page.chart_keys()
    return found[0]


def test_screenshot_compare_on_a_toy(full, app):
    page = app(full).open("compare", live(model="toy-trap"), ".st-key-cmp_run button")
    page.click("cmp_run")
    page.wait_for_text("Results on toy-trap")
    chart = page.chart("cmp_loglik")
    assert any(t["y"] for t in chart["traces"]), chart
    page.screenshot(OUTPUT / "trust_compare_toy.png")
    assert page.exceptions() == 0


def test_screenshot_theory_lab_tv_per_schedule(full, app):
    page = app(full).open("theory_lab", live(model="toy-trap"), ".st-key-theory_run button")
    page.set_number("theory_runs", 5)
    page.set_number("theory_n_max", 32)
    page.click("theory_run")
    page.page.locator(".st-key-theory_tv .js-plotly-plot").wait_for(timeout=300_000)
    page.settle()
    names = {t["name"] for t in page.chart("theory_tv")["traces"]}
    assert {"constant", "linear", "adaptive"} <= names, names
    page.screenshot(OUTPUT / "trust_theory_lab.png")
    assert page.exceptions() == 0


# ---- 7. a new run clears the old charts at once --------------------------------------------------
WATCH_BOARD = """() => {
    // Every DOM change from now on: was the "Starting run" line up, and which charts were?
    window.__board = [];
    const keys = () => [...document.querySelectorAll('[class*="st-key-live_"] .js-plotly-plot')]
        .map(el => [...el.closest('[class*="st-key-live_"]').classList]
            .find(c => c.startsWith('st-key-live_')));
    const look = () => window.__board.push({
        starting: document.body.textContent.includes('Starting run'), charts: keys()});
    window.__observer = new MutationObserver(look);
    window.__observer.observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def test_a_new_run_clears_the_previous_runs_charts_before_its_first_step(full, app):
    """torch's first LLM step takes seconds (prefill and the first batched draw): the
    window in which the old page kept the previous run's charts on screen."""
    page = app(full).open(
        "live_smc",
        live(model="smollm2", backend="torch", prompt=LONG_PROMPT, n=4, tokens=3),
        READY,
    )
    first = page.run_live()
    old = re.search(r"run (\w+) saved", first).group(1)
    assert any(old in k for k in page.chart_keys()), page.chart_keys()
    page.page.evaluate(WATCH_BOARD)
    page.set_number("live_seed", 1)  # a different run; the charts of `old` stay up until Run
    second = page.run_live()
    assert old not in second
    seen = page.page.evaluate("() => { window.__observer.disconnect(); return window.__board; }")
    starting = [s for s in seen if s["starting"]]
    assert starting, "no 'Starting run' line was ever shown"
    stale = [s["charts"] for s in starting if any(old in k for k in s["charts"])]
    assert not stale, f"the previous run's charts were on screen after Run: {stale[:2]}"
    assert not any(s["charts"] for s in starting), "charts drawn beside 'Starting run'"
    assert any(old not in k for k in page.chart_keys())  # the new run's charts are up
    assert page.exceptions() == 0


# ---- 8. a clamped widget shows the value that ran ------------------------------------------------
def test_a_clamped_widget_shows_the_value_that_ran(demo, app):
    from explorer.settings import demo_settings

    caps = demo_settings({"POWERSMC_DEMO": "1"})
    page = app(demo).open(
        "live_smc", live(model="toy-trap", n=10_000, tokens=500, alpha=1000), READY
    )
    shown = {
        k: float(page.page.locator(f".st-key-{k} input").input_value())
        for k in ("live_n", "live_max_tokens", "live_alpha")
    }
    assert shown == {
        "live_n": caps.max_particles,
        "live_max_tokens": caps.max_new_tokens,
        "live_alpha": caps.alpha_max,
    }, shown
    # Typed past the cap: Streamlit's number input refuses it in place, with its range,
    # and keeps the committed value, which is the one that runs (and is said to run).
    box = page.page.locator(".st-key-live_n input")
    box.fill("100000")
    box.press("Enter")
    page.settle()
    refusal = page.page.locator(".st-key-live_n").inner_text()
    assert f"between 1 and {caps.max_particles}" in refusal, refusal
    n = caps.max_particles  # the link's clamped value, still the committed one
    status = page.run_live()
    assert status.startswith("Finished:"), status
    ran = page.page.get_by_text(re.compile(r"^ran with N = ")).first.inner_text()
    assert ran.startswith(f"ran with N = {n} · "), (ran, n)  # the run's own settings
    assert f"max new tokens {caps.max_new_tokens}" in ran and f"α = {caps.alpha_max:g}" in ran
    assert page.exceptions() == 0


# ---- 9. a share link in a fresh browser reproduces the run ---------------------------------------
def test_a_share_link_in_a_fresh_browser_reproduces_the_run(full, app):
    page = app(full).open(
        "live_smc",
        live(
            model="smollm2", backend="llamacpp", preset=ARITHMETIC.name, stop="boxed",
            n=2, tokens=6, seed=3,
        ),
        READY,
    )  # fmt: skip
    first = page.run_live()
    page.click("live_share")
    page.settle()
    link = page.page.locator('[data-testid="stCode"]').filter(has_text="live_smc?").inner_text()
    link = link.strip()
    assert link.startswith(page.url), (link, page.url)  # a full URL on this server
    assert "owner" not in link
    asked = parse_qs(urlsplit(link).query)
    assert asked["preset"] == [ARITHMETIC.name], asked
    assert asked["stop"] == ["boxed"] and asked["backend"] == ["llamacpp"], asked
    assert asked["n"] == ["2"] and asked["seed"] == ["3"], asked
    context = page.page.get_by_text(re.compile(r"^stop rule: ")).first.inner_text()
    before = {"context": context, "metrics": page.metrics(), "completion": _completion(page)}

    fresh = app(full)  # its own browser context: no cookie, no session state
    fresh.page.goto(link)
    fresh.page.locator(READY).first.wait_for(state="visible", timeout=300_000)
    fresh.settle()
    assert ARITHMETIC.prompt in fresh.text(), "the preset was not picked"
    again = fresh.run_live()
    assert again.startswith("Finished:") and first.startswith("Finished:"), (first, again)
    after = {
        "context": fresh.page.get_by_text(re.compile(r"^stop rule: ")).first.inner_text(),
        "metrics": fresh.metrics(),
        "completion": _completion(fresh),
    }
    assert after["context"] == before["context"], (before["context"], after["context"])
    assert "\\boxed{} answer" in after["context"] and "llama.cpp" in after["context"]
    assert f"preset: {ARITHMETIC.name}" in after["context"]
    for label in ("log Ẑ", "log p(y|x)", "answer"):
        assert after["metrics"][label] == before["metrics"][label], label
    assert after["completion"] == before["completion"]
    assert fresh.exceptions() == 0


def _completion(page: AppPage) -> str:
    heading = page.page.get_by_text(CHOSEN_HEADING).first
    return heading.locator("xpath=following::*[@data-testid='stCode'][1]").inner_text()
