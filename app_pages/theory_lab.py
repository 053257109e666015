"""Theory lab: exact pi_alpha on enumerable toy models against what the samplers do.

The exact picture needs no sampler; the Monte-Carlo checks run through `explorer.gate`
(budget clamped to the caps, a queue slot while they run).
"""

import streamlit as st

from explorer import figure_cache, models, page_kit, session_memory
from explorer import session_keys as keys
from explorer.gate import InputError, open_gate
from explorer.inputs import MAX_STOP_FIELD_CHARS, escape_markdown
from explorer.theory_lab import (
    CUSTOM_MODEL,
    MAX_THEORY_SIZE,
    THEORY_MODELS,
    check_figures,
    check_theory_model,
    comparison_figure,
    default_stop,
    stop_targets,
)
from powersmc_core import theory
from powersmc_core.plotting.stopped import stopped_law_figure

state = st.session_state
gate = open_gate(state)
st.title("Theory lab")
st.caption(
    "Toy models small enough to enumerate every sequence, so π_α ∝ p^α is known exactly. "
    "The exact picture is drawn at once; Run adds the Monte-Carlo checks (seeded, repeatable)."
)

sidebar_model = state.get(keys.MODEL_NAME)
choices = [*THEORY_MODELS, CUSTOM_MODEL]
c1, c2, c3, c4, c5, c6 = st.columns(6)
name = c1.selectbox(
    "toy model",
    choices,
    index=choices.index(sidebar_model) if sidebar_model in choices else 0,
    key="theory_model",
)
if name == CUSTOM_MODEL:
    name = c1.text_input(
        "toy-random:V,L,seed",
        "toy-random:4,4,3",
        max_chars=40,
        key="theory_custom",
        help=f"V tokens (EOS included) ≤ 8, sequences of at most L ≤ 8 tokens, V**L ≤ "
        f"{MAX_THEORY_SIZE}: every sequence is enumerated",
    )
alpha = c2.number_input("α (power)", value=4.0, step=0.5, key="theory_alpha")
n_particles = c3.number_input("N (estimate)", value=16, step=1, key="theory_n")
runs = c4.number_input("runs per point", value=20, step=5, key="theory_runs")
n_max = c5.number_input("max N (TV sweep)", value=64, step=16, key="theory_n_max")
seed = c6.number_input("seed", value=0, step=1, key="theory_seed")

try:
    name = check_theory_model(name, gate.settings)  # before loading: bounds the enumeration
    model = models.load_cached(name)
    admitted, settings = gate.theory(model, name, alpha, n_particles, runs, n_max, seed)
except InputError as err:
    st.error(f"Invalid settings: {escape_markdown(err)}")
    st.stop()
page_kit.show_notes(admitted.notes)
comparison = theory.power_vs_temperature(model, settings.alpha)


key = (name, settings)
results = state.get(keys.THEORY_LAST, {}).get(key)
if st.button("Run Monte-Carlo checks", type="primary", key="theory_run"):
    ran = page_kit.run_with_status(
        gate,
        admitted,
        "Running the checks…",
        4,
        line=lambda check: f"done: {check.name.replace('_', ' ')}",
        done=lambda n, capped: "Monte-Carlo checks done",
    )
    results = {} if ran is None else {check.name: check.result for check in ran.events}
    if ran is not None and ran.timed_out:
        st.warning(
            f"Stopped at the run-time cap ({gate.settings.max_run_seconds:g} s); "
            "lower the runs per point or max N."
        )
        results = {}
    if results:
        state[keys.THEORY_LAST] = {key: results}

# Figures from the session cache: built once per (model, settings, results drawn); the
# results are pinned with their figures, so id(results) cannot name another run's.
cache = figure_cache.session_cache(state)
room = session_memory.figure_room(state, gate.settings.session_max_bytes)
drawn = (name, settings, id(results) if results else None)
bars = cache.get(
    ("theory_bars", *drawn), lambda: comparison_figure(comparison, settings, results), room, results
)
st.plotly_chart(bars, key="theory_bars")
st.caption(
    f"Bars over the {min(20, len(comparison.labels))} most likely sequences under π_α "
    f"(of {len(comparison.labels)}). Token-level temperature 1/α is the exact law of sampling "
    "each token from p^α renormalised; π_α renormalises whole sequences."
)

st.subheader("Under a stop rule, the target changes")
stop_text = st.text_input(
    "stop strings (comma-separated; exact, no sampling)",
    default_stop(model),
    max_chars=MAX_STOP_FIELD_CHARS,
    key=f"theory_stop_{name}",
)
try:
    targets = stop_targets(model, settings.alpha, stop_text)
except InputError as err:
    st.error(f"Invalid stop strings: {escape_markdown(err)}")
else:
    stopped = cache.get(
        ("theory_stop", name, settings.alpha, stop_text), lambda: stopped_law_figure(targets), room
    )
    st.plotly_chart(stopped, key="theory_stopped")
    st.caption(
        "A particle stopped by the rule is final with weight p(prefix)^α, so Power-SMC and MH "
        "target the α-power of the stopped law P_stop (red), not π_α over completions without "
        f"the rule, then cut where the rule fires (black): TV = {targets.tv:.3f}. Both are "
        "computed exactly by enumeration."
    )
    st.dataframe(targets.frame(), hide_index=True, key="theory_stopped_table")

if results:
    checks = cache.get(("theory_checks", *drawn), lambda: check_figures(results), room, results)
    left, right = st.columns(2)
    left.plotly_chart(checks["tv"], key="theory_tv")
    right.plotly_chart(checks["ess"], key="theory_ess")
    st.plotly_chart(checks["wvar"], key="theory_wvar")
    st.caption(
        "Left to right: mean TV of one run's weighted particle set to π_α against N for every "
        "bridging schedule (log-log, ± 2 s.e. over the runs, dotted: slope −1/2); ESS/N per "
        "token with and without bridging (the ramp spans the toy's length); the variance of the "
        "incremental weight p^α/q_τ over proposal temperatures τ for next-token distributions of "
        "the model, minimal at τ = 1/α (flat where p is uniform on its support)."
    )
else:
    st.info("Press Run for: SMC estimate vs exact, TV vs N, weight variance vs τ, ESS traces.")
st.page_link(
    "app_pages/arena.py", label="Arena: every sampler against the exact π_α at equal forwards"
)
