"""Arena: every registered sampler against the exact pi_alpha on toy suites, at equal forwards.

The work runs through `explorer.gate` (runs, N and MH steps clamped to the caps, a queue
slot, the run-time cap checked after every sampler run), with a progress bar.
"""

import streamlit as st

from explorer import page_kit
from explorer import session_keys as keys
from explorer.gate import InputError, LimitError, open_gate
from explorer.inputs import escape_markdown
from explorer.theory_lab import ARENA_SUITES, arena_methods, arena_result
from powersmc_core.plotting.arena import METRICS, arena_figure

state = st.session_state
gate = open_gate(state)
st.title("Arena")
st.caption(
    "Every registered sampler on enumerable toy tables: the error of what it returns to the "
    "exact π_α ∝ p^α, against its compute in token forwards (model rows evaluated). Equal "
    "compute is equal forwards; the table reads every method at the forwards of Power-SMC "
    "with N = 32 and at 4×. A method registered in `samplers.registry` appears here by itself."
)

c1, c2 = st.columns(2)
suites = c1.multiselect("suites", ARENA_SUITES, default=list(ARENA_SUITES), key="arena_suites")
methods = c2.multiselect("methods", arena_methods(), default=arena_methods(), key="arena_methods")
c3, c4, c5, c6 = st.columns(4)
runs = c3.number_input("runs per point", value=10, step=5, key="arena_runs")
n_max = c4.number_input("largest N", value=32, step=16, key="arena_n_max")
alpha = c5.number_input("α (power)", value=4.0, step=0.5, key="arena_alpha")
seed = c6.number_input("seed", value=0, step=1, key="arena_seed")
metric = st.radio(
    "error shown",
    list(METRICS),
    format_func=lambda m: METRICS[m][2],
    horizontal=True,
    key="arena_metric",
)

try:
    admitted, settings = gate.arena(suites, methods, runs, n_max, alpha, seed)
except InputError as err:
    st.error(f"Invalid settings: {escape_markdown(err)}")
    st.stop()
page_kit.show_notes(admitted.notes)

result = state.get(keys.ARENA_LAST, {}).get(settings)
if st.button("Run the arena", type="primary", key="arena_run"):
    events: list = []
    queue_box = st.empty()
    try:
        with (
            st.status("Running the arena…", expanded=True) as box,
            gate.running(admitted, page_kit.on_wait(gate, queue_box)) as run,
        ):
            bar = st.progress(0.0, text="starting")
            for event in run.events():
                events.append(event)
                done, total = event.result.done, event.result.total
                bar.progress(done / total, text=escape_markdown(f"{done}/{total}: {event.name}"))
            box.update(label=f"Arena: {len(events)} cells", state="complete", expanded=False)
    except LimitError as err:
        st.warning(escape_markdown(err))
    else:
        if run.timed_out:
            st.warning(
                f"Stopped at the run-time cap ({gate.settings.max_run_seconds:g} s): the "
                "cells done so far are shown; lower the runs, the largest N or the suites."
            )
        result = arena_result(settings, events)
        state[keys.ARENA_LAST] = {settings: result}

if result is None:
    st.info("Press Run: each cell is `runs` seeded runs of one method at one budget on one toy.")
    st.stop()
for skip in result.skipped:
    st.warning(escape_markdown(f"{skip['method']} skipped on {skip['model']}: {skip['reason']}"))
st.plotly_chart(arena_figure(result.frame, metric), key="arena_figure")
st.caption(
    "One panel per toy, one line per method (Power-SMC once per schedule), ± 2 s.e. over the "
    "runs. Weighted methods are scored by their weighted particles Σ W δ_y; best-of-N by the "
    "one sample it returns. The rare-branch error is |mean mass behind the pivot token − "
    "exact| (pivotal tables: the rare first token; the trap: B)."
)
st.subheader("At matched forwards (Power-SMC N = 32, and 4×)")
st.dataframe(result.matched().round(4), hide_index=True, key="arena_matched")
with st.expander("every cell"):
    st.dataframe(result.frame.round(4), hide_index=True, key="arena_rows")
st.download_button(
    "Download the arena (CSV)",
    result.frame.to_csv(index=False),
    file_name="arena.csv",
    mime="text/csv",
    key="arena_csv",
)
