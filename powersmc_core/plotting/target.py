"""The exact target beside the particles' weighted estimate (enumerable models only).

``target_figures`` draws, from the records and a ``theory.live_target.ExactTarget``:

- ``target``: at the last record, grouped bars of the exact gamma_t (pi_alpha once the
  run has ended) and of sum_i W_i [state_i = s], for the ``top_k`` states by the larger
  of the two, plus one "other" bar holding the rest of both (so each side sums to 1);
- ``target_tv``: TV_t = 1/2 sum_s |gamma_t(s) - estimate_t(s)| at every step so far,
  computed over *all* states (not just the bars shown).

A state is labelled by its tokens: "…" marks an unfinished prefix, "■" a completion
ended by EOS or a stop rule, "(cut)" one cut at max_new_tokens (glyphs every font has).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting.common import TokenLabel, empty, layout, step_ticks
from powersmc_core.plotting.style import METHOD_COLORS
from powersmc_core.theory.live_target import (
    ExactTarget,
    StepComparison,
    compare_step,
    particle_paths,
)

__all__ = ["TARGET_TOP_K", "state_label", "target_bars_figure", "target_figures", "tv_figure"]

TARGET_TOP_K = 10  # bars shown besides "other": readable at any vocabulary and length


def state_label(
    state: tuple[tuple[int, ...], bool], final: bool, token_label: TokenLabel | None
) -> str:
    """The state's tokens, then "■" (ended), "(cut)" (by length, final step) or "…"."""
    tokens, finished = state
    name = token_label or str
    text = " ".join(name(t) for t in tokens) or "(empty)"
    return f"{text} {'■' if finished else '(cut)' if final else '…'}"


def target_bars_figure(
    comparison: StepComparison, token_label: TokenLabel | None = None, top_k: int = TARGET_TOP_K
) -> go.Figure:
    """Exact gamma_t (or pi_alpha) and the weighted particles on the top_k states + other."""
    c = comparison
    order = np.argsort(-np.maximum(c.exact, c.estimate), kind="stable")[:top_k]
    names = [state_label(c.states[i], c.final, token_label) for i in order]
    exact, estimate = c.exact[order], c.estimate[order]
    if len(c.states) > len(order):
        # "other" keeps both bars summing to 1 without drawing thousands of states.
        names.append(f"other ({len(c.states) - len(order)} states)")
        exact = np.append(exact, max(0.0, 1.0 - exact.sum()))
        estimate = np.append(estimate, max(0.0, 1.0 - estimate.sum()))
    law = "π_α" if c.final else "γ_t"
    fig = go.Figure()
    fig.add_bar(
        x=names,
        y=exact,
        name=f"exact {law} ({'α' if c.final else 'α_t'}={c.exponent:.3g})",
        marker={"color": METHOD_COLORS["exact"]},
        hovertemplate="%{x}<br>exact %{y:.4f}<extra></extra>",
    )
    fig.add_bar(
        x=names,
        y=estimate,
        name="particles Σ W_i",
        marker={"color": METHOD_COLORS["smc"]},
        hovertemplate="%{x}<br>particles %{y:.4f}<extra></extra>",
    )
    fig.update_yaxes(range=[0, 1.05])
    where = "complete sequences" if c.final else f"states at step {c.step}"
    title = f"Exact {law} vs particles, {where} (TV {c.tv:.3f})"
    return layout(
        fig, title, "sequence (… unfinished, ■ ended, (cut) at max new tokens)", "probability"
    )


def tv_figure(tvs: Sequence[float], records: Sequence[StepRecord]) -> go.Figure:
    """TV_t between the exact target and the weighted particles, one point per step."""
    title, x_title, y_title = "Distance to the exact target", "token index t", "TV (0 to 1)"
    if not records:
        return empty(title, x_title, y_title)
    fig = go.Figure()
    fig.add_scatter(
        x=[r.step for r in records],
        y=list(tvs),
        mode="lines+markers",
        name="TV(target, particles)",
        line={"color": METHOD_COLORS["smc"], "width": 2},
        hovertemplate="step %{x}<br>TV %{y:.4f}<extra></extra>",
    )
    fig.update_yaxes(range=[0, max(0.1, 1.1 * max(tvs))])  # from 0: small TVs stay small
    step_ticks(fig, records)
    return layout(fig, title, x_title, y_title)


def target_figures(
    target: ExactTarget,
    records: Sequence[StepRecord],
    token_label: TokenLabel | None = None,
    top_k: int = TARGET_TOP_K,
) -> dict[str, go.Figure]:
    """The exact-target panel at the last record: bars (``target``) and TV per step
    (``target_tv``); the TVs are those of ``theory.live_target.target_tv``."""
    if not records:
        return {
            "target": empty("Exact target", "sequence", "probability"),
            "target_tv": tv_figure([], records),
        }
    paths = particle_paths(records)
    comparisons = [compare_step(target, records, t, paths) for t in range(1, len(records) + 1)]
    return {
        "target": target_bars_figure(comparisons[-1], token_label, top_k),
        "target_tv": tv_figure([c.tv for c in comparisons], records),
    }
