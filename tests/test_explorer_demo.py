"""Demo mode through the real pages (streamlit AppTest, toy models, env var set per test).

* Hostile input the pages must survive: NaN/inf and path-like values in the URL query,
  absurd numbers in the widgets, repeated Run clicks — messages, never an exception.
* The policy gate on every page that can start a run (Live SMC, Compare's two modes,
  Theory lab): over-cap values are clamped with a message naming the cap, and every
  sampler run holds a queue slot (counted from inside the run by a spying toy model).
* Uploads: a 6 MB trace is refused in demo mode with a message naming the 5 MB cap.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import models
from explorer.limits import global_limiter
from powersmc_core.models.loading import load_model
from powersmc_core.models.toy import ToyLM
from powersmc_core.samplers.registry import default_methods

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
LIVE = "app_pages/live_smc.py"
COMPARE = "app_pages/compare.py"
THEORY = "app_pages/theory_lab.py"
RUNS = "app_pages/runs.py"
TIMEOUT = 120


@pytest.fixture(autouse=True)
def demo_env(monkeypatch, fresh_app_state):
    monkeypatch.setenv("POWERSMC_DEMO", "1")


def live(
    model: str = "toy-random:3,8,0",
    query: dict[str, str] | None = None,
    page: str = LIVE,
    state: dict[str, object] | None = None,
) -> AppTest:
    """The app on ``page``; ``state`` is session state set before any widget exists (as a
    link or a scripted client would set it)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.session_state["model_choice"] = model
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    at.switch_page(page).run()
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


HOSTILE_QUERY = {
    "alpha": "nan",
    "n": "1e999",
    "tokens": "-inf",
    "seed": "9" * 5000,
    "model": "/etc/passwd",
    "prompt": "\x00\x1b[2J" * 300,
    "owner": "../../etc",
    "kappa": "Infinity",
}


def test_hostile_query_parameters_never_raise():
    at = live(query=HOSTILE_QUERY)
    no_exception(at)
    at.button(key="live_run").click().run()
    no_exception(at)


def test_absurd_widget_values_give_messages_not_exceptions():
    at = live()
    at.number_input(key="live_n").set_value(10**9)
    at.number_input(key="live_alpha").set_value(1e308)
    at.button(key="live_run").click().run()
    no_exception(at)
    assert at.error or at.warning or at.info


def test_rapid_repeated_run_clicks():
    at = live()
    for _ in range(5):
        at.button(key="live_run").click()
        at.run()
        no_exception(at)
    history = at.session_state["run_history"]
    assert 1 <= len(history) <= 5 and len({e.run_id for e in history}) == len(history)


def test_demo_mode_hides_custom_models():
    at = live()
    options = at.selectbox(key="model_choice").options
    assert not any("custom" in o for o in options), options


def test_demo_mode_caps_particles_and_tokens():
    at = live()
    at.number_input(key="live_n").set_value(200)
    at.button(key="live_run").click().run()
    no_exception(at)
    runs = at.session_state["run_history"]
    if runs:  # clamped and run...
        assert runs[0].records[0].n_particles <= 32
    else:  # ...or refused with a message
        assert any("32" in plain(e.value) for e in at.error)


def test_demo_mode_persists_finished_runs(tmp_path):
    at = live()
    at.button(key="live_run").click().run()
    no_exception(at)
    stored = list((tmp_path / "runs" / "final").rglob("*.jsonl"))  # final/<owner>/...
    assert len(stored) == 1


# ---- the policy gate on every page that starts runs ------------------------------------------
class SlotSpy(ToyLM):
    """A toy model that counts the limiter's held slots each time a sampler starts on it."""

    seen: list[int]

    def start(self, prompt, n):
        self.seen.append(global_limiter().stats()["active"])
        return super().start(prompt, n)


@pytest.fixture
def spy(monkeypatch):
    """The sidebar's model, replaced by a SlotSpy copy of the trap toy model."""
    model = load_model("toy-trap")
    model.__class__ = SlotSpy
    model.seen = []
    monkeypatch.setattr(models, "load_cached", lambda name, backend=None: model)
    return model


def plain(text: str) -> str:
    """A message as the visitor reads it: ``escape_markdown``'s backslashes removed."""
    return re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\1", str(text))


def warnings(at: AppTest) -> list[str]:
    return [plain(w.value) for w in at.warning]


def assert_held_one_slot_per_run(spy: SlotSpy) -> None:
    assert spy.seen, "no sampler started"
    assert set(spy.seen) == {1}, spy.seen  # every sampler ran inside the visitor's one slot
    assert global_limiter().stats()["active"] == 0  # and the slot was given back


def test_live_caps_are_clamped_with_a_message_and_the_run_holds_a_slot(spy):
    # Over-cap values in session state: the widgets (drawn with the caps as min/max) are
    # clamped before they exist, with the gate's wording, and show what runs.
    at = live(model="toy-trap", state={"live_n": 200, "live_max_tokens": 2000})
    assert "N must be in [1, 32]; got 200; using 32" in warnings(at)
    assert "max new tokens must be in [1, 96]; got 2000; using 96" in warnings(at)
    assert at.number_input(key="live_n").max == 32 and at.number_input(key="live_n").value == 32
    assert at.number_input(key="live_max_tokens").max == 96
    at.button(key="live_run").click().run()
    no_exception(at)
    [entry] = at.session_state["run_history"]
    assert entry.records[0].n_particles == 32 and entry.config["max_new_tokens"] == 96
    assert_held_one_slot_per_run(spy)


def test_compare_caps_are_clamped_with_a_message_and_the_runs_hold_a_slot(spy):
    at = live(model="toy-trap", page=COMPARE, state={"cmp_n": 200, "cmp_max_tokens": 2000})
    assert "N must be in [1, 32]; got 200; using 32" in warnings(at)
    assert "max new tokens must be in [1, 96]; got 2000; using 96" in warnings(at)
    assert at.number_input(key="cmp_n").max == 32 and at.number_input(key="cmp_n").value == 32
    at.number_input(key="cmp_mh_steps").set_value(50)  # not an SMCConfig field: the gate caps
    at.button(key="cmp_run").click().run()
    no_exception(at)
    assert not at.error, [plain(e.value) for e in at.error]
    assert "MH steps must be in [0, 8]; got 50; using 8" in warnings(at)
    runs = at.session_state["cmp_last"].runs
    smc = next(done.result for done in runs if done.method == "smc")
    assert len(smc.weights) == 32
    assert len(spy.seen) >= len(runs) == len(default_methods())  # rollout methods: opt-in
    assert_held_one_slot_per_run(spy)


def test_compare_task_set_caps_are_clamped_and_the_runs_hold_a_slot(spy):
    at = live(model="toy-trap", page=COMPARE, state={"cmp_n": 200})
    assert "N must be in [1, 32]; got 200; using 32" in warnings(at)
    at.number_input(key="cmp_task_n").set_value(50)
    at.multiselect(key="cmp_methods").set_value(["base", "smc"])
    at.button(key="cmp_task_run").click().run()
    no_exception(at)
    assert not at.error, [plain(e.value) for e in at.error]
    assert "problems must be in [1, 10]; got 50; using 10" in warnings(at)
    summary = at.session_state["cmp_task_last"]["summary"]
    assert (summary["n"] == 10).all()
    assert_held_one_slot_per_run(spy)


def test_theory_lab_budget_is_clamped_and_the_checks_hold_a_slot(monkeypatch):
    model = load_model("toy-trap")
    model.__class__ = SlotSpy
    model.seen = []
    monkeypatch.setattr(models, "load_cached", lambda name, backend=None: model)
    at = live(model="toy-trap", page=THEORY)
    at.number_input(key="theory_n").set_value(256)
    at.number_input(key="theory_runs").set_value(500)
    at.number_input(key="theory_n_max").set_value(256)
    at.run()
    no_exception(at)
    assert "N must be in [1, 32]; got 256; using 32" in warnings(at)
    assert "runs per point must be in [2, 50]; got 500; using 50" in warnings(at)
    assert "max N must be in [2, 32]; got 256; using 32" in warnings(at)
    model.seen.clear()  # the exact picture drawn so far ran no sampler inside a slot
    at.button(key="theory_run").click().run()
    no_exception(at)
    assert not at.error, [plain(e.value) for e in at.error]
    assert len(at.get("plotly_chart")) >= 4
    assert_held_one_slot_per_run(model)


def test_a_6_mb_upload_is_refused_naming_the_5_mb_cap():
    at = live(page=RUNS)
    assert any("at most 5 MB" in u.label for u in at.get("file_uploader"))
    big = b" " * (6 * 2**20)
    at.file_uploader(key="runs_upload").set_value(("big.jsonl", big, "application/jsonl")).run()
    no_exception(at)
    errors = [plain(e.value) for e in at.error]
    assert any("big.jsonl is 6.0 MB; the upload limit is 5 MB" in e for e in errors), errors
    assert not at.session_state["run_history"] if "run_history" in at.session_state else True


def test_a_refused_run_never_starts_later_on_its_own(monkeypatch):
    # Finding 8: a Run refused as busy stayed pending in session state and started at
    # the next rerun (a seed change), already near its cap. Refused means dropped.
    monkeypatch.setenv("POWERSMC_MAX_QUEUE", "0")
    at = live()
    limiter = global_limiter()
    held = [limiter.slot(f"other-{k}", address=f"198.51.100.{k}") for k in range(2)]
    for slot in held:
        slot.__enter__()
    try:
        at.button(key="live_run").click().run()
        no_exception(at)
        assert any("busy" in plain(w.value) for w in at.warning), [w.value for w in at.warning]
    finally:
        for slot in held:
            slot.__exit__(None, None, None)
    at.number_input(key="live_seed").set_value(7).run()  # a rerun with a free server
    no_exception(at)
    assert "live_active" not in at.session_state
    assert "run_history" not in at.session_state or not at.session_state["run_history"]
