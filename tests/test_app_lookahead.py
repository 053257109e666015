"""Live SMC with look-ahead SMC on a toy (AppTest): the sampler choice, the rollout knobs
shown only with it, and the boundary view (candidates, offspring) with its selector."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
LIVE = "app_pages/live_smc.py"


def live(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_choice"] = "toy-trap"
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(LIVE).run()
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def values(array) -> list:
    """A Plotly array, plain or base64-typed as Plotly writes numeric ones."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def lookahead_charts(at: AppTest) -> list:
    return [c for c in at.get("plotly_chart") if str(c.key).startswith("live_lookahead_fig")]


def test_the_rollout_knobs_show_only_with_look_ahead_smc():
    at = live()
    no_exception(at)
    assert at.radio(key="live_method").options == ["Power-SMC", "look-ahead SMC"]
    keys = {w.key for w in at.get("number_input")}
    assert "live_rollout_k" not in keys
    at.radio(key="live_method").set_value("lookahead").run()
    no_exception(at)
    keys = {w.key for w in at.get("number_input")}
    assert {"live_rollout_k", "live_rollout_m", "live_rollout_h"} <= keys
    assert at.slider(key="live_lookahead_epsilon").value == 0.1


def test_a_look_ahead_run_shows_its_boundaries_and_reaches_the_sampler():
    at = live(live_method="lookahead", live_rollout_m=2, live_rollout_h=2)
    at.button(key="live_run").click().run()
    no_exception(at)
    assert not at.error and any("Finished" in s.value for s in at.success)
    entry = at.session_state["live_last"]
    assert entry.result.method == "lookahead"
    assert (entry.config["rollout_m"], entry.config["rollout_h"]) == (2, 2)
    boundaries = entry.result.extras["lookahead"]
    (chart,) = lookahead_charts(at)
    spec = json.loads(chart.proto.spec)
    (offspring,) = [t for t in spec["data"] if t["name"] == "offspring"]
    assert values(offspring["x"]) == list(boundaries[-1].offspring)
    assert any("future power mass" in c.value for c in at.caption)
    # After the run a selector picks any boundary; the first one is before any token.
    at.select_slider(key=f"live_lookahead_{entry.run_id}").set_value(0).run()
    no_exception(at)
    (chart,) = lookahead_charts(at)
    assert "before the first token" in json.loads(chart.proto.spec)["layout"]["title"]["text"]


def test_power_smc_runs_show_no_look_ahead_panel():
    at = live()
    at.button(key="live_run").click().run()
    no_exception(at)
    assert lookahead_charts(at) == []


def test_compare_shows_rollout_knobs_when_chosen_and_forwards_in_its_table():
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_choice"] = "toy-trap"
    at.run()
    at.switch_page("app_pages/compare.py").run()
    no_exception(at)
    assert "cmp_rollout_k" not in {w.key for w in at.get("number_input")}
    at.multiselect(key="cmp_methods").set_value(["smc", "lookahead"]).run()
    keys = {w.key for w in at.get("number_input")}
    assert {"cmp_rollout_k", "cmp_rollout_m", "cmp_rollout_h", "cmp_block"} <= keys
    at.number_input(key="cmp_rollout_m").set_value(2).run()
    at.button(key="cmp_run").click().run()
    no_exception(at)
    frame = at.dataframe[0].value.set_index("method")
    ratio = frame["× Power-SMC forwards"]
    assert ratio.iloc[0] == 1.0 and ratio.iloc[1] > 1.0 and frame["token forwards"].min() > 0
