"""What the pages draw from results: live charts, particle table, run summary, comparison.

``LiveCharts`` lays out the chart slots once per script run and redraws them as the
records grow (light redraws skip the heavy charts; ``settle`` draws the last step in
full once the run has ended, whatever ended it); on a toy model it also shows the exact
target beside the particles and their TV per step (``plotting.target``); ``particle_table`` is the table of
one step's particles (Live SMC and Runs); ``run_summary`` is a finished run's
completion, metrics and answer; ``run_comparison`` runs (or resumes) a comparison in a
status box and ``comparison_results`` draws its table, notes and charts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import streamlit as st

from explorer import (
    answer_view,
    comparison,
    figure_cache,
    history,
    inputs,
    query,
    session_memory,
)
from explorer.events import MethodDone
from explorer.history import RunEntry
from explorer.limits import LimitError
from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting import live as charts
from powersmc_core.theory.live_target import MAX_EXACT_PREFIXES, ExactTarget

__all__ = [
    "NO_EXACT_TARGET",
    "LiveCharts",
    "comparison_results",
    "particle_table",
    "run_comparison",
    "run_summary",
]


def particle_table(record: StepRecord, step: int | None = None, fit: bool = False) -> None:
    """The particles of one step (``step``: its number shown, default the record's), sorted
    by weight, with the leader's text (escaped); ``fit`` sizes the table to its rows."""
    table = charts.particle_table(record, top_k=50)
    frame = table.frame
    st.markdown(f"**Particles at step {record.step if step is None else step}**, sorted by weight")
    leader = inputs.escape_markdown(repr(frame["text"][0]))
    st.caption(f"Leader, particle {frame['particle'][0]}: {leader}")
    options = {"height": min(560, 38 + 35 * len(frame))} if fit else {}
    st.dataframe(
        charts.style_particle_table(frame),
        hide_index=True,
        column_config=charts.PARTICLE_COLUMNS,
        **options,
    )
    if table.n_more:
        st.caption(table.more_caption)


NO_EXACT_TARGET = (
    f"No exact-target panel: this toy has more than {MAX_EXACT_PREFIXES:,} prefixes to "
    "enumerate (fewer tokens or a shorter toy bring it back)."
)


class LiveCharts:
    """The Live SMC chart slots (ESS, schedule, weights, heatmap, Rényi, genealogy, table,
    and with an exact ``target`` the exact-target bars and the TV per step)."""

    def __init__(
        self, label: Callable[[int], str] | None, target: ExactTarget | None = None
    ) -> None:
        self.label = label
        self.target = target
        self.drawn: tuple[int, bool] | None = None  # (records, heavy) of the last draw
        row1 = st.columns(2)
        row2 = st.columns(2)
        self.slots = {
            "ess": row1[0].empty(),
            "schedule": row1[1].empty(),
            "weights": row2[0].empty(),
            "heatmap": row2[1].empty(),
            "renyi": st.empty(),
        }
        row4 = st.columns(2)
        self.slots["genealogy"] = row4[0].empty()
        self.table = row4[1].empty()
        self._figures: Mapping[str, Any] | None = None  # the last full draw's figures
        if target is not None:
            self._target_slots()

    def _target_slots(self) -> None:
        # Below the table: laid out here, or at the first target figure of a cached run.
        st.caption(
            "Exact target by enumeration: at step t the weighted particles approximate "
            "γ_t ∝ p(y_1:t)^α_t over the states at t (unfinished prefixes and ended "
            "sequences), and π_α ∝ p(y)^α over complete sequences once the run has ended."
        )
        row5 = st.columns([3, 2])
        self.slots["target"] = row5[0].empty()
        self.slots["target_tv"] = row5[1].empty()

    def draw(
        self, records: Sequence[StepRecord], config: Mapping[str, Any], heavy: bool, tag: str
    ) -> None:
        """Redraw every slot from ``records``; ``tag`` keeps the chart keys unique per draw."""
        figures = charts.live_figures(
            records, config["ess_threshold"], config["alpha"], self.label, heavy=heavy
        )
        if heavy and self.target is not None:  # O(T·(N + states)): with the heavy charts
            figures |= charts.target_figures(self.target, records, self.label)
        self._show(figures, records, tag)
        self.drawn = (len(records), heavy)
        if heavy:
            self._figures = figures

    def settle(self, entry: RunEntry, state: MutableMapping[str, Any], budget: int) -> None:
        """Draw every chart at the run's last step unless the last draw already did, and
        keep that set (exact target included) for ``draw_run`` to serve on a rerun.

        The run-time cap ends a run inside a step, after it was decoded and before it was
        drawn, and a run can end after a light redraw: either way the last step is drawn.
        """
        records = entry.records
        if not records:
            return
        if self.drawn != (len(records), True):
            self.draw(records, entry.config, True, f"{entry.run_id}_end")
        if self.target is not None and self._figures is not None:
            # draw_run's key: a rerun shows this run from the cache, its target panel too
            # (a finished entry holds no prompt ids to enumerate the target again).
            figures = self._figures
            figure_cache.session_cache(state).get(
                self._key(entry), lambda: figures, room=session_memory.figure_room(state, budget)
            )

    def _key(self, entry: RunEntry) -> tuple[Any, ...]:
        return ("live", entry.cache_key, len(entry.records), self.label is not None)

    def draw_run(self, entry: RunEntry, state: MutableMapping[str, Any], budget: int) -> None:
        """A finished run's charts, built once per (run, steps, labelling) and then served
        from the session's figure cache (a rerun of the page builds none); with an exact
        ``target`` (the run just stopped) its panel is built and cached with them."""
        cfg = entry.config

        def build() -> dict[str, Any]:
            figures = charts.live_figures(
                entry.records, cfg["ess_threshold"], cfg["alpha"], self.label, heavy=True
            )
            if self.target is not None:
                figures |= charts.target_figures(self.target, entry.records, self.label)
            return figures

        figures = figure_cache.session_cache(state).get(
            self._key(entry), build, room=session_memory.figure_room(state, budget)
        )
        self._show(figures, entry.records, f"{entry.run_id}_static")

    def _show(self, figures: Mapping[str, Any], records: Sequence[StepRecord], tag: str) -> None:
        if "target" in figures and "target" not in self.slots:
            self._target_slots()
        for name, fig in figures.items():
            self.slots[name].plotly_chart(fig, key=f"live_{name}_{tag}")
        with self.table.container():
            particle_table(records[-1], fit=True)


def run_summary(entry: RunEntry) -> None:
    """A run's share link, chosen completion, metrics and answer view."""
    row = history.run_summary(entry)
    if st.button("Share this run", key="live_share", icon=":material/share:"):
        st.caption("A link to these settings (never your run history): append it to this site.")
        st.code(query.entry_share_link(entry), language=None)
    st.subheader("Chosen completion" + (" (stopped early)" if entry.status == "stopped" else ""))
    st.code(row["completion"] or "(empty)", language=None, wrap_lines=True)
    m = st.columns(6)
    m[0].metric("log p(y|x)", f"{row['log p']:.2f}")
    m[1].metric("log Ẑ", f"{row['log Z-hat']:.2f}")
    m[2].metric("latency (sampling)", f"{row['latency [s]']:.2f} s")
    m[3].metric("tokens/s (per particle)", f"{row['tokens/s']:.1f}")
    m[4].metric("resampling events", row["resamples"])
    expected = inputs.escape_markdown(str(entry.reference), 120)
    if entry.reference and row.get("finished") is False:  # a known answer, but no end
        m[5].metric("answer", "unfinished", "not graded", delta_color="off", delta_arrow="off")
    elif row["correct"] is not None:
        verdict = "✓ correct" if row["correct"] else f"✗ wrong (expected {expected})"
        shown = "(no answer)" if row["answer"] is None else str(row["answer"])
        m[5].metric("answer", shown, verdict, delta_color="off", delta_arrow="off")
    else:
        m[5].metric("min ESS", f"{row['min ESS']:.1f}")
    if answer_view.has_answers(entry):  # free text (no known answer): no answer chart
        rule = st.selectbox(
            "answer rule", answer_view.RULES, 1, answer_view.RULE_LABELS.get, key="live_answer_rule"
        )
        if (view := answer_view.answer_view(entry, rule)) is not None:
            st.markdown(view.headline)
            st.plotly_chart(view.figure, key=f"live_answers_{entry.run_id}")


COMPARE_COLUMNS = {
    **{
        name: st.column_config.NumberColumn(format="%.3f")
        for repeats in (1, 2)
        for name in comparison.latency_columns(repeats)[:1]
    },
    **{
        name: st.column_config.NumberColumn(format="%.1f×")
        for repeats in (1, 2)
        for name in comparison.latency_columns(repeats)[1:]
    },
    "tokens/s": st.column_config.NumberColumn(format="%.1f"),
    "log p": st.column_config.NumberColumn(format="%.2f"),
    "log p / token": st.column_config.NumberColumn(format="%.3f"),
}


def comparison_results(report: comparison.ComparisonReport) -> None:
    """The last comparison: why it ended early (if it did) and what to change, the table
    with how its latencies were measured and the machine's load, log-likelihood per token
    and MH's acceptance."""
    st.subheader(f"Results on {inputs.escape_markdown(report.model)}")
    for note in report.notes():
        st.warning(inputs.escape_markdown(note))
    table = comparison.comparison_table(report.frame, report.repeats)
    columns = {**COMPARE_COLUMNS}
    if report.repeats > 1:  # "latency [s] (median of 3)": whatever the count
        latency = comparison.latency_columns(report.repeats)[0]
        columns[latency] = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(table, hide_index=True, column_config=columns, key="cmp_table")
    st.caption(inputs.escape_markdown(report.timing_note()))
    left, right = st.columns(2)
    left.plotly_chart(charts.loglik_per_token_figure(report.frame), key="cmp_loglik")
    traces, empty = report.mh_traces()
    right.plotly_chart(charts.mh_acceptance_figure(traces, empty), key="cmp_mh")


def run_comparison(
    gate: Any, session: comparison.CompareSession, queue_box: Any
) -> comparison.ComparisonReport | None:
    """Run (or resume) the comparison in flight inside the gate's queue slot, in a status
    box: a line per finished run and, at most every 0.3 s, the run in progress (each such
    redraw is where Streamlit can interrupt the script: Stop). Ends it as the last report.

    A refused request (busy visitor, full queue): one warning, and what had run is kept.
    """
    admitted = session.active
    compared: comparison.Comparison = admitted.compare
    total, repeats = compared.total, compared.repeats

    def line(done: MethodDone) -> str:
        name = comparison.COMPARE_METHODS[done.method]
        round_ = f" (repeat {done.repeat + 1} of {repeats})" if repeats > 1 else ""
        cut = f": {done.cut_label}" if done.cut else ""
        return inputs.escape_markdown(f"{name}{round_}: {done.seconds:.2f} s{cut}")

    def on_wait(position: int, waited: float) -> None:
        queue_box.info(gate.queue_message(position, waited))

    # A fast rerun (any click during the run) starts this script run while the last one
    # is still inside a step: it ends at its next redraw and gives the slot back first.
    compared.wait_idle()
    try:
        with (
            compared.held(),
            st.status("Running the methods…", expanded=True) as box,
            gate.running(admitted, on_wait) as run,
        ):
            queue_box.empty()
            for done in compared.done:  # resumed after a rerun: what already ran
                st.write(line(done))
            bar = st.progress(len(compared.done) / total)
            now = st.empty()
            drawn = [0.0]

            def watch(method: str, repeat: int, steps: int, seconds: float, budget) -> None:
                if time.monotonic() - drawn[0] < 0.3:
                    return
                drawn[0] = time.monotonic()
                share = f" of its {budget:.0f} s share" if budget is not None else ""
                round_ = f", repeat {repeat + 1} of {repeats}" if repeats > 1 else ""
                now.caption(
                    f"{comparison.COMPARE_METHODS[method]}{round_}: step {steps}, "
                    f"{seconds:.1f} s{share}"
                )

            compared.watch = watch  # cleared by ``held`` on the way out
            for done in run.events():
                st.write(line(done))
                bar.progress(min(1.0, len(compared.done) / total))
            now.empty()
            ran = len(compared.done)
            label = f"Ran {ran} of {total} method runs" + (
                " (run-time cap reached)" if run.timed_out else ""
            )
            box.update(label=label, state="complete", expanded=False)
    except LimitError as err:
        session.stop()  # keeps what ran before a resumed request was refused
        queue_box.warning(inputs.escape_markdown(err))
        return None
    return session.finish(run.timed_out)
