"""Live SMC: run Power-SMC and watch the particle system evolve token by token.

Run asks `explorer.gate` for an admitted run (settings clamped to the caps, prompt
encoded) that `LiveSession` keeps in session state; the script iterates it inside the
gate's queue slot and redraws on an adaptive clock. Stop reruns the script: the run is
interrupted at its next redraw, then finished here with every step decoded so far.
A rerun for any other reason (a widget change) resumes the same run.

Nothing of an earlier run stays on screen once a new one starts: its charts and summary
share one slot, replaced by a "Starting run" line until the new run's first step. The
last run is drawn again only when it was made with the sidebar's current model.
"""

import streamlit as st

from explorer import inputs, models, page_kit
from explorer.gate import LimitError, open_gate
from explorer.live_session import LiveSession
from explorer.views import NO_EXACT_TARGET, LiveCharts, run_summary

session = LiveSession(st.session_state)
gate = open_gate(st.session_state)
st.title("Live Power-SMC")
st.caption(
    "N particles decode in one batch from q ∝ p^(1/τ_t); importance weights correct each token "
    "towards p^α_t, and the particles are resampled when the ESS drops below κ·N."
)
st.caption(
    "Target: π_α(y|x) ∝ p(y|x)^α over *complete* continuations y, those that end by EOS, at "
    "max new tokens, or by the stop rule. Under a stop rule the target is the α-power of the "
    "*stopped* law (a stopped y weighs p(y|x)^α), not π_α then cut at the stop: the two are "
    "compared exactly in the Theory lab."
)

model, model_name = page_kit.load_model_or_stop(
    " (the first load of the embedded model takes ~20 s)"
)
toy = models.is_toy(model)
prompt = page_kit.pick_prompt(
    model,
    "live",
    toy_label="Prompt (token prefix of the toy model)",
    toy_note="Known answer (exact mode of π_α for every α > 0)",
    default_text="Write a haiku about particles.",
    modes=True,
)
form = page_kit.live_settings(toy, gate.settings.max_particles, model)

b1, b2, _ = st.columns([1, 1, 6])
run_clicked = b1.button("Run", type="primary", key="live_run", icon=":material/play_arrow:")
stop_clicked = b2.button("Stop", key="live_stop", icon=":material/stop:")
status = st.empty()
# Everything one run draws (charts, exact target, summary) lives in this one slot, so that
# writing it replaces the whole of the previous run at once: nothing of it outlives it.
board = st.empty()

held = session.active  # the run Stop ends: its exact target is drawn with the kept part
if stop_clicked and (stopped := session.stop()) is not None:
    status.info(f"Stopped at step {len(stopped.records)}; the decoded part is kept (see Runs).")
if run_clicked:
    admitted = page_kit.admit(
        gate.live, model, model_name, form.requested, prompt.prompt, prompt.label,
        form.stop_rule, form.stop_strings, reference=prompt.reference, method=form.method,
    )  # fmt: skip
    if admitted is not None:
        session.start(admitted)  # a run in flight is superseded (kept in Runs)

active = session.active
# On a toy model the run's exact target (enumerated once, when cheap) is drawn beside it.
shown = active or (held if stop_clicked else None)
target = shown.live.exact_target() if shown is not None and shown.live else None


def new_charts() -> LiveCharts:
    """The chart slots, laid out in ``board`` (call inside it)."""
    if shown is not None and shown.live and shown.live.toy and target is None:
        st.caption(NO_EXACT_TARGET)
    return LiveCharts(models.token_labeler(model), target, shown.live if shown else None)


if active is not None:
    total = active.config.max_new_tokens
    run = None
    charts: LiveCharts | None = None
    area = None
    if active.live is None or not active.live.records:  # a fresh run: clear the last one now
        slow = "" if toy else " (a language model's first step takes a few seconds)"
        board.info(f"Starting run … the charts appear with its first step{slow}.")
    try:
        # The gate holds a queue slot (one run per visitor), stops at the run-time cap and
        # journals the run (finished, stopped or interrupted by a crash).
        with gate.running(active, page_kit.on_wait(gate, status)) as run:
            for draws, update in enumerate(run.events()):
                rec = update.record
                status.progress(
                    min(1.0, rec.step / total),
                    text=f"step {rec.step}/{total} · ESS {rec.ess:.1f}/{rec.n_particles} · "
                    f"{rec.n_lineages} lineages · {rec.elapsed:.1f} s",
                )
                if charts is None:  # the first record of this script run: lay the charts out
                    area = board.container()
                    with area:
                        charts = new_charts()
                tag = f"{active.live.run_id}_{draws}"
                charts.draw(update.records, active.config.to_dict(), update.kind == "full", tag)
    except LimitError as err:  # busy visitor, full queue or queue timeout: nothing lost
        session.discard()  # a refused request never starts later on its own
        board.empty()
        status.warning(inputs.escape_markdown(err))
        st.stop()
    entry = session.finish()
    if area is None or charts is None:  # no step this script run (a cap before the first)
        area = board.container()
        with area:
            charts = new_charts()
    if run is not None and run.timed_out:
        status.warning(
            f"Stopped at the demo's run-time cap after {inputs.count(len(entry.records), 'step')}; "
            f"the decoded part is kept (run {entry.run_id})."
        )
    else:
        status.success(
            f"Finished: {inputs.count(len(entry.records), 'step')} in {entry.compute_s:.2f} s of sampling "
            f"({entry.result.elapsed:.2f} s with live charts); run {entry.run_id} saved to Runs."
        )
    with area:
        charts.settle(entry, st.session_state, gate.settings.session_max_bytes)  # cap: last step
        if run is not None and run.save_error:
            st.warning(inputs.escape_markdown(run.save_error))
        run_summary(entry)
elif (entry := session.last) is not None and entry.records:
    if entry.model != model_name:  # token ids of another model cannot be named or compared
        board.info(
            f"The last run used model {inputs.escape_markdown(entry.model)}; it is kept in "
            "Runs. Press Run to start one with this model."
        )
    else:
        with board.container():
            charts = new_charts()
            charts.draw_run(entry, st.session_state, gate.settings.session_max_bytes)
            run_summary(entry)
elif session.last is None and not stop_clicked:
    status.info("Choose settings and press Run: charts update live while the particles decode.")
