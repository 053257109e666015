"""How diverse the particle system is, step by step: lineages and distinct sequences.

Resampling copies heavy particles and drops light ones, so N slots can hold far fewer
different answers than N. Three counts per step t, each at most N:

- lineages: distinct initial particles (roots) with a descendant after step t's
  resampling (``StepRecord.n_lineages``);
- distinct sequences: distinct token sequences y_1:t among the slots before that
  resampling (``engine.genealogy.distinct_sequences``, exact at every step from the
  token ids and ancestors);
- distinct texts: distinct decoded texts, only at steps whose record kept its texts (a
  stored run may keep them every few steps); two token sequences can decode to the
  same text, so this count can be below the sequences'.

Cost: O(T·N log N) numpy work and at most three traces whatever N is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from powersmc_core.engine.genealogy import distinct_sequences
from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting.common import empty, layout, step_ticks
from powersmc_core.plotting.style import METHOD_COLORS

__all__ = ["MARKER_STEPS", "distinct_texts", "diversity_figure", "line_mode"]

MARKER_STEPS = 40  # up to this many steps, lines carry markers (one step is one marker)


def line_mode(n_points: int) -> str:
    """``lines+markers`` on short runs (a one-point line draws nothing), else ``lines``."""
    return "lines+markers" if n_points <= MARKER_STEPS else "lines"


def distinct_texts(records: Sequence[StepRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, counts): the number of distinct particle texts at each step that kept texts."""
    kept = [r for r in records if r.texts is not None]
    steps = np.array([r.step for r in kept], dtype=np.int64)
    counts = np.array([len(set(r.texts or ())) for r in kept], dtype=np.int64)
    return steps, counts


def diversity_figure(records: Sequence[StepRecord]) -> go.Figure:
    """Lineages, distinct token sequences and distinct texts per step, on [0, N]."""
    title, x_title, y_title = (
        "Diversity: lineages and distinct sequences",
        "token index t",
        "count [of N particles]",
    )
    if not records:
        return empty(title, x_title, y_title)
    n = records[-1].n_particles
    steps = np.array([r.step for r in records], dtype=np.int64)
    mode = line_mode(steps.size)
    fig = go.Figure()
    fig.add_scatter(
        x=steps,
        y=np.array([r.n_lineages for r in records], dtype=np.int64),
        mode=mode,
        name="lineages (distinct roots)",
        line={"color": METHOD_COLORS["smc"], "width": 2, "shape": "hv"},
        marker={"size": 5},
        hovertemplate="step %{x}<br>%{y} lineages of " + str(n) + "<extra></extra>",
    )
    fig.add_scatter(
        x=steps,
        y=distinct_sequences(records),
        mode=mode,
        name="distinct token sequences",
        line={"color": "#ff7f0e", "width": 2, "dash": "dash", "shape": "hv"},
        marker={"size": 5, "symbol": "diamond"},
        hovertemplate="step %{x}<br>%{y} distinct sequences of " + str(n) + "<extra></extra>",
    )
    text_steps, text_counts = distinct_texts(records)
    if text_steps.size:
        every = text_steps.size == steps.size
        fig.add_scatter(
            x=text_steps,
            y=text_counts,
            mode="markers",
            name="distinct texts" if every else "distinct texts (steps with stored texts)",
            marker={"color": "#111111", "size": 6, "symbol": "circle-open"},
            hovertemplate="step %{x}<br>%{y} distinct texts of " + str(n) + "<extra></extra>",
        )
    fig.update_yaxes(range=[0, n * 1.08])
    step_ticks(fig, records)
    return layout(fig, title, x_title, y_title)
