"""Figures of one Power-SMC run, built from its step records (records in, figures out).

Every builder takes the records decoded so far (a prefix of a run, or a whole trace
read back from a file), so the same function draws the live run, a replay at any
step, and a notebook cell. Conventions shared by every figure:

- x is the token index t (1-based, as ``StepRecord.step``);
- particle i is drawn in ``particle_color(i)``, i the slot index, in every chart;
- per-particle arrays of record t describe slots *before* that step's resampling;
- hover text names the particle, the step, the token and the value;
- no axis or colour range auto-scales float noise: ESS spans [0, N], weights and the
  schedule start at 0, log-weights are shown as log(N·W) over at least [-1, 1] nats.

Cost: every builder is O(T·N) vectorised numpy work with a bounded number of Plotly
traces whatever N is (the Rényi lines are grouped by colour, the genealogy and the
particle table are capped), and no chart draws more than a few dozen bars or lineages:
above ``WEIGHT_BARS`` particles the weight chart shows the heaviest and one bar for the
rest, above ``GENEALOGY_LINES`` the genealogy draws the heaviest particles' ancestry. This module holds the per-step charts and ``live_figures``;
the Rényi panel (``renyi``), the genealogy (``lineage``), the particle table
(``tables``), the exact target beside the particles on enumerable models (``target``)
and the method comparisons (``compare``) live beside it and are re-exported here, the
name the app's pages import.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting.common import (
    TokenLabel,
    empty,
    labels,
    layout,
    snippet,
    stack,
    step_ticks,
)
from powersmc_core.plotting.comparison import (
    add_estimate_bars,
    loglik_per_token_figure,
    mh_acceptance_figure,
)
from powersmc_core.plotting.diversity import diversity_figure, line_mode
from powersmc_core.plotting.lineage import GENEALOGY_LINES, MAX_GENEALOGY_NODES, genealogy_figure
from powersmc_core.plotting.renyi import renyi_figure
from powersmc_core.plotting.style import METHOD_COLORS, particle_colors, particle_marker_colors
from powersmc_core.plotting.tables import (
    GROUP_COLUMNS,
    PARTICLE_COLUMNS,
    GroupedTable,
    ParticleTable,
    group_particles,
    grouped_table,
    normalised_weights,
    particle_table,
    style_particle_table,
)
from powersmc_core.plotting.target import (
    TARGET_TOP_K,
    target_bars_figure,
    target_figures,
    tv_figure,
)

__all__ = [
    "GENEALOGY_LINES",
    "GROUP_COLUMNS",
    "HEATMAP_FLOOR_NATS",
    "HEATMAP_MIN_HALF_SPAN",
    "MAX_GENEALOGY_NODES",
    "PARTICLE_COLUMNS",
    "TARGET_TOP_K",
    "WEIGHT_BARS",
    "GroupedTable",
    "ParticleTable",
    "TokenLabel",
    "add_estimate_bars",
    "diversity_figure",
    "ess_figure",
    "genealogy_figure",
    "group_particles",
    "grouped_table",
    "live_figures",
    "log_weight_heatmap",
    "loglik_per_token_figure",
    "mh_acceptance_figure",
    "particle_colors",
    "particle_table",
    "renyi_figure",
    "schedule_figure",
    "style_particle_table",
    "target_bars_figure",
    "target_figures",
    "top_weights",
    "tv_figure",
    "weights_figure",
]

WEIGHT_BARS = 20  # above this many particles the weight chart shows the top 20 and the rest
HEATMAP_MIN_HALF_SPAN = 1.0  # log(N·W) colours span at least [-1, 1] nats
HEATMAP_FLOOR_NATS = 12.0  # below log(N·W) = -12 every weight is the floor colour


def ess_figure(records: Sequence[StepRecord], ess_threshold: float | None = None) -> go.Figure:
    """ESS_t = 1/sum_i W_i^2 over tokens, the kappa·N threshold, and a mark at every resampling."""
    title, x_title, y_title = "Effective sample size", "token index t", "ESS [particles]"
    if not records:
        return empty(title, x_title, y_title)
    n = records[-1].n_particles
    steps = [r.step for r in records]
    ess = [r.ess for r in records]
    fig = go.Figure()
    fig.add_scatter(
        x=steps,
        y=ess,
        mode=line_mode(len(steps)),
        marker={"size": 5},
        name="ESS",
        line={"color": METHOD_COLORS["smc"], "width": 2},
        hovertemplate="step %{x}<br>ESS %{y:.2f} of " + str(n) + "<extra></extra>",
    )
    events = [r for r in records if r.resampled]
    fig.add_scatter(
        x=[r.step for r in events],
        y=[r.ess for r in events],
        mode="markers",
        name=f"resampled ({len(events)})",
        marker={"symbol": "x", "size": 9, "color": "#111111"},
        customdata=[[r.n_unique_ancestors] for r in events],
        hovertemplate="resampled at step %{x}<br>ESS before %{y:.2f}"
        "<br>%{customdata[0]} distinct ancestors<extra></extra>",
    )
    if ess_threshold is not None and ess_threshold > 0:
        fig.add_hline(
            y=ess_threshold * n,
            line={"dash": "dash", "color": "#7f7f7f"},
            annotation_text=f"κ·N = {ess_threshold * n:g}",
            annotation_position="top left",
        )
    fig.update_yaxes(range=[0, n * 1.08])
    step_ticks(fig, records)
    return layout(fig, title, x_title, y_title)


def schedule_figure(records: Sequence[StepRecord], alpha: float | None = None) -> go.Figure:
    """The bridging schedule alpha_t and the proposal temperature tau_t actually used."""
    title, x_title, y_title = (
        "Schedule: exponent α_t and proposal temperature τ_t",
        "token index t",
        "value (dimensionless)",
    )
    if not records:
        return empty(title, x_title, y_title)
    steps = [r.step for r in records]
    fig = go.Figure()
    fig.add_scatter(
        x=steps,
        y=[r.alpha for r in records],
        mode=line_mode(len(steps)),
        name="α_t",
        line={"color": METHOD_COLORS["smc"], "width": 2, "shape": "hv"},
        hovertemplate="step %{x}<br>α_t = %{y:.3f}<extra></extra>",
    )
    fig.add_scatter(
        x=steps,
        y=[r.tau for r in records],
        mode=line_mode(len(steps)),
        name="τ_t",
        line={"color": METHOD_COLORS["lowtemp"], "width": 2, "shape": "hv"},
        hovertemplate="step %{x}<br>τ_t = %{y:.3f}<extra></extra>",
    )
    last = records[-1]
    if last.catch_up:
        fig.add_scatter(
            x=[last.step],
            y=[last.alpha + last.catch_up],
            mode="markers",
            name="catch-up to α",
            marker={"symbol": "triangle-up", "size": 10, "color": METHOD_COLORS["smc"]},
            hovertemplate="final catch-up p(y)^%{customdata:.3f}<extra></extra>",
            customdata=[last.catch_up],
        )
    if alpha is not None:
        fig.add_hline(
            y=alpha,
            line={"dash": "dot", "color": "#7f7f7f"},
            annotation_text=f"target α = {alpha:g}",
            annotation_position="bottom right",
        )
    # From zero: a constant alpha_t = 4 must not fill the axis with a 1e-15 wiggle.
    fig.update_yaxes(rangemode="tozero")
    step_ticks(fig, records)
    return layout(fig, title, x_title, y_title)


def top_weights(weights: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """(slots, rest): the ``k`` heaviest slots, heaviest first (ties in slot order), and
    the total weight of all the others (exactly 1 − their sum up to rounding: summed)."""
    n = weights.size
    k = min(k, n)
    top = np.argpartition(-weights, k - 1)[:k] if k < n else np.arange(n)
    top = top[np.lexsort((top, -weights[top]))]
    rest = np.ones(n, dtype=bool)
    rest[top] = False
    return top, float(weights[rest].sum())


def weights_figure(
    record: StepRecord | None, token_label: TokenLabel | None = None, top_k: int = WEIGHT_BARS
) -> go.Figure:
    """Normalised weights W_i at one step: one bar per particle (hatched once finished).

    Above ``top_k`` particles, the ``top_k`` heaviest (heaviest first, labelled by slot)
    and, in a narrow panel of its own on a 0..1 axis, one grey bar "other M" holding the
    total weight of all the others: 256 bars of 1/256 are a barcode nobody can read.
    """
    title, x_title, y_title = (
        "Normalised weights",
        "particle (slot index)",
        "weight W_i (probability)",
    )
    if record is None:
        return empty(title, x_title, y_title)
    n = record.n_particles
    log_w = np.asarray(record.log_weights, dtype=np.float64)
    weights = normalised_weights(log_w)
    capped = n > top_k
    slots, rest = top_weights(weights, top_k) if capped else (np.arange(n), 0.0)
    names = labels([record], token_label)[0][slots]
    texts = record.texts or ("",) * n
    finished = np.asarray(record.finished, dtype=bool)[slots]
    # Capped: the rest's total (often most of the mass) gets its own panel and 0..1 axis,
    # so it neither hides the heaviest bars nor is clipped.
    fig = (
        make_subplots(rows=1, cols=2, column_widths=[0.86, 0.14], horizontal_spacing=0.1)
        if capped
        else go.Figure()
    )
    where = {"row": 1, "col": 1} if capped else {}
    fig.add_bar(
        # Capped: categories "#slot" in weight order (slot numbers would leave gaps).
        x=[f"#{i}" for i in slots.tolist()] if capped else slots,
        y=weights[slots],
        marker={
            **particle_marker_colors(slots),
            "pattern": {"shape": np.where(finished, "/", "")},
        },
        customdata=np.stack(
            [
                np.where(np.isfinite(log_w[slots]), log_w[slots], np.nan),
                names,
                np.array(["finished" if f else "decoding" for f in finished], dtype=object),
                np.array([snippet(texts[i]) for i in slots.tolist()], dtype=object),
                slots,
            ],
            axis=1,
        ),
        hovertemplate="particle %{customdata[4]}<br>W = %{y:.4f} (log W = %{customdata[0]:.2f})"
        "<br>token %{customdata[1]} · %{customdata[2]}<br>%{customdata[3]}<extra></extra>",
        name="W_i",
        showlegend=False,
        **where,
    )
    fig.add_hline(
        y=1.0 / n,
        line={"dash": "dash", "color": "#7f7f7f"},
        annotation_text="uniform 1/N",
        annotation_position="top right",
        **where,
    )
    hatched = " · hatched = finished" if finished.any() else ""
    if not capped:
        fig.update_xaxes(dtick=1 if n <= 32 else None)
        fig.update_yaxes(rangemode="tozero")
        return layout(fig, f"{title} at step {record.step}{hatched}", x_title, y_title, bargap=0.15)
    more = n - slots.size
    fig.add_bar(
        x=[f"other {more:,}"],
        y=[rest],
        marker={"color": "#bdbdbd"},
        text=[f"{rest:.3f}"],
        textposition="outside",
        customdata=[[more, rest / more]],
        hovertemplate="the other %{customdata[0]} particles<br>total W = %{y:.4f}"
        "<br>mean W = %{customdata[1]:.2e}<extra></extra>",
        name="rest",
        showlegend=False,
        row=1,
        col=2,
    )
    title = (
        f"{title} at step {record.step}: the {slots.size} heaviest of {n} "
        f"and the others' total{hatched}"
    )
    layout(fig, title, x_title, y_title, bargap=0.15)
    fig.update_xaxes(type="category", tickangle=-45, row=1, col=1)
    fig.update_xaxes(type="category", title_text="", row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.15], title_text="total W", row=1, col=2)
    return fig


def log_weight_heatmap(
    records: Sequence[StepRecord], token_label: TokenLabel | None = None
) -> go.Figure:
    """Particle × token heatmap of log(N·W_{t,i}) (before resampling): 0 means uniform.

    The colour range always spans at least [-1, 1] nats around 0, so at uniform weights
    (log W = log 1/N up to 1e-7 float noise) the whole map is the middle colour instead
    of noise stretched over the colour bar; it is cut at -``HEATMAP_FLOOR_NATS`` (any
    lower weight is drawn as the floor colour; the hover text gives the true value).
    """
    title, x_title, y_title = (
        "Relative log-weights log(N·W) (particle × token)",
        "token index t",
        "particle (slot index)",
    )
    if not records:
        return empty(title, x_title, y_title)
    n = records[-1].n_particles
    log_w = stack(records, "log_weights")  # (T, N)
    rel = log_w + np.log(n)  # log(N·W): 0 at uniform weights
    finite = rel[np.isfinite(rel)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    zmin = max(min(-HEATMAP_MIN_HALF_SPAN, low), -HEATMAP_FLOOR_NATS)
    zmax = max(HEATMAP_MIN_HALF_SPAN, high)
    fig = go.Figure()
    fig.add_heatmap(
        x=[r.step for r in records],
        y=np.arange(n),
        z=rel.T.astype(np.float32),
        zmin=zmin,
        zmax=zmax,
        text=labels(records, token_label).T,
        customdata=log_w.T.astype(np.float32),
        colorscale="Viridis",
        colorbar={"title": {"text": "log N·W [nats]"}, "thickness": 12},
        hovertemplate="particle %{y}<br>step %{x}<br>token %{text}"
        "<br>log N·W = %{z:.3f} (log W = %{customdata:.3f})<extra></extra>",
        name="log N·W",
    )
    # The particle colour key: one square per row at t = 0, as in every other chart.
    fig.add_scatter(
        x=np.zeros(n),
        y=np.arange(n),
        mode="markers",
        marker={"symbol": "square", "size": max(3, min(10, 300 // n)), **particle_marker_colors(n)},
        hovertemplate="particle %{y}<extra></extra>",
        showlegend=False,
    )
    fig.update_yaxes(autorange="reversed")
    step_ticks(fig, records)
    return layout(fig, title, x_title, y_title)


def live_figures(
    records: Sequence[StepRecord],
    ess_threshold: float | None = None,
    alpha: float | None = None,
    token_label: TokenLabel | None = None,
    heavy: bool = True,
) -> dict[str, go.Figure]:
    """Every chart of the Live page at the last record given (heavy: the O(T·N) ones too)."""
    figures = {
        "ess": ess_figure(records, ess_threshold),
        "schedule": schedule_figure(records, alpha),
        "weights": weights_figure(records[-1] if records else None, token_label),
    }
    if heavy:
        figures["heatmap"] = log_weight_heatmap(records, token_label)
        figures["renyi"] = renyi_figure(records)
        figures["genealogy"] = genealogy_figure(records, token_label)
        figures["diversity"] = diversity_figure(records)
    return figures
