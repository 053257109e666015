"""What the pages draw from results: live charts, particle table, run summary, comparison.

``LiveCharts`` lays out the chart slots once per script run and redraws them as the
records grow (light redraws skip the heavy charts); ``particle_table`` is the table of
one step's particles (Live SMC and Runs); ``run_summary`` is a finished run's
completion, metrics and answer; ``comparison_results`` is the Compare table and charts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from explorer import answer_view, figure_cache, history, inputs, query, session_memory
from explorer.events import MethodDone
from explorer.history import RunEntry
from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting import live as charts

__all__ = ["LiveCharts", "comparison_results", "particle_table", "run_summary"]


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


class LiveCharts:
    """The Live SMC chart slots (ESS, schedule, weights, heatmap, Rényi, genealogy, table)."""

    def __init__(self, label: Callable[[int], str] | None) -> None:
        self.label = label
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

    def draw(
        self, records: Sequence[StepRecord], config: Mapping[str, Any], heavy: bool, tag: str
    ) -> None:
        """Redraw every slot from ``records``; ``tag`` keeps the chart keys unique per draw."""
        figures = charts.live_figures(
            records, config["ess_threshold"], config["alpha"], self.label, heavy=heavy
        )
        self._show(figures, records, tag)

    def draw_run(self, entry: RunEntry, state: MutableMapping[str, Any], budget: int) -> None:
        """A finished run's charts, built once per (run, steps, labelling) and then served
        from the session's figure cache (a rerun of the page builds none)."""
        cfg = entry.config
        figures = figure_cache.session_cache(state).get(
            ("live", entry.cache_key, len(entry.records), self.label is not None),
            lambda: charts.live_figures(
                entry.records, cfg["ess_threshold"], cfg["alpha"], self.label, heavy=True
            ),
            room=session_memory.figure_room(state, budget),
        )
        self._show(figures, entry.records, f"{entry.run_id}_static")

    def _show(self, figures: Mapping[str, Any], records: Sequence[StepRecord], tag: str) -> None:
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
    "latency [s]": st.column_config.NumberColumn(format="%.3f"),
    "× plain": st.column_config.NumberColumn(format="%.1f×"),
    "tokens/s": st.column_config.NumberColumn(format="%.1f"),
    "log p": st.column_config.NumberColumn(format="%.2f"),
    "log p / token": st.column_config.NumberColumn(format="%.3f"),
}


def comparison_results(frame: pd.DataFrame, runs: Sequence[MethodDone], model_name: str) -> None:
    """The Compare table, log-likelihood per token, and MH's acceptance traces."""
    st.subheader(f"Results on {inputs.escape_markdown(model_name)}")
    st.dataframe(
        frame.drop(columns=["key"]), hide_index=True, column_config=COMPARE_COLUMNS, key="cmp_table"
    )
    left, right = st.columns(2)
    left.plotly_chart(charts.loglik_per_token_figure(frame), key="cmp_loglik")
    traces = {
        f"MH (final acceptance {extras.get('acceptance_rate', float('nan')):.2f})": extras[
            "acceptance_trace"
        ]
        for done in runs
        if done.method == "mh" and (extras := done.result.extras)
    }
    right.plotly_chart(charts.mh_acceptance_figure(traces), key="cmp_mh")
