"""Clean state on Live SMC (issue 20): nothing of an earlier run or model stays on screen,
settings that do not apply to the model's kind are reset, widgets carry the mode's caps,
and every range error reads the same.

The page is driven with ``AppTest`` on toy models (runs are instant); what happens between
Run and the first step is observed in order through a log that a spying toy model, the
chart class and ``st.info`` write to.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

from explorer import inputs, models, page_kit, views
from explorer import session_keys as keys
from explorer.gate import Gate, InputError
from explorer.query import LIVE_WIDGETS
from explorer.settings import DemoSettings, demo_settings
from powersmc_core.engine.config import SMCConfig, range_message
from powersmc_core.models.loading import load_model
from powersmc_core.models.toy import ToyLM

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
LIVE = "app_pages/live_smc.py"
COMPARE = "app_pages/compare.py"
TIMEOUT = 60
TOY, LLM = inputs.STOP_RULES[0], inputs.STOP_RULES[1]


@pytest.fixture(autouse=True)
def full_mode(monkeypatch, fresh_app_state):
    monkeypatch.delenv("POWERSMC_DEMO", raising=False)


def app(model: str = "toy-trap", page: str = LIVE, **state: object) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["model_choice"] = model
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(page).run()
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def plain(text: str) -> str:
    """A message as the visitor reads it: ``escape_markdown``'s backslashes removed."""
    return re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\1", str(text))


# ---- charts clear at once ------------------------------------------------------------------
class LoggingToy(ToyLM):
    """A toy model that logs when a sampler starts decoding on it."""

    log: list[str]

    def start(self, prompt, n):
        self.log.append("decode")
        return super().start(prompt, n)


@pytest.fixture
def log(monkeypatch) -> list[str]:
    """One ordered log of: decoding starts, chart slots laid out, a stored run redrawn,
    and every ``st.info`` line (the sidebar's model is a ``LoggingToy``)."""
    entries: list[str] = []
    model = load_model("toy-trap")
    model.__class__ = LoggingToy
    model.log = entries
    monkeypatch.setattr(models, "load_cached", lambda name, backend=None: model)

    class LoggingCharts(views.LiveCharts):
        def __init__(self, *args, **kwargs):
            entries.append("charts")
            super().__init__(*args, **kwargs)

        def draw_run(self, *args, **kwargs):
            entries.append("draw_run")
            return super().draw_run(*args, **kwargs)

    monkeypatch.setattr(views, "LiveCharts", LoggingCharts)
    info = DeltaGenerator.info

    def logged_info(self, body, *args, **kwargs):
        entries.append(f"info:{plain(body)}")
        return info(self, body, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "info", logged_info)
    return entries


def test_run_shows_nothing_of_the_last_run_before_its_first_step(log):
    at = app()
    at.button(key="live_run").click().run()
    no_exception(at)
    assert "draw_run" not in log  # a run in flight draws per event, never the stored run
    at.run()  # an idle rerun redraws the last run (it was made with this model)
    assert "draw_run" in log and len(at.get("plotly_chart")) > 0
    log.clear()
    at.number_input(key="live_seed").set_value(1)
    at.button(key="live_run").click().run()
    no_exception(at)
    assert len(at.session_state[keys.HISTORY]) == 2
    # Before the new run decodes, the slot holds the "Starting run" line and no chart slot
    # exists (not even an empty one over the old figures); the stored run is never drawn.
    starting = next(i for i, e in enumerate(log) if e.startswith("info:Starting run"))
    assert log.index("decode") > starting
    assert log.index("charts") > log.index("decode")
    assert "draw_run" not in log


def test_the_last_run_is_drawn_only_under_its_own_model():
    at = app()
    at.button(key="live_run").click().run()
    at.run()
    assert len(at.get("plotly_chart")) > 0
    at.selectbox(key="model_choice").set_value("toy-random:3,8,0").run()
    no_exception(at)
    assert not at.get("plotly_chart")  # token ids of toy-trap mean nothing here
    assert any("The last run used model toy-trap" in plain(i.value) for i in at.info)
    at.selectbox(key="model_choice").set_value("toy-trap").run()
    assert len(at.get("plotly_chart")) > 0


# ---- toy <-> LLM resets --------------------------------------------------------------------
N, TOKENS, SCHEDULE = (LIVE_WIDGETS[f] for f in ("n_particles", "max_new_tokens", "schedule"))


def test_the_first_form_of_a_session_only_records_the_kind():
    state = {N: 16, TOKENS: 40, keys.LIVE_STOP_RULE: "stop strings"}  # e.g. from a link
    assert page_kit.reset_for_model_kind(state, toy=False) is None
    assert state == {
        N: 16,
        TOKENS: 40,
        keys.LIVE_STOP_RULE: "stop strings",
        "live_model_kind": "llm",
    }
    assert page_kit.reset_for_model_kind(state, toy=False) is None  # same kind: kept
    assert state[N] == 16


def test_switching_kind_resets_what_does_not_carry_over_and_says_so():
    state = {keys.LIVE_MODEL_KIND: "llm", N: 4, TOKENS: 32, SCHEDULE: "adaptive"}
    state[keys.LIVE_STOP_RULE] = LLM
    line = page_kit.reset_for_model_kind(state, toy=True)
    assert line == (
        "Switched to a toy model: reset N to 8, max new tokens to 8, schedule to constant, "
        "stop rule to EOS only (they do not carry over)."
    )
    assert (state[N], state[TOKENS], state[SCHEDULE], state[keys.LIVE_STOP_RULE]) == (
        8,
        8,
        "constant",
        TOY,
    )
    state[N] = 6  # chosen on the toy: kept while the kind stays
    assert page_kit.reset_for_model_kind(state, toy=True) is None and state[N] == 6
    line = page_kit.reset_for_model_kind(state, toy=False)
    assert line is not None and "N to 4" in line and "stop rule to \\boxed{} answer" in line
    assert "schedule" not in line  # already the default: not mentioned
    assert (state[N], state[TOKENS], state[keys.LIVE_STOP_RULE]) == (4, 24, LLM)


def test_a_switch_resets_only_widgets_already_drawn():
    state = {keys.LIVE_MODEL_KIND: "toy"}
    assert page_kit.reset_for_model_kind(state, toy=False) is None
    assert state == {keys.LIVE_MODEL_KIND: "llm"}  # the widgets will start from LLM defaults


def test_kind_defaults_respect_a_tight_cap(monkeypatch):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    monkeypatch.setenv("POWERSMC_DEMO_MAX_NEW_TOKENS", "16")
    monkeypatch.setenv("POWERSMC_DEMO_MAX_PARTICLES", "2")
    assert page_kit.live_defaults(toy=False)[TOKENS] == 16
    assert page_kit.live_defaults(toy=True)[N] == 2


def test_toy_llm_toy_on_the_page_resets_and_says_so_once(monkeypatch):
    at = app()
    at.selectbox(key="live_schedule").set_value("adaptive").run()
    at.number_input(key="live_n").set_value(12).run()
    assert not any("Switched" in plain(i.value) for i in at.info)
    # The sidebar now holds a language model (the toy stands in for one: only its kind
    # matters here, and loading the embedded LLM would make this test slow).
    monkeypatch.setattr(models, "is_toy", lambda model: False)
    at.run()
    no_exception(at)
    lines = [plain(i.value) for i in at.info if "Switched" in plain(i.value)]
    assert lines == [
        "Switched to a language model: reset N to 4, max new tokens to 24, schedule to "
        "constant, stop rule to \\boxed{} answer (they do not carry over)."
    ]
    assert at.number_input(key="live_n").value == 4
    assert at.number_input(key="live_max_tokens").value == 24
    assert at.selectbox(key="live_schedule").value == "constant"
    assert at.selectbox(key="live_stop_rule").value == LLM
    at.run()  # a rerun with the same kind resets nothing
    assert not any("Switched" in plain(i.value) for i in at.info)
    monkeypatch.undo()
    at.run()
    no_exception(at)
    assert any("Switched to a toy model" in plain(i.value) for i in at.info)
    assert at.selectbox(key="live_stop_rule").value == TOY
    assert at.number_input(key="live_max_tokens").value == 8
    at.button(key="live_run").click().run()
    no_exception(at)
    [entry] = at.session_state[keys.HISTORY]
    assert entry.config["max_new_tokens"] == 8 and entry.config["n_particles"] == 8


# ---- widgets carry the caps ----------------------------------------------------------------
def test_demo_widgets_carry_the_demo_caps_and_the_shown_value_runs(monkeypatch):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    caps = demo_settings()
    at = app()
    bounds = {
        "live_n": (1, caps.max_particles),
        "live_max_tokens": (1, caps.max_new_tokens),
        "live_alpha": (caps.alpha_min, caps.alpha_max),
        "live_alpha_start": (caps.alpha_min, caps.alpha_max),
        "live_ramp": (1, caps.max_new_tokens),
        "live_block": (1, caps.max_new_tokens),
    }
    for key, (low, high) in bounds.items():
        widget = at.number_input(key=key)
        assert (widget.min, widget.max) == (low, high), key
    at.switch_page(COMPARE).run()
    assert at.number_input(key="cmp_n").max == caps.max_particles
    assert at.number_input(key="cmp_alpha").max == caps.alpha_max
    at.switch_page(LIVE).run()
    at.number_input(key="live_n").set_value(20)
    at.number_input(key="live_alpha").set_value(10.0)  # above the cap: never runs
    at.button(key="live_run").click().run()
    no_exception(at)
    assert not at.warning, [plain(w.value) for w in at.warning]  # nothing left to clamp
    [entry] = at.session_state[keys.HISTORY]
    assert entry.config["n_particles"] == at.number_input(key="live_n").value == 20
    assert entry.config["alpha"] == at.number_input(key="live_alpha").value <= caps.alpha_max


def test_a_value_beyond_the_caps_in_session_state_is_clamped_with_the_gates_note(monkeypatch):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    at = app(live_n=64, live_alpha=10.0)
    no_exception(at)
    notes = [plain(w.value) for w in at.warning]
    assert "N must be in [1, 32]; got 64; using 32" in notes
    assert "α must be in [0.5, 8]; got 10; using 8" in notes
    assert at.number_input(key="live_n").value == 32
    assert at.number_input(key="live_alpha").value == 8.0


def test_clamp_state_changes_only_numbers_out_of_range():
    state: dict[str, object] = {"a": 5, "b": 500, "c": "junk", "d": 7.0}
    assert page_kit.clamp_state(state, "a", "n_particles", 1, 32) is None and state["a"] == 5
    assert page_kit.clamp_state(state, "b", "n_particles", 1, 32) == (
        "N must be in [1, 32]; got 500; using 32"
    )
    assert state["b"] == 32
    assert page_kit.clamp_state(state, "c", "n_particles", 1, 32) is None and state["c"] == "junk"
    assert page_kit.clamp_state(state, "d", "n_particles", 1, 32) is None and state["d"] == 7
    assert page_kit.clamp_state(state, "missing", "n_particles", 1, 32) is None
    assert "missing" not in state


# ---- one wording for range errors ------------------------------------------------------------
RANGE = re.compile(r"^\S.* must be (in [\[(]\S+, \S+\]|>=? \S+); got \S+(; using \S+)?$")


def test_n_0_and_n_500_read_the_same():
    with pytest.raises(InputError) as refused:
        Gate(DemoSettings()).clamp({"n_particles": 0})
    _, notes = Gate(DemoSettings()).clamp({"n_particles": 500})
    # Same label, same range, same form: the error says what no cap can fix, the note
    # what it changed.
    assert str(refused.value) == "N must be in [1, 256]; got 0"
    assert notes == ["N must be in [1, 256]; got 500; using 256"]
    assert RANGE.match(str(refused.value)) and RANGE.match(notes[0])


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ({"alpha": 0.0}, "α must be in [0.5, 8]; got 0"),
        ({"alpha": -2.0, "n_particles": 4}, "α must be in [0.5, 8]; got -2"),
        ({"max_new_tokens": 0}, "max new tokens must be in [1, 96]; got 0"),
        ({"seed": -1}, "seed must be in [0, 2147483647]; got -1"),
        ({"n_particles": 2.5}, "n_particles must be an integer; got 2.5"),  # not a range
        ({"alpha": float("nan")}, "alpha must be finite; got nan"),
    ],
)
def test_settings_no_cap_can_fix_are_refused_in_the_pages_words(requested, message):
    demo = demo_settings({"POWERSMC_DEMO": "1"})
    with pytest.raises(InputError) as refused:
        Gate(demo).clamp(requested)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("alpha", -1.0),
        ("n_particles", 0),
        ("ess_threshold", 1.5),
        ("alpha_start", 0.0),
        ("ramp_tokens", 0),
        ("target_ess", 0.0),
        ("proposal_temperature", 0.0),
        ("block_size", 0),
        ("max_new_tokens", 0),
        ("seed", -1),
    ],
)
def test_every_smcconfig_range_error_has_the_one_wording(field, value):
    with pytest.raises(ValueError) as err:
        SMCConfig(**{field: value})
    assert str(err.value).startswith(f"{field} must be ")
    assert RANGE.match(str(err.value)), str(err.value)


def test_range_message_forms():
    assert range_message("N", 500, 1, 256) == "N must be in [1, 256]; got 500"
    assert range_message("N", 500, 1, 256, using=256) == "N must be in [1, 256]; got 500; using 256"
    assert range_message("alpha", -1.0, 0, low_open=True) == "alpha must be > 0; got -1"
    assert range_message("B", 0, 1) == "B must be >= 1; got 0"
    assert range_message("x", 0.0, 0, 1, low_open=True) == "x must be in (0, 1]; got 0"
    assert range_message("seed", -1, 0, 2**63 - 1).endswith("9223372036854775807]; got -1")
