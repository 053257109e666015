"""The genealogy chart: who descends from whom across resampling steps.

Up to ``GENEALOGY_LINES`` particles every slot's edge is drawn at every step. Above, the
chart draws only the ancestry of the ``GENEALOGY_LINES`` heaviest particles at the last
step (their paths back to step 1, merged where they coalesce) and says so in its title:
256 edges per step are a grey barcode.

Cost: O(T·N) numpy work and at most four traces (extinct edges, surviving edges,
resampling marks, nodes) whatever N is. Above ``MAX_GENEALOGY_NODES`` (step, particle)
cells the nodes are drawn at the last step only: tens of thousands of SVG markers
with hover text stall a browser.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from powersmc_core.engine.genealogy import parents, surviving
from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting.common import (
    HEIGHT,
    TokenLabel,
    empty,
    labels,
    layout,
    stack,
    step_ticks,
)
from powersmc_core.plotting.style import particle_marker_colors
from powersmc_core.plotting.tables import normalised_weights

__all__ = ["GENEALOGY_LINES", "MAX_GENEALOGY_NODES", "ancestry", "genealogy_figure"]

MAX_GENEALOGY_NODES = 4000
GENEALOGY_LINES = 24  # above this many particles only the heaviest ones' ancestry is drawn


def ancestry(par: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """(T, N) bool: cells on the ancestral paths of ``slots`` at the last step.

    ``par`` is ``parents(records)``; one vectorised gather per step walking back.
    """
    on = np.zeros(par.shape, dtype=bool)
    current = np.unique(np.asarray(slots, dtype=np.int64))
    for t in range(par.shape[0] - 1, -1, -1):
        on[t, current] = True
        if t:
            current = np.unique(par[t][current])
    return on


def genealogy_figure(
    records: Sequence[StepRecord], token_label: TokenLabel | None = None
) -> go.Figure:
    """Who descends from whom: an edge (t-1, parent) -> (t, slot) for every slot and step.

    Edges of lineages with a descendant at the last step are dark, extinct ones faint;
    dotted verticals mark resampling. Nodes are coloured by slot (the particle colour).
    Above ``GENEALOGY_LINES`` particles only the edges and nodes on the ancestral paths
    of the ``GENEALOGY_LINES`` heaviest particles at the last step are drawn.
    """
    title, x_title, y_title = (
        "Genealogy: surviving lineages (dark) and extinct ones (faint)",
        "token index t",
        "particle (slot index)",
    )
    if not records:
        return empty(title, x_title, y_title)
    t_len, n = len(records), records[-1].n_particles
    steps = np.array([r.step for r in records], dtype=np.float64)
    par = parents(records)  # (T, N): slot at step t-1 of each slot at step t
    alive = surviving(records)  # (T, N)
    drawn = np.ones(alive.shape, dtype=bool)  # cells whose edge and node are drawn
    if n > GENEALOGY_LINES:
        weights = normalised_weights(records[-1].log_weights)
        heaviest = np.lexsort((np.arange(n), -weights))[:GENEALOGY_LINES]
        drawn = ancestry(par, heaviest)
        title = (
            f"Genealogy of the {GENEALOGY_LINES} heaviest of {n} particles at step "
            f"{records[-1].step} (their ancestors only)"
        )
    fig = go.Figure()
    # Edge k of step t joins (t-1, par[t, j]) to (t, j); NaN rows break the polyline.
    t_idx, j_idx = np.meshgrid(np.arange(1, t_len), np.arange(n), indexing="ij")
    t_idx, j_idx = t_idx.ravel(), j_idx.ravel()
    for keep, color, width, name in (
        (False, "rgba(150,150,150,0.35)", 1, "extinct lineage"),
        (True, "rgba(20,20,20,0.85)", 1.6, "surviving lineage"),
    ):
        sel = (alive[t_idx, j_idx] == keep) & drawn[t_idx, j_idx]
        ts, js = t_idx[sel], j_idx[sel]
        xs = np.column_stack([steps[ts - 1], steps[ts], np.full(ts.size, np.nan)]).ravel()
        ys = np.column_stack([par[ts, js], js, np.full(ts.size, np.nan)]).ravel()
        fig.add_scatter(
            x=xs.astype(np.float32),
            y=ys.astype(np.float32),
            mode="lines",
            line={"color": color, "width": width},
            name=name,
            hoverinfo="skip",
            connectgaps=False,
        )
    # Rows spanned by what is drawn: all N, or the band the heaviest particles' ancestry
    # occupies (after resampling, copies sit in neighbouring slots: often a narrow band).
    rows_drawn = np.flatnonzero(drawn.any(axis=0))
    low, high = int(rows_drawn.min()), int(rows_drawn.max())
    events = [r.step for r in records if r.resampled]
    if events:
        xs, ys = [], []
        for s in events:  # at most T: one vertical per resampling event
            # Resampling happens after step s: the new slots start at s + 0.5 visually.
            xs += [s + 0.5, s + 0.5, None]
            ys += [low - 0.5, high + 0.5, None]
        fig.add_scatter(
            x=xs,
            y=ys,
            mode="lines",
            line={"color": "#d62728", "width": 1, "dash": "dot"},
            name=f"resampling ({len(events)})",
            hoverinfo="skip",
        )
    names = labels(records, token_label)
    log_w = stack(records, "log_weights")
    cells = int(drawn.sum())
    rows = np.arange(t_len) if cells <= MAX_GENEALOGY_NODES else np.array([t_len - 1])
    tt, jj = np.meshgrid(rows, np.arange(n), indexing="ij")
    tt, jj = tt.ravel(), jj.ravel()
    keep_node = drawn[tt, jj]
    tt, jj = tt[keep_node], jj[keep_node]
    fig.add_scatter(
        x=steps[tt],
        y=jj,
        mode="markers",
        marker={
            **particle_marker_colors(jj),
            "size": 7 if tt.size <= 600 else 4,
            "opacity": np.where(alive[tt, jj], 1.0, 0.35),
            "line": {"width": 0},
        },
        customdata=np.stack([names[tt, jj], np.exp(log_w[tt, jj]), par[tt, jj]], axis=1),
        hovertemplate="particle %{y} at step %{x}<br>token %{customdata[0]}"
        "<br>W = %{customdata[1]:.4f}<br>parent slot %{customdata[2]}<extra></extra>",
        name="particle",
        showlegend=False,
    )
    fig.update_yaxes(autorange="reversed")
    step_ticks(fig, records)
    height = max(HEIGHT, min(700, 14 * (high - low + 1) + 120))
    return layout(fig, title, x_title, y_title, height=height)
