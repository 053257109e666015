"""The replay's figures are cached per (run, step) (issue 19, finding 6): a rerun with
nothing changed builds no figure, a new step builds that step's set only, a step seen
before is served from the cache; the Live page's finished run is drawn once too, and a
cache entry can never be served for another run or step. Builds are counted, not timed."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_session_memory import trace

from explorer import history, replay
from explorer import session_keys as keys
from explorer.figure_cache import FigureCache
from explorer.gate import Gate
from explorer.settings import DemoSettings

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SET = 7  # one replay step: ESS, schedule, weights, heatmap, Rényi, genealogy, diversity
LIVE_TOY_SET = SET + 2  # the Live page adds the exact-target bars and TV per step on a toy


@pytest.fixture(autouse=True)
def demo(monkeypatch, fresh_app_state):
    monkeypatch.setenv("POWERSMC_DEMO", "1")


def page(path: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_choice"] = "toy-random:3,8,0"
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(path).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def builds(at: AppTest) -> int:
    return at.session_state[keys.FIGURE_CACHE].builds


def test_a_runs_rerun_with_nothing_changed_builds_no_figure():
    at = page("app_pages/runs.py")
    data = trace(16, 12)
    at.file_uploader(key="runs_upload").set_value(("t.jsonl", data, "application/jsonl")).run()
    assert not at.exception and len(at.get("plotly_chart")) == SET
    assert builds(at) == SET
    for _ in range(3):
        at.run()
        assert builds(at) == SET and len(at.get("plotly_chart")) == SET
    at.slider(key="runs_step").set_value(5).run()  # a new step: its set only
    assert builds(at) == 2 * SET and any("step 5**" in m.value for m in at.markdown)
    at.run()
    assert builds(at) == 2 * SET
    at.slider(key="runs_step").set_value(12).run()  # seen before: from the cache
    assert builds(at) == 2 * SET and not at.exception


def test_the_live_pages_finished_run_is_drawn_once():
    at = page("app_pages/live_smc.py")
    at.number_input(key="live_n").set_value(4)
    at.button(key="live_run").click().run()
    assert not at.exception and at.success
    before = builds(at) if keys.FIGURE_CACHE in at.session_state else 0
    at.run()  # the finished run, drawn from the cache after its first static draw
    after = builds(at)
    at.run()
    at.run()
    assert builds(at) == after and after - before <= LIVE_TOY_SET
    assert sum(str(c.key).endswith("_static") for c in at.get("plotly_chart")) == LIVE_TOY_SET


def test_a_theory_lab_rerun_builds_no_figure():
    at = page("app_pages/theory_lab.py")
    at.button(key="theory_run").click().run()
    assert not at.exception and len(at.get("plotly_chart")) == 5
    drawn = builds(at)
    at.run()
    at.run()
    assert builds(at) == drawn and len(at.get("plotly_chart")) == 5
    at.number_input(key="theory_alpha").set_value(2.0).run()  # new settings: drawn afresh
    assert builds(at) > drawn and not at.exception


def test_a_cache_entry_names_its_run_and_step():
    gate, state = Gate(DemoSettings()), {}
    data = trace(8, 6)
    first = replay.import_upload(gate, state, data, "a.jsonl").entry
    figures = replay.replay_figures(state, first, 6, 2**30)
    assert replay.replay_figures(state, first, 6, 2**30) is figures
    assert replay.replay_figures(state, first, 3, 2**30) is not figures
    # A later upload reusing the run id (another file) never gets the first one's figures.
    second = Gate(DemoSettings()).upload(trace(8, 6, seed=1), "b.jsonl")
    second.run_id = first.run_id
    history.remember(state, second, 2**30)
    assert replay.replay_figures(state, second, 6, 2**30) is not figures
    cache: FigureCache = state[keys.FIGURE_CACHE]
    assert cache.builds == 3 * SET


def test_the_cache_is_an_lru_of_bounded_size():
    cache = FigureCache(max_items=2)
    for key in ("a", "b", "a", "c"):
        cache.get(key, _figure)
    assert "a" in cache and "c" in cache and "b" not in cache and cache.builds == 3
    assert cache.get("d", _figure, room=lambda n: False) is not None and "d" not in cache


def _figure():
    import plotly.graph_objects as go

    return go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
