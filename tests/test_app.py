"""The Streamlit app: its services (explorer), its figures (plotting.live) and every page.

Pages are driven with streamlit.testing's AppTest on the toy models (milliseconds per run).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import comparison, history, inputs, presets
from explorer.gate import Gate, InputError
from explorer.live import LiveRun, Throttle
from explorer.settings import DemoSettings
from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.run import PowerSMC
from powersmc_core.io.trace import TraceError
from powersmc_core.models.loading import load_model
from powersmc_core.plotting import live as charts
from powersmc_core.plotting.style import particle_colors
from powersmc_core.samplers.registry import METHODS, default_methods

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 60


class FakeClock:
    """A clock the test moves by hand (``tick`` per call)."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


FULL = DemoSettings()  # the full app's caps


def toy_run(name: str = "toy-random:3,8,0", tick: float = 0.0, **config) -> LiveRun:
    model = load_model(name)
    cfg = SMCConfig(**{"alpha": 4.0, "n_particles": 8, "max_new_tokens": 8, "seed": 3, **config})
    return LiveRun(model, cfg, [], model_name=name, prompt_label="(empty)", clock=FakeClock(tick))


def toy_admission(name: str = "toy-random:3,8,0"):
    """A Live SMC run admitted by the gate, as the page keeps it in session state."""
    requested = {"alpha": 4.0, "n_particles": 8, "max_new_tokens": 8, "seed": 3}
    return Gate(FULL).live(load_model(name), name, requested, [], "(empty)", "EOS only")


def strip_time(record):
    """A record as comparable JSON (NaN written as "nan"), without its wall-clock field."""
    data = json.loads(record.to_json())
    data.pop("elapsed")
    return data


# ---- throttle and live runs ------------------------------------------------------------
class TestThrottle:
    def test_first_poll_is_full_then_waits_for_intervals(self):
        th = Throttle(light_s=0.25, full_s=1.0, cost_factor=3.0)
        assert th.poll(0.0) == "full"
        th.drawn("full", 0.0, 0.01)
        assert th.poll(0.1) is None
        assert th.poll(0.3) == "light"
        th.drawn("light", 0.3, 0.31)
        assert th.poll(1.02) == "full"

    def test_full_redraws_stay_within_the_time_budget(self):
        th = Throttle(light_s=math.inf, full_s=0.0, cost_factor=0.0, budget=0.2)
        now, spent = 0.0, 0.0
        for _ in range(1000):  # steps of 0.1 s; every redraw costs 0.5 s
            now += 0.1
            kind = th.poll(now)
            if kind is not None:
                th.drawn(kind, now, now + 0.5)
                now += 0.5
                spent += 0.5
        assert spent / now <= 0.2 + 0.5 / now  # the budget, give or take the last redraw
        assert spent > 0.15 * now  # and the budget is used, not starved

    def test_light_redraws_fill_in_while_the_budget_blocks_full_ones(self):
        th = Throttle(light_s=0.25, full_s=1.0, cost_factor=3.0, budget=0.2)
        th.poll(0.0)
        th.drawn("full", 0.0, 1.0)  # 1 s spent: no full redraw before t = 5 s
        assert th.poll(4.0) == "light"
        th.drawn("light", 4.0, 4.01)
        assert th.poll(4.5) == "light"
        assert th.poll(5.1) == "full"

    def test_interval_stretches_to_cost_factor_times_draw_cost(self):
        th = Throttle(light_s=0.25, full_s=1.0, cost_factor=3.0, budget=1.0)
        th.poll(0.0)
        th.drawn("full", 0.0, 2.0)  # a 2 s redraw: wait 6 s before the next full one
        assert th.interval("full") == pytest.approx(6.0)
        assert th.poll(7.9) != "full"
        assert th.poll(8.0) == "full"


class TestLiveRun:
    def test_frozen_clock_draws_first_and_final_only(self):
        run = toy_run(tick=0.0)
        updates = list(run.updates())
        assert run.done and updates[-1].final and updates[-1].kind == "full"
        assert updates[0].kind == "full"
        assert len(updates) == (1 if len(run.records) == 1 else 2)
        assert [r.step for r in run.records] == list(range(1, len(run.records) + 1))

    def test_slow_steps_draw_every_step_and_heavy_charts_less_often(self):
        run = toy_run(tick=1.0)  # every clock reading is 1 s later: slow steps, slow draws
        run.throttle = Throttle(light_s=0.5, full_s=5.0, cost_factor=0.0, budget=1.0)
        kinds = [u.kind for u in run.updates()]
        assert len(kinds) == len(run.records) >= 4
        assert kinds[0] == kinds[-1] == "full"
        assert "light" in kinds[1:-1]

    def test_interrupted_then_stopped_keeps_decoded_steps(self):
        run = toy_run(tick=10.0)
        stream = run.updates()
        next(stream)
        next(stream)
        stream.close()  # what a Streamlit rerun does to the page's loop
        entry = run.finish()
        assert entry.status == "stopped"
        assert [r.step for r in entry.records] == [1, 2]
        assert entry.result is not None and entry.result.n_steps == 2
        assert entry.compute_s is not None and entry.compute_s > 0

    def test_resumed_run_first_redraws_what_it_has(self):
        run = toy_run(tick=0.0)
        first = run.updates()
        next(first)
        first.close()
        resumed = run.updates()
        update = next(resumed)
        assert update.kind == "full" and [r.step for r in update.records] == [1]

    def test_resumed_run_equals_uninterrupted_run(self):
        whole = toy_run(tick=10.0)
        for _ in whole.updates():
            pass
        resumed = toy_run(tick=10.0)
        first = resumed.updates()
        next(first)
        first.close()
        for _ in resumed.updates():
            pass
        assert resumed.finish().status == "finished"
        assert [strip_time(r) for r in resumed.records] == [strip_time(r) for r in whole.records]

    def test_records_match_the_plain_sampler(self):
        run = toy_run()
        for _ in run.updates():
            pass
        plain = list(PowerSMC(run.model, run.config).stream([]))
        assert [strip_time(r) for r in run.records] == [strip_time(r) for r in plain]


# ---- helpers ---------------------------------------------------------------------------
def test_toy_reference_of_the_trap_is_b_x():
    model = load_model("toy-trap")
    assert presets.toy_reference(model, ()) == "B x"
    assert presets.toy_reference(model, (0,)) in {"x", "y", "z"}  # continuation only; a 3-way tie


def test_toy_prefixes_leave_room_to_decode():
    model = load_model("toy-random:4,4,0")  # 3 letters + EOS, sequences of at most 4 tokens
    options = presets.toy_prefix_options(model)
    assert options[0] == () and len(options) == 1 + 3 + 9
    assert len(presets.toy_prefix_options(load_model("toy-random:3,8,0"), max_options=20)) == 20
    assert all(len(p) <= model.max_len - 2 for p in options)


def test_prompt_ids_reject_text_for_toys_and_empty_text_for_llms():
    toy = load_model("toy-trap")
    assert inputs.prompt_ids(toy, (1,), FULL) == [1]
    with pytest.raises(InputError, match="token prefix"):
        inputs.prompt_ids(toy, "hello", FULL)

    class TextModel:
        name = "stub"

        def encode_prompt(self, text, chat=True, max_prompt_tokens=None):
            return [7, len(text)]

    assert inputs.prompt_ids(TextModel(), "hi", FULL) == [7, 2]
    with pytest.raises(InputError, match="empty"):
        inputs.prompt_ids(TextModel(), "   ", FULL)


def test_grade_extracts_boxed_answers_and_compares_toys_exactly():
    assert presets.grade("so the answer is \\boxed{42}.", "42") == ("42", True)
    assert presets.grade("It is 41", "42") == ("41", False)
    assert presets.grade("B x", "B x", toy=True) == ("B x", True)
    assert presets.grade("no number here", None) == (None, None)


def test_make_stop_validates_rules():
    assert inputs.make_stop("EOS only") is None
    assert inputs.make_stop("\\boxed{} answer") is not None
    assert inputs.make_stop("stop strings", "END,\\n\\n") is not None
    with pytest.raises(ValueError, match="at least one"):
        inputs.make_stop("stop strings", " , ")
    with pytest.raises(ValueError, match="stop rule"):
        inputs.make_stop("nonsense")


@pytest.mark.parametrize(("n", "length"), [(0, 8), (4, 0), (4.5, 8)])
def test_gate_refuses_values_no_cap_can_fix(n, length):
    with pytest.raises(InputError):
        Gate(FULL).clamp({"n_particles": n, "max_new_tokens": length})


def test_gate_clamps_to_the_full_app_caps_and_says_so():
    config, notes = Gate(FULL).clamp({"n_particles": FULL.max_particles + 1, "max_new_tokens": 8})
    assert config.n_particles == FULL.max_particles
    assert notes == [
        f"N must be in [1, {FULL.max_particles}]; got {FULL.max_particles + 1}; "
        f"using {FULL.max_particles}"
    ]


def test_particle_table_sorts_by_weight_and_marks_leader_and_finished():
    run = toy_run()
    for _ in run.updates():
        pass
    last = run.records[-1]
    frame = charts.particle_table(last, top_k=50).frame
    assert list(frame["weight"]) == sorted(frame["weight"], reverse=True)
    assert frame["status"].iloc[0].startswith("★ leader")
    assert frame["weight"].sum() == pytest.approx(1.0)
    assert sum("finished" in s for s in frame["status"]) == sum(last.finished)


def test_history_replaces_same_id_and_is_capped():
    state: dict = {}
    entry = toy_run().finish()
    history.remember(state, entry)
    history.remember(state, entry)
    assert len(history.history(state)) == 1
    for _ in range(history.MAX_HISTORY + 3):
        history.remember(state, toy_run().finish())
    assert len(history.history(state)) == history.MAX_HISTORY


def test_trace_download_round_trips_through_upload():
    run = toy_run()
    for _ in run.updates():
        pass
    entry = run.finish()
    text = history.entry_trace_text(entry)
    back = Gate(FULL).upload(text.encode(), "run.jsonl")
    assert back.status == "uploaded" and back.model == entry.model
    assert [strip_time(r) for r in back.records] == [strip_time(r) for r in entry.records]
    original, restored = history.run_summary(entry), history.run_summary(back)
    for key in ("completion", "log p", "log Z-hat", "steps", "chosen particle", "resamples"):
        assert restored[key] == original[key]
    csv = history.entry_summary_csv(entry).splitlines()
    assert len(csv) == 2 and csv[0].startswith("run,status,model")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"not json\n", "line 1: not valid JSON"),
        (b'{"kind": "header", "format": "other"}\n', "not a powersmc-trace"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_uploads_raise_trace_errors(data, message):
    with pytest.raises(TraceError, match=message):
        Gate(FULL).upload(data, "bad.jsonl")


def test_oversized_upload_is_refused_before_parsing():
    with pytest.raises(TraceError, match="upload limit"):
        Gate(FULL).upload(b" " * (FULL.max_upload_bytes + 1), "big.jsonl")


def test_comparison_frame_on_the_trap():
    model = load_model("toy-trap")
    config = SMCConfig(alpha=4.0, n_particles=8, max_new_tokens=4)
    runs = list(
        comparison.compare_runs(model, [], list(comparison.COMPARE_METHODS), config, mh_steps=2)
    )
    frame = comparison.comparison_frame(runs, model, reference="B x")
    assert list(frame["key"]) == list(comparison.COMPARE_METHODS)
    assert frame.loc[frame["key"] == "base", "× plain"].item() == pytest.approx(1.0)
    assert frame["correct"].isin([True, False]).all()
    assert (frame["log p / token"] <= 0).all()
    mh = next(r.result for r in runs if r.method == "mh")
    assert len(mh.extras["acceptance_trace"]) > 0
    with pytest.raises(ValueError, match="unknown methods"):
        list(comparison.compare_runs(model, [], ["nope"], config))


# ---- figures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def records():
    model = load_model("toy-random:3,8,0")
    cfg = SMCConfig(alpha=4.0, n_particles=6, ess_threshold=0.9, max_new_tokens=8, seed=1)
    return list(PowerSMC(model, cfg).stream([]))


def test_every_live_figure_has_title_axes_and_data(records):
    figures = charts.live_figures(records, 0.9, 4.0, str)
    assert set(figures) == {
        "ess",
        "schedule",
        "weights",
        "heatmap",
        "renyi",
        "genealogy",
        "diversity",
    }
    for name, fig in figures.items():
        assert fig.layout.title.text, name
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text, name
        assert any(len(t.x if t.x is not None else []) > 0 for t in fig.data), name
        json.loads(fig.to_json())  # serialisable (no NaN/inf trouble)


def test_figures_use_the_particle_colour_of_each_slot(records):
    n = records[-1].n_particles
    bars = charts.weights_figure(records[-1]).data[0]
    assert list(bars.marker.color) == particle_colors(n)
    # Rényi lines come in one trace per colour (bounded at any N); with N = 6 every
    # particle has its own colour in both panels. Per-particle values and colours in
    # detail: tests/test_plotting_live.py.
    renyi = charts.renyi_figure(records)
    groups = [t for t in renyi.data if t.name and t.name.startswith("particles ≡")]
    assert len(groups) == 2 * n
    assert {t.line.color for t in groups} == set(particle_colors(n))


def test_ess_figure_marks_threshold_and_every_resampling(records):
    fig = charts.ess_figure(records, 0.9)
    events = [r.step for r in records if r.resampled]
    marks = next(t for t in fig.data if t.name.startswith("resampled"))
    assert list(marks.x) == events
    n = records[-1].n_particles
    assert any(math.isclose(s.y0, 0.9 * n) for s in fig.layout.shapes)


def test_genealogy_draws_one_edge_per_slot_and_step(records):
    fig = charts.genealogy_figure(records)
    edges = [t for t in fig.data if t.name in ("extinct lineage", "surviving lineage")]
    n_segments = sum(int(np.isnan(np.asarray(t.x, dtype=float)).sum()) for t in edges)
    assert n_segments == (len(records) - 1) * records[-1].n_particles


def test_empty_records_give_placeholder_figures():
    for fig in charts.live_figures([], 0.5, 4.0).values():
        assert fig.layout.title.text


# ---- pages -----------------------------------------------------------------------------
def test_no_legacy_pages_folder():
    # Streamlit treats a folder named pages/ as a legacy multipage app until st.navigation
    # first runs: a fresh server's first deep link would then run a page without app.py.
    assert not (ROOT / "pages").exists()
    assert (ROOT / "app_pages" / "live_smc.py").is_file()


def app(model: str = "toy-trap", page: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["model_choice"] = model
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    return at


def plain(text: str) -> str:
    """A message as the visitor reads it: ``escape_markdown``'s backslashes removed."""
    return re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\1", str(text))


def live_charts(at: AppTest) -> list:
    """The particle-system charts (the answer posterior's bar chart aside): seven, and on a
    toy model two more, the exact target beside the particles and their TV per step."""
    return [c for c in at.get("plotly_chart") if "answers" not in str(c.key)]


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_home_loads_with_model_picker_and_links():
    at = app()
    no_exception(at)
    assert at.selectbox(key="model_choice").value == "toy-trap"
    assert len(at.get("page_link")) >= 4
    assert len(at.get("plotly_chart")) >= 1
    at.slider(key="home_alpha").set_value(2.0).run()
    no_exception(at)


def test_sidebar_model_picker_drives_the_pages():
    at = app(page="app_pages/live_smc.py")
    assert at.session_state["model_name"] == "toy-trap"
    at.selectbox(key="model_choice").set_value("toy-random:3,8,0").run()
    no_exception(at)
    assert at.session_state["model_name"] == "toy-random:3,8,0"
    assert at.selectbox(key="live_toy_prefix").value == ()
    at.selectbox(key="model_choice").set_value("custom: hub id or local folder").run()
    at.text_input(key="model_custom").input("./no/such/model-folder").run()
    no_exception(at)
    assert any("Could not load model" in plain(e.value) for e in at.error)


LIVE_KEYS = {
    "number_input": [
        "live_alpha",
        "live_n",
        "live_max_tokens",
        "live_seed",
        "live_ramp",
        "live_alpha_start",
        "live_block",
    ],
    "slider": ["live_target_ess", "live_kappa"],
    "selectbox": ["live_toy_prefix", "live_schedule", "live_resampling", "live_stop_rule"],
    "checkbox": ["live_tau_custom"],
    "button": ["live_run", "live_stop"],
}


def test_live_page_widgets_have_stable_keys():
    at = app(page="app_pages/live_smc.py")
    no_exception(at)
    for kind, keys in LIVE_KEYS.items():
        for key in keys:
            assert getattr(at, kind)(key=key) is not None, key


def test_live_run_completes_and_shows_result():
    at = app(page="app_pages/live_smc.py")
    at.button(key="live_run").click().run()
    no_exception(at)
    assert not at.error
    assert len(live_charts(at)) == 9  # toy-trap: seven run charts and the exact-target panel
    assert any("Finished" in s.value for s in at.success)
    labels = {m.label for m in at.metric}
    assert {"log p(y|x)", "log Ẑ", "latency (sampling)"} <= labels
    history = at.session_state["run_history"]
    assert len(history) == 1 and history[0].status == "finished"
    at.run()  # a rerun redraws the last run from session state (and its target panel)
    no_exception(at)
    assert len(live_charts(at)) == 9


def test_live_run_with_bridging_and_custom_tau_warns():
    at = app(model="toy-random:3,8,0", page="app_pages/live_smc.py")
    at.selectbox(key="live_schedule").set_value("linear")
    at.checkbox(key="live_tau_custom").check().run()
    assert any("proposal temperature" in plain(w.value) for w in at.warning)
    at.number_input(key="live_tau").set_value(0.5)
    at.button(key="live_run").click().run()
    no_exception(at)
    assert not at.error
    record = at.session_state["run_history"][0].records[0]
    assert record.tau == 0.5 and record.alpha < 4.0


@pytest.mark.parametrize(
    ("key", "field", "value"),
    [
        ("live_alpha", "alpha", 0.0),
        ("live_alpha", "alpha", -2.0),
        ("live_n", "n_particles", 0),
        ("live_max_tokens", "max_new_tokens", 0),
        ("live_block", "block_size", 0),
        ("live_seed", "seed", -1),
    ],
)
def test_live_widgets_refuse_values_below_their_range(key, field, value):
    # The widgets carry the mode's range (issue 20): a value below it never runs, and the
    # value on screen is the one that runs. The gate still refuses it from a scripted
    # client (test_gate_refuses_values_no_cap_can_fix).
    at = app(page="app_pages/live_smc.py")
    widget = at.number_input(key=key)
    assert widget.min is not None and widget.min > value
    widget.set_value(value)
    at.button(key="live_run").click().run()
    no_exception(at)
    assert not at.error, [plain(e.value) for e in at.error]
    shown = at.number_input(key=key).value
    assert shown >= at.number_input(key=key).min
    assert at.session_state["run_history"][0].config[field] == shown


def test_live_over_the_full_app_cap_is_clamped_with_a_message():
    # A value beyond the widget's range in session state (a scripted client) is clamped
    # before the widget exists, with the gate's wording, and the clamped value runs.
    at = app(page="app_pages/live_smc.py", live_n=100_000)
    cap = FULL.max_particles
    no_exception(at)
    assert at.number_input(key="live_n").max == cap
    assert f"N must be in [1, {cap}]; got 100000; using {cap}" in [
        plain(w.value) for w in at.warning
    ]
    assert at.number_input(key="live_n").value == cap
    at.button(key="live_run").click().run()
    no_exception(at)
    assert at.session_state["run_history"][0].records[0].n_particles == cap


def test_live_stop_before_the_first_token_keeps_nothing():
    at = app(model="toy-random:3,8,0", page="app_pages/live_smc.py")
    at.session_state["live_active"] = toy_admission()  # no step decoded yet
    at.button(key="live_stop").click().run()
    no_exception(at)
    assert any("Stopped at step 0" in i.value for i in at.info)
    assert not history.history(at.session_state)
    at.switch_page("app_pages/runs.py").run()
    no_exception(at)


def test_live_stop_keeps_the_decoded_part():
    at = app(model="toy-random:3,8,0", page="app_pages/live_smc.py")
    half = toy_admission()
    half.live.step()  # a run interrupted after one token, as a Stop click finds it
    at.session_state["live_active"] = half
    at.button(key="live_stop").click().run()
    no_exception(at)
    assert any("Stopped at step 1" in i.value for i in at.info)
    entry = at.session_state["run_history"][0]
    assert entry.run_id == half.live.run_id
    assert entry.status == "stopped" and len(entry.records) == 1
    assert "live_active" not in at.session_state
    assert len(live_charts(at)) == 9  # the kept part is drawn, with its exact target
    at.run()  # a rerun serves the stopped run, its target panel too, from the figure cache
    no_exception(at)
    assert len(live_charts(at)) == 9


def test_live_run_interrupted_by_another_rerun_resumes():
    at = app(model="toy-random:3,8,0", page="app_pages/live_smc.py")
    half = toy_admission()
    half.live.step()
    at.session_state["live_active"] = half
    at.run()  # any rerun that is not Stop continues the same run
    no_exception(at)
    entry = at.session_state["run_history"][0]
    assert entry.run_id == half.live.run_id and entry.status == "finished"
    assert [r.step for r in entry.records] == list(range(1, len(entry.records) + 1))


def test_unknown_model_shows_an_error_on_every_model_page():
    for page in ("app_pages/live_smc.py", "app_pages/compare.py"):
        at = app(
            model="custom: hub id or local folder",
            page=page,
            model_custom="./no/such/model-folder",
        )
        no_exception(at)
        assert any("Could not load model" in plain(e.value) for e in at.error), page


def test_compare_page_runs_every_method_on_a_toy():
    at = app(page="app_pages/compare.py")
    no_exception(at)
    for key in ("cmp_alpha", "cmp_n", "cmp_max_tokens", "cmp_mh_steps", "cmp_seed"):
        assert at.number_input(key=key) is not None
    at.button(key="cmp_run").click().run()
    no_exception(at)
    assert not at.error
    frame = at.dataframe[0].value
    # Every method runs on a toy; the rollout methods (K·M·H forwards a token) are opt-in.
    picker = at.multiselect(key="cmp_methods")
    assert list(picker.options) == [comparison.COMPARE_METHODS[m] for m in METHODS]
    assert picker.value == default_methods() and "lookahead" not in picker.value
    assert len(frame) == len(default_methods()) == len(METHODS) - 2
    # One run per method by default: the headers say so (repeats > 1 shows medians).
    shown = {"latency [s] (one run)", "× plain (one run)", "tokens/s", "log p / token"}
    assert shown | {"answer", "correct"} <= set(frame)
    assert len(at.get("plotly_chart")) == 2


def test_compare_invalid_inputs_show_an_error():
    at = app(page="app_pages/compare.py")
    # α = 0 cannot be entered (the widget carries the mode's range, issue 20); the gate
    # refuses it from a scripted client (test_gate_refuses_values_no_cap_can_fix).
    assert at.number_input(key="cmp_alpha").min == FULL.alpha_min > 0
    at.multiselect(key="cmp_methods").set_value([])
    at.button(key="cmp_run").click().run()
    assert any("unknown methods" in plain(e.value) for e in at.error)


def test_compare_task_mode_grades_a_toy_task_set():
    at = app(page="app_pages/compare.py")
    at.number_input(key="cmp_task_n").set_value(3)
    at.multiselect(key="cmp_methods").set_value(["base", "smc"])
    at.button(key="cmp_task_run").click().run()
    no_exception(at)
    assert not at.error
    summary = next(d.value for d in at.dataframe if "accuracy" in d.value.columns)
    # Every answer rule is offered: smc has a line per rule, base (one sequence) one line.
    assert sorted(summary["method"]) == ["base", "smc", "smc", "smc"]
    assert set(summary["rule"]) == {"chosen", "weighted-vote", "majority-vote"}
    assert (summary["n"] == 3).all()
    assert summary["accuracy"].between(0, 1).all()
    assert at.get("plotly_chart")


def test_compare_task_mode_rejects_bad_sizes():
    at = app(page="app_pages/compare.py")
    at.number_input(key="cmp_task_n").set_value(0)
    at.button(key="cmp_task_run").click().run()
    no_exception(at)
    assert any("problems must be in [1, 50]" in plain(e.value) for e in at.error)


def test_theory_lab_loads_and_runs():
    at = app(page="app_pages/theory_lab.py")
    no_exception(at)
    assert len(at.get("plotly_chart")) >= 1
    assert at.button(key="theory_run") is not None
    at.button(key="theory_run").click().run()
    no_exception(at)
    assert not at.error
    assert len(at.get("plotly_chart")) >= 4


def test_runs_page_empty_then_upload_replay_and_bad_upload():
    at = app(page="app_pages/runs.py")
    no_exception(at)
    assert any("No runs yet" in i.value for i in at.info)
    run = toy_run()
    for _ in run.updates():
        pass
    text = history.entry_trace_text(run.finish()).encode()
    at.file_uploader(key="runs_upload").set_value(("run.jsonl", text, "application/jsonl")).run()
    no_exception(at)
    assert any("Loaded run" in s.value for s in at.success)
    assert len(live_charts(at)) == 7
    slider = at.slider(key="runs_step")
    assert slider.value == len(run.records)
    slider.set_value(1).run()
    no_exception(at)
    assert any("step 1**" in m.value for m in at.markdown)
    assert at.get("download_button")  # trace and summary downloads
    at.file_uploader(key="runs_upload").set_value(
        ("bad.jsonl", b"{broken", "application/jsonl")
    ).run()
    no_exception(at)
    assert any(
        "Could not read bad" in plain(e.value) and "line 1" in plain(e.value) for e in at.error
    )


# ---- Live SMC: the weighted answer posterior (issue 14) ----------------------------------
def _chart_bars(chart) -> tuple[list[str], np.ndarray]:
    """(x, y) of a Plotly bar chart element; y may come as Plotly's base64 typed array."""
    import base64

    (trace,) = json.loads(chart.proto.spec)["data"]
    y = trace["y"]
    if isinstance(y, dict):
        y = np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"]))
    return list(trace["x"]), np.asarray(y, dtype=np.float64)


def test_live_answer_posterior_bars_equal_the_result_posterior():
    from powersmc_core.answers.extract import decide, result_posterior

    at = app(page="app_pages/live_smc.py")
    at.button(key="live_run").click().run()
    no_exception(at)
    entry = at.session_state["live_last"]
    post = result_posterior(entry.result, extractor="exact")  # toys: the whole text
    (chart,) = [c for c in at.get("plotly_chart") if "answer posterior" in c.proto.spec]
    x, y = _chart_bars(chart)
    rows = post.rows()
    assert x == [r["answer"] for r in rows]
    np.testing.assert_allclose(y, [r["probability"] for r in rows])
    for rule in ("majority-vote", "chosen", "weighted-vote"):
        at.selectbox(key="live_answer_rule").set_value(rule).run()
        no_exception(at)
        decided = decide(post, rule)
        assert any(f"Decided answer ({rule}): **{decided}**" in m.value for m in at.markdown)


def test_answer_view_reads_llm_text_by_the_auto_rule():
    from explorer.answer_view import answer_view
    from powersmc_core.engine.records import SMCResult

    texts = ["so \\boxed{7}", "#### 7", "I get 3", "[x](http://e.x) \\boxed{5}"]
    weights = [0.1, 0.2, 0.6, 0.1]
    result = SMCResult(
        completions=[[1]] * 4,
        weights=weights,
        chosen=3,
        log_p=[0.0] * 4,
        log_z=0.0,
        n_resamples=0,
        ess_trace=[],
        finished=[True] * 4,
        n_steps=1,
        elapsed=0.0,
        texts=texts,
    )
    entry = history.RunEntry("r1", "llm", "p", {}, [], result, "finished", reference="7")
    weighted = answer_view(entry, "weighted-vote")
    assert weighted.decided == "3" and weighted.posterior.probability("3") == pytest.approx(0.6)
    assert answer_view(entry, "majority-vote").decided == "7"  # two particles say 7
    assert answer_view(entry, "chosen").decided == "5"
    assert "P̂ = 0.600" in weighted.headline and "known answer: 7" in weighted.headline
    (bar,) = weighted.figure.data
    np.testing.assert_allclose(bar.y, [r["probability"] for r in weighted.posterior.rows()])
    uploaded = history.RunEntry("r2", "llm", "p", {}, [], None, "uploaded")
    assert answer_view(uploaded) is None


# ---- Theory lab: the stopped-law target beside pi_alpha cut (issue 14) ---------------------
def test_theory_lab_shows_the_stopped_law_target_beside_pi_alpha_cut():
    from powersmc_core.engine.stopping import make_stop_rule
    from powersmc_core.theory import stopped_law_targets

    at = app(page="app_pages/theory_lab.py")
    no_exception(at)
    field = at.text_input(key="theory_stop_toy-trap")
    assert field.value == "A"  # the trap's likely first token: the case where the laws differ
    exact = stopped_law_targets(load_model("toy-trap"), 4.0, make_stop_rule(stop_strings=["A"]))
    (table,) = at.dataframe
    shown = table.value
    assert shown["sequence"].tolist() == exact.frame()["sequence"].tolist()
    np.testing.assert_allclose(shown["sampler_target"], exact.frame()["sampler_target"])
    np.testing.assert_allclose(shown["cut_target"], exact.frame()["cut_target"])
    assert exact.tv > 0.5 and any(f"TV = {exact.tv:.3f}" in c.value for c in at.caption)
    too_many = ",".join("x" * 17)  # one string more than the input policy's 16
    for bad, message in (("", "give at least one"), (too_many, "the limit is 16")):
        field.input(bad).run()
        no_exception(at)
        assert any(message in plain(e.value) for e in at.error), bad


def test_live_settings_are_read_from_the_library_knobs():
    from powersmc_core.engine.config import config_knobs

    at = app(model="toy-random:3,8,0", page="app_pages/live_smc.py")
    no_exception(at)
    knobs = config_knobs()
    assert at.number_input(key="live_max_tokens").help == knobs["max_new_tokens"].help
    assert at.number_input(key="live_alpha").help == "Target p^α; α > 1 sharpens."
    assert list(at.selectbox(key="live_resampling").options) == list(knobs["resampling"].choices)
    assert at.selectbox(key="live_resampling").value == "systematic"
    assert list(at.selectbox(key="live_schedule").options) == list(knobs["schedule"].choices)


def test_the_compare_table_shows_the_answer_and_its_verdict_first():
    model = load_model("toy-trap")
    config = SMCConfig(alpha=4.0, n_particles=8, max_new_tokens=4)
    runs = list(comparison.compare_runs(model, [], ["base", "smc"], config, mh_steps=0))
    graded = comparison.comparison_table(comparison.comparison_frame(runs, model, "B x"))
    assert list(graded.columns[:3]) == ["method", "answer", "correct"]
    assert list(graded.columns[-1:]) == ["completion"] and "key" not in graded.columns
    frame = comparison.comparison_frame(runs, model, "B x")
    assert list(graded["correct"]) == ["✓" if c else "✗" for c in frame["correct"]]
    ungraded = comparison.comparison_table(frame.assign(correct=[None, None]))
    assert list(ungraded["correct"]) == ["—", "—"]
