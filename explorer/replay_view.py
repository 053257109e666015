"""The Runs page's replay of one run: a step slider, Play / Pause, the step's metrics,
the leader's text at that step, the charts and the particle table.

Play advances one frame per script run (``replay.next_frame``: at most
``replay.MAX_PLAY_FRAMES`` frames, ``replay.PLAY_FRAME_S`` apart) and draws only the
light charts while playing; Pause, the end of the run or another run selected stops
it, and the heavy charts come back at the step shown. The slider's value cannot be
written once the slider is drawn, so the next frame is parked under ``NEXT_STEP`` and
applied before the slider on the next run.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

import streamlit as st

from explorer import replay
from explorer.history import RunEntry
from explorer.views import particle_table

__all__ = ["NEXT_STEP", "PLAYING", "STEP", "replay_section"]

STEP = "runs_step"  # the replay slider's widget key
PLAYING = "runs_playing"  # the run id of the entry being played, if any
NEXT_STEP = "runs_next_step"  # the frame Play shows next (applied before the slider)


def _controls(state: MutableMapping[str, Any], entry: RunEntry, n_steps: int) -> bool:
    """Play / Pause buttons; True while this entry plays."""
    if state.get(PLAYING) not in (None, entry.run_id):  # another run was selected: stop
        state.pop(PLAYING, None)
        state.pop(NEXT_STEP, None)
    b1, b2, _ = st.columns([1, 1, 6])
    play = b1.button("Play", key="runs_play", icon=":material/play_arrow:", disabled=n_steps < 2)
    pause = b2.button("Pause", key="runs_pause", icon=":material/pause:")
    if pause:
        state.pop(PLAYING, None)
        state.pop(NEXT_STEP, None)
    elif play:
        state[PLAYING] = entry.run_id
        if state.get(STEP, n_steps) >= n_steps:  # at the end: play from the start
            state[NEXT_STEP] = 1
    if NEXT_STEP in state:
        state[STEP] = min(max(1, int(state.pop(NEXT_STEP))), max(2, n_steps))
    return state.get(PLAYING) == entry.run_id and n_steps >= 2


def _metrics(view: replay.StepView) -> None:
    m = st.columns(6)
    m[0].metric("ESS", f"{view.ess:.1f} / {view.n_particles}")
    m[1].metric("log Ẑ so far", f"{view.log_z:.3f}")
    m[2].metric("lineages", view.lineages)
    m[3].metric("resampled", "yes" if view.resampled else "no")
    m[4].metric("α_t", f"{view.alpha:.3g}")
    m[5].metric("τ", f"{view.tau:.3g}")
    done = " (finished)" if view.finished else ""
    st.caption(f"Particle {view.leader}{done}: {view.note}.")
    # A code block shows the text as it is: nothing in it is read as Markdown or HTML.
    st.code(view.text if view.text else "(no text)", language=None, wrap_lines=True)


def replay_section(state: MutableMapping[str, Any], entry: RunEntry, budget: int) -> None:
    """The replay of ``entry``: controls, slider, metrics and text, charts, table."""
    records = entry.records
    n_steps = len(records)
    playing = _controls(state, entry, n_steps)
    if STEP in state and not 1 <= state[STEP] <= max(2, n_steps):  # from a longer run
        state[STEP] = n_steps
    # A value set through session state is the slider's; a default beside it would warn.
    default = {} if STEP in state else {"value": n_steps}
    step = st.slider(
        "Replay: token index", 1, max(2, n_steps), key=STEP, disabled=n_steps < 2, **default
    )
    step = min(step, n_steps)
    view = replay.step_view(entry, step)
    st.subheader(f"Step {view.step} of {records[-1].step}")
    _metrics(view)
    figures = replay.replay_figures(state, entry, step, budget, heavy=not playing)
    left, right = st.columns(2)
    for i, name in enumerate(("ess", "schedule", "weights", "heatmap")):
        if name in figures:
            (left if i % 2 == 0 else right).plotly_chart(figures[name], key=f"runs_{name}")
    if "renyi" in figures:
        st.plotly_chart(figures["renyi"], key="runs_renyi")
        left, right = st.columns(2)
        left.plotly_chart(figures["genealogy"], key="runs_genealogy")
        with right:
            particle_table(records[step - 1], step=step)
    else:
        st.caption("Playing: the heatmap, genealogy and particle table return on Pause.")
    if playing:
        following = replay.next_frame(step, n_steps)
        if following is None:
            state.pop(PLAYING, None)  # the last frame stays on screen, heavy charts next run
            st.rerun()
        time.sleep(replay.PLAY_FRAME_S)  # the frame rate; a Pause click lands between frames
        state[NEXT_STEP] = following
        st.rerun()
