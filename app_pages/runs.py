"""Runs: the session's history, downloads, uploads, and a step-by-step replay of any run.

Uploads go through `explorer.gate` (the mode's size cap: 5 MB in demo mode) and
`explorer.replay` (one copy per file, within the session's memory budget); the replay's
figures come from the session's figure cache, built once per (run, step).
"""

from functools import partial

import streamlit as st

from explorer import history, replay, session_memory
from explorer import session_keys as keys
from explorer.gate import TraceError, open_gate
from explorer.inputs import escape_markdown
from explorer.views import particle_table

state = st.session_state
gate = open_gate(state)
st.title("Runs")
st.caption(
    "Every finished or stopped Live SMC run of this session is kept here (newest first, "
    f"at most {history.MAX_HISTORY}). Download a run as a trace (JSON lines: one step record per "
    "line) or its summary (CSV); upload a trace to replay it."
)

# ---- upload ------------------------------------------------------------------------------
upload = st.file_uploader(
    f"Upload a trace (.jsonl, at most {gate.max_upload_mb} MB)",
    type=["jsonl", "json", "txt"],
    key="runs_upload",
    max_upload_size=gate.max_upload_mb,
)
if upload is not None:
    token = (upload.name, upload.size, getattr(upload, "file_id", None))
    last = state.get(keys.RUNS_LAST_UPLOAD)
    if last is not None and last[0] == token:  # reruns keep the file: read it once
        if last[1]:
            st.error(last[1])  # a refused file stays refused without being parsed again
    else:
        problem = None
        try:
            imported = replay.import_upload(gate, state, upload, upload.name)
        except session_memory.SessionFull as err:
            problem = escape_markdown(err)
        except TraceError as err:
            problem = f"Could not read {escape_markdown(upload.name)}: {escape_markdown(err)}"
        else:
            entry = imported.entry
            state[keys.RUNS_SELECT] = entry.run_id
            st.success(
                f"Loaded {escape_markdown(upload.name)}: {len(entry.records)} steps, "
                f"N = {entry.records[0].n_particles}."
                + ("" if imported.fresh else " (the same file was already loaded: one copy kept)")
            )
        state[keys.RUNS_LAST_UPLOAD] = (token, problem)
        if problem:
            st.error(problem)

# ---- runs saved on the server by earlier visits (reload, restart, crash) ----------------
if state.get(keys.OWNER) and not state.get(keys.RUNS_RESTORED):
    state[keys.RUNS_RESTORED] = True  # once per session: later runs are remembered live
    for entry, problem in gate.stored_runs(skip={e.run_id for e in history.history(state)}):
        if problem is not None:  # removed meanwhile, or damaged on disk
            st.warning(escape_markdown(problem))
        else:
            history.remember(state, entry, gate.settings.session_max_bytes)

if state.get(keys.OWNER):
    with st.expander("Keep this run history (after a reload or a restart)"):
        st.caption(
            "Your runs are saved under a private key. Bookmark this link to find them again; "
            "opening it asks you to confirm. Anyone holding it can read these runs: do not "
            "share it (use Share this run on the Live SMC page instead)."
        )
        st.code(f"?owner={state[keys.OWNER]}", language=None)

for notice in session_memory.pop_notices(state):  # told once, on the next visit here
    st.warning(escape_markdown(notice))
runs = history.history(state)
if not runs:
    st.info("No runs yet: press Run on the Live SMC page, or upload a trace above.")
    st.stop()

st.dataframe(history.summary_frame(runs), hide_index=True, key="runs_table")

# ---- one run -----------------------------------------------------------------------------
by_id = {e.run_id: e for e in runs}
if state.get(keys.RUNS_SELECT) not in by_id:
    state[keys.RUNS_SELECT] = runs[0].run_id
run_id = st.selectbox(
    "Run", list(by_id), format_func=lambda r: by_id[r].label, key=keys.RUNS_SELECT
)
entry = by_id[run_id]

c1, c2 = st.columns(2)
# Callables: the files are written on click, not on every rerun (1.7 s for 100,000 cells).
c1.download_button(
    "Download trace (.jsonl)",
    partial(history.entry_trace_text, entry),
    file_name=f"powersmc-{entry.run_id}.jsonl",
    mime="application/jsonl",
    key="runs_download_trace",
    icon=":material/download:",
)
c2.download_button(
    "Download summary (.csv)",
    partial(history.entry_summary_csv, entry),
    file_name=f"powersmc-{entry.run_id}-summary.csv",
    mime="text/csv",
    key="runs_download_csv",
    icon=":material/table:",
)

records = entry.records
n_steps = len(records)
step = st.slider(
    "Replay: token index", 1, max(2, n_steps), n_steps, key="runs_step", disabled=n_steps < 2
)
step = min(step, n_steps)
shown = records[:step]
figures = replay.replay_figures(state, entry, step, gate.settings.session_max_bytes)
left, right = st.columns(2)
for i, name in enumerate(("ess", "schedule", "weights", "heatmap")):
    (left if i % 2 == 0 else right).plotly_chart(figures[name], key=f"runs_{name}")
st.plotly_chart(figures["renyi"], key="runs_renyi")
left, right = st.columns(2)
left.plotly_chart(figures["genealogy"], key="runs_genealogy")
right.plotly_chart(figures["diversity"], key="runs_diversity")
particle_table(shown[-1], step=step, records=shown)
