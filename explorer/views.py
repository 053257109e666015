"""What the pages draw from results: live charts, particle table, run summary, comparison.

``LiveCharts`` lays out the chart slots once per script run and redraws them as the
records grow (light redraws skip the heavy charts; ``settle`` draws the last step in
full once the run has ended, whatever ended it); on a toy model it also shows the exact
target beside the particles and their TV per step (``plotting.target``); ``particle_table`` is the table of
one step's particles (Live SMC and Runs); ``run_summary`` is a finished run's
completion, metrics and answer (``share_box`` its full share link); ``replay_section`` is
the Runs page's replay of a run: Play / Pause (at most ``replay.MAX_PLAY_FRAMES``
frames, only the light charts while playing), the step's metrics and leader text, the
charts and particle table; ``run_comparison`` runs (or resumes) a comparison in a status
box and ``comparison_results`` draws its table, notes and charts.
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
    replay,
    session_memory,
)
from explorer.events import MethodDone
from explorer.history import RunEntry
from explorer.limits import LimitError
from powersmc_core.engine import genealogy
from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting import live as charts
from powersmc_core.plotting.lookahead import (
    boundary_title,
    lookahead_boundaries,
    lookahead_figure,
)
from powersmc_core.theory.live_target import MAX_EXACT_PREFIXES, ExactTarget

__all__ = [
    "EXPLAIN",
    "NO_EXACT_TARGET",
    "LiveCharts",
    "comparison_results",
    "particle_table",
    "replay_section",
    "run_comparison",
    "run_summary",
    "share_box",
]


# What each chart and word means, said where it is shown (captions and help icons). The
# maths is the engine's: log Ẑ is ``engine.step.reweight_state``'s running sum, the chosen
# particle ``engine.choosers``' draw.
EXPLAIN: dict[str, str] = {
    "lookahead": (
        "At each block boundary look-ahead SMC scores every particle's next tokens v by "
        "ψ(v) = p(v)^α·ζ̂(v). ζ̂(v) estimates the **future power mass** behind v: the mean "
        "over M rollouts of depth H (drawn from q ∝ p^α) of their importance weights "
        "Π p(c)^α/q(c), so a token whose continuations are confident gains mass (log ζ̂ > 0) "
        "and EOS has ζ = 1 (log ζ̂ = 0). Bars: each particle's top 3 candidates by ψ, length "
        "log ζ̂, labelled by token. Offspring: how many particles continue it after the "
        "resampling on Wᵢ·Σ_v ψᵢ(v) (0: dropped, 2+: copied; 1 each when not resampled). "
        "The first 16 particles are shown."
    ),
    "ess": (
        "ESS = 1/Σᵢ Wᵢ²: how many equally weighted particles the weighted set is worth "
        "(N at uniform weights, 1 when one particle holds all the weight). ✕ marks a "
        "resampling: below κ·N the particles are redrawn by weight and the weights reset "
        "to 1/N (chopthin instead keeps unequal weights within a ratio η)."
    ),
    "schedule": (
        "α_t: the exponent of the intermediate target p(y₁:t)^α_t (constant α, or bridged "
        "up to α); τ_t: the temperature of the proposal q ∝ p^(1/τ_t) that draws each token."
    ),
    "weights": (
        "Wᵢ of each particle at the step drawn. **Hatched bars are finished particles** "
        "(EOS or a stop rule): they append nothing more and keep their weight. "
        f"Above {charts.WEIGHT_BARS} particles: the {charts.WEIGHT_BARS} heaviest (labelled "
        "#slot) and, in the narrow panel on the right, one grey bar: the total weight of "
        "all the others."
    ),
    "heatmap": (
        "log(N·Wᵢ) per particle and step, before resampling: 0 is the uniform weight 1/N, "
        "negative is lighter than uniform."
    ),
    "renyi": (
        "Left: the Rényi entropy H_α_t(p(·|prefixᵢ)) of each particle's next-token "
        "distribution (band: min–max over particles; black: their mean). Right: each "
        "particle's log incremental weight log Gᵢ. With τ_t = 1/α_t, log Gᵢ = (1−α_t)·Hᵢ "
        "exactly, so the spread of the weights (blue dotted, std over particles of log G) "
        "equals |1−α_t|·std H (red dashed): prefixes whose next token is more certain gain "
        "weight. The two part when τ_t ≠ 1/α_t or α_t is bridged."
    ),
    "genealogy": (
        "Each line joins a particle to its parent at the previous step; red dotted "
        "verticals mark resampling. Dark: lineages with a descendant now; faint: extinct. "
        f"Above {charts.GENEALOGY_LINES} particles only the ancestry of the "
        f"{charts.GENEALOGY_LINES} heaviest particles at the last step is drawn."
    ),
    "diversity": (
        "Lineages: initial particles that still have descendants (after resampling). "
        "Distinct sequences: different token sequences among the N particles, copies made "
        "by resampling counted once. Distinct texts: the same for the decoded texts, only at "
        "steps whose texts were stored (a saved run may keep them every few steps)."
    ),
    "leader": (
        "★ leader: the text with the largest total weight (Σ Wᵢ over its copies) at this "
        "step. It is not necessarily the run's chosen completion."
    ),
    "chosen": (
        "Chosen completion: the one particle the run returns, drawn at the end with "
        "probability equal to its weight Wᵢ (best-of-N instead takes the largest log p). "
        "A random draw: it can differ from the leader."
    ),
    "log_z": (
        "log Ẑ = Σ_t log Σᵢ W_{t−1,i}·G_{t,i}, the running sum of the log weighted-mean "
        "incremental weight: the SMC estimate of log Z_α, Z_α = Σ_y p(y|x)^α over complete "
        "continuations y. With a fixed schedule Ẑ is unbiased for Z_α; log Ẑ is biased low "
        "(Jensen), more so with few particles. Z_α ≤ 1 when α ≥ 1, so log Z_α ≤ 0."
    ),
    "vote": (
        "The vote: answers are read from finished particles only (the others form the "
        "“(unfinished)” bucket). An answer's vote share is the fraction of the N particles "
        "giving it, weights ignored (the majority vote picks the largest); its weighted "
        "mass P̂ = Σᵢ Wᵢ over those particles estimates its probability under π_α (the "
        "weighted vote picks the largest)."
    ),
}


def particle_table(
    record: StepRecord,
    step: int | None = None,
    fit: bool = False,
    records: Sequence[StepRecord] | None = None,
) -> None:
    """The particles of one step grouped by identical text, heaviest first (``step``: its
    number shown, default the record's), the leader's text escaped; ``fit`` sizes the
    table to its rows. Without stored texts and with the ``records`` up to ``record``,
    rows group identical token sequences; without either, one row per particle."""
    keys = None
    if record.texts is None and records and records[-1] is record:
        keys = genealogy.sequence_classes(records)[-1]
    table = charts.grouped_table(record, top_k=TABLE_ROWS, keys=keys)
    frame = table.frame
    what = "text" if record.texts is not None else "sequence" if keys is not None else "particle"
    st.markdown(
        f"**Particles at step {record.step if step is None else step}**, one row per "
        f"distinct {what} ({table.n_groups:,} among {record.n_particles:,}), heaviest first",
        help=EXPLAIN["leader"],
    )
    if record.texts is None:
        st.caption("No texts stored at this step (saved runs keep them every few steps).")
    leader = inputs.escape_markdown(repr(frame["text"][0]))
    copies = int(frame["copies"][0])
    st.caption(
        f"★ Leader (weight {frame['weight'][0]:.3f}, {copies:,} "
        f"{'copy' if copies == 1 else 'copies'}): {leader}"
    )
    options = {"height": min(560, 38 + 35 * len(frame))} if fit else {}
    st.dataframe(
        charts.style_particle_table(frame),
        hide_index=True,
        column_config=charts.GROUP_COLUMNS,
        **options,
    )
    if table.n_more:
        st.caption(table.more_caption)
    st.caption(
        f"particle: the heaviest copy's slot (its colour in the charts) · copies: particles "
        f"with this {what} · weight: their total W · lineages: distinct initial particles "
        "among them."
    )
    with st.expander("What log Ẑ, the chosen completion, the leader and the vote mean"):
        for name in ("log_z", "chosen", "leader", "vote"):
            st.markdown(EXPLAIN[name])


TABLE_ROWS = 12  # groups shown; the rest are summed in one "and M more texts" line


NO_EXACT_TARGET = (
    f"No exact-target panel: this toy has more than {MAX_EXACT_PREFIXES:,} prefixes to "
    "enumerate (fewer tokens or a shorter toy bring it back)."
)


class LiveCharts:
    """The Live SMC chart slots (ESS, schedule, weights, heatmap, Rényi, genealogy,
    diversity, table, and with an exact ``target`` the exact-target bars and the TV per
    step), each chart with its caption saying what it shows."""

    live: Any = None  # a look-ahead ``LiveRun`` in flight (class default: none)

    def __init__(
        self,
        label: Callable[[int], str] | None,
        target: ExactTarget | None = None,
        live: Any = None,
    ) -> None:
        self.label = label
        self.target = target
        # A look-ahead run in flight (``LiveRun``): its boundaries are drawn at full redraws.
        self.live = live
        self.drawn: tuple[int, bool] | None = None  # (records, heavy) of the last draw
        self.slots: dict[str, Any] = {}
        # Laid out once per script run; each draw fills a slot with its chart and caption
        # (nothing shows before the first draw).
        rows = (("ess", "schedule"), ("weights", "heatmap"), ("renyi",), ("genealogy", "diversity"))
        for row in rows:
            for name, column in zip(row, st.columns(len(row)), strict=True):
                self.slots[name] = column.empty()
        self.table = st.empty()
        self._figures: Mapping[str, Any] | None = None  # the last full draw's figures
        if target is not None:
            self._target_slots()
        self.slots["lookahead"] = st.empty()

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
            boundaries = self.live.boundaries() if self.live is not None else None
            if boundaries:  # while streaming: the last boundary, read from the run itself
                self._lookahead(boundaries, tag, streaming=True)

    def _lookahead(self, boundaries: Sequence[Any], tag: str, streaming: bool = False) -> None:
        """Look-ahead SMC's boundaries: the last one while streaming, any one afterwards."""
        with self.slots["lookahead"].container():
            index = len(boundaries) - 1
            if not streaming and len(boundaries) > 1:
                index = st.select_slider(
                    "look-ahead boundary",
                    options=list(range(len(boundaries))),
                    value=index,
                    format_func=lambda i: boundary_title(boundaries[i]),
                    key=f"live_lookahead_{tag}",
                )
            st.plotly_chart(
                lookahead_figure(boundaries, index, self.label), key=f"live_lookahead_fig_{tag}"
            )
            when = (
                "Drawn at every full redraw while the run streams: the last boundary so far."
                if streaming
                else "After the run: the slider picks any boundary."
            )
            st.caption(f"{EXPLAIN['lookahead']} {when}")

    def _entry_lookahead(self, entry: RunEntry) -> None:
        boundaries = lookahead_boundaries(entry.result.extras if entry.result else None)
        if boundaries and "lookahead" in getattr(self, "slots", {}):
            self._lookahead(boundaries, entry.run_id)

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
        self._entry_lookahead(entry)

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
        self._entry_lookahead(entry)

    def _show(self, figures: Mapping[str, Any], records: Sequence[StepRecord], tag: str) -> None:
        if "target" in figures and "target" not in self.slots:
            self._target_slots()
        for name, fig in figures.items():
            with self.slots[name].container():
                st.plotly_chart(fig, key=f"live_{name}_{tag}")
                if name in EXPLAIN:
                    st.caption(EXPLAIN[name])
        with self.table.container():
            particle_table(records[-1], fit=True, records=records)


def share_box(entry: RunEntry) -> None:
    """The run's share link: a full URL on this server (``POWERSMC_PUBLIC_URL`` or the
    browser's address), relative only when neither is known; never the owner token."""
    try:
        browser_url = st.context.url
    except (AttributeError, RuntimeError):  # no browser context (a test harness)
        browser_url = None
    base = query.page_base(browser_url)
    if base is None:
        st.caption("A link to these settings (never your run history): append it to this site.")
    else:
        st.caption("A link to these settings, preset, stop rule and backend (never your runs).")
    st.code(query.entry_share_link(entry, base), language=None)


def run_summary(entry: RunEntry) -> None:
    """A run's share link, chosen completion, metrics and answer view."""
    row = history.run_summary(entry)
    if st.button("Share this run", key="live_share", icon=":material/share:"):
        share_box(entry)
    st.caption(inputs.escape_markdown(history.context_line(entry)))
    st.caption(inputs.escape_markdown(history.settings_line(entry)))
    st.subheader(
        "Chosen completion" + (" (stopped early)" if entry.status == "stopped" else ""),
        help=EXPLAIN["chosen"],
    )
    st.code(row["completion"] or "(empty)", language=None, wrap_lines=True)
    m = st.columns(6)
    m[0].metric("log p(y|x)", f"{row['log p']:.2f}")
    m[1].metric("log Ẑ", f"{row['log Z-hat']:.2f}", help=EXPLAIN["log_z"])
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
    "token forwards": st.column_config.NumberColumn(
        format="%d", help="Tokens pushed through the model: prompt once, rollouts included"
    ),
    "× Power-SMC forwards": st.column_config.NumberColumn(
        format="%.2f×", help="Token forwards over Power-SMC's in this comparison"
    ),
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


# ---- Runs: the replay of one run (Play / Pause, the step's metrics and text) -----------
def _replay_controls(state: MutableMapping[str, Any], entry: RunEntry, n_steps: int) -> bool:
    """Play / Pause buttons; True while this entry plays."""
    if state.get(replay.PLAYING) not in (None, entry.run_id):  # another run selected: stop
        state.pop(replay.PLAYING, None)
        state.pop(replay.NEXT_STEP, None)
    b1, b2, _ = st.columns([1, 1, 6])
    play = b1.button("Play", key="runs_play", icon=":material/play_arrow:", disabled=n_steps < 2)
    pause = b2.button("Pause", key="runs_pause", icon=":material/pause:")
    if pause:
        state.pop(replay.PLAYING, None)
        state.pop(replay.NEXT_STEP, None)
    elif play:
        state[replay.PLAYING] = entry.run_id
        if state.get(replay.STEP, n_steps) >= n_steps:  # at the end: play from the start
            state[replay.NEXT_STEP] = 1
    if replay.NEXT_STEP in state:
        state[replay.STEP] = min(max(1, int(state.pop(replay.NEXT_STEP))), max(2, n_steps))
    return state.get(replay.PLAYING) == entry.run_id and n_steps >= 2


def _step_metrics(view: replay.StepView) -> None:
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
    playing = _replay_controls(state, entry, n_steps)
    if replay.STEP in state and not 1 <= state[replay.STEP] <= max(2, n_steps):
        state[replay.STEP] = n_steps  # left by a longer run
    # A value set through session state is the slider's; a default beside it would warn.
    default = {} if replay.STEP in state else {"value": n_steps}
    step = st.slider(
        "Replay: token index", 1, max(2, n_steps), key=replay.STEP, disabled=n_steps < 2, **default
    )
    step = min(step, n_steps)
    view = replay.step_view(entry, step)
    st.subheader(f"Step {view.step} of {records[-1].step}")
    _step_metrics(view)
    figures = replay.replay_figures(state, entry, step, budget, heavy=not playing)
    left, right = st.columns(2)
    for i, name in enumerate(("ess", "schedule", "weights", "heatmap")):
        if name in figures:
            (left if i % 2 == 0 else right).plotly_chart(figures[name], key=f"runs_{name}")
    if "renyi" in figures:
        st.plotly_chart(figures["renyi"], key="runs_renyi")
        left, right = st.columns(2)
        left.plotly_chart(figures["genealogy"], key="runs_genealogy")
        right.plotly_chart(figures["diversity"], key="runs_diversity")
        particle_table(records[step - 1], step=step, records=records[:step])
    else:
        st.caption("Playing: the heatmap, genealogy and particle table return on Pause.")
    if playing:
        following = replay.next_frame(step, n_steps)
        if following is None:
            state.pop(replay.PLAYING, None)  # the last frame stays; its heavy charts next run
            st.rerun()
        time.sleep(replay.PLAY_FRAME_S)  # the frame rate; a Pause click lands between frames
        state[replay.NEXT_STEP] = following
        st.rerun()
