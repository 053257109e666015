"""The Rényi panel: prefix-conditioned entropy H_{α_t} beside the log-weights it explains.

With τ_t = 1/α_t every token gets log G_i = (1 − α_t)·H_{α_t}(p(·|prefix_i)) (plus the
bridging term), so across particles std(log G) = |1 − α_t|·std(H): the right panel
overlays both spreads. With a bridging schedule (α_t changing) log G_i gains
(α_t − α_{t−1})·log p(prefix_i), and with τ_t ≠ 1/α_t the sampled token enters too: the
two spreads then part, which is what the panel shows.

Cost: O(T·N) numpy work and a bounded number of traces whatever N is. Particle
lines are grouped by colour (one trace per palette colour, particles separated by
NaN gaps) and drawn for at most ``MAX_LINES`` particles, those of highest weight at
the last step; the min–max band, mean and spreads cover every particle.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting.common import layout, min_span, stack, step_ticks
from powersmc_core.plotting.style import PALETTE_SIZE, particle_color

__all__ = ["MAX_LINES", "MIN_SPAN_NATS", "renyi_figure"]

MAX_LINES = 256  # particle lines drawn; more is unreadable and costs the browser
MIN_SPAN_NATS = 0.5  # y ranges never narrower: float noise must not fill the panel
# The summary lines share one legend: each has its own colour and dash, so the legend
# tells them apart (mean H solid black, std log G dotted blue, |1−α|·std H dashed red).
MEAN_H_COLOR = "#111111"
STD_G_COLOR = "#1f4e9e"
SCALED_H_COLOR = "#d62728"


def _line_traces(
    steps: np.ndarray, values: np.ndarray, shown: np.ndarray, what: str, col: int
) -> list[tuple[go.Scatter, int]]:
    """One trace per palette colour: its particles' lines joined with NaN gaps.

    values: (T, N); shown: the particle indices to draw. Returns (trace, column) pairs.
    """
    t_len = steps.size
    traces = []
    x_one = np.append(steps, np.nan)  # (T + 1,), the NaN breaks the line between particles
    for colour in np.unique(shown % PALETTE_SIZE):
        members = shown[shown % PALETTE_SIZE == colour]  # (k,)
        y = np.vstack([values[:, members], np.full((1, members.size), np.nan)])  # (T+1, k)
        ids = np.repeat(members, t_len + 1)  # particle index of every point
        traces.append(
            (
                go.Scatter(
                    x=np.tile(x_one, members.size).astype(np.float32),
                    y=y.T.ravel().astype(np.float32),
                    customdata=ids,
                    mode="lines",
                    line={"color": particle_color(int(colour)), "width": 1},
                    opacity=0.7,
                    showlegend=False,
                    connectgaps=False,
                    name=f"particles ≡ {int(colour)} (mod {PALETTE_SIZE})",
                    hovertemplate="particle %{customdata}<br>step %{x}<br>"
                    + what
                    + " = %{y:.3f} nats<extra></extra>",
                ),
                col,
            )
        )
    return traces


def _spreads(renyi: np.ndarray, log_g: np.ndarray) -> dict[str, np.ndarray]:
    """Per step over active particles: min, max, mean and std of H, std of log G."""
    # Steps where fewer than two particles are active have no spread: NaN, drawn as gaps.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        active = np.isfinite(renyi)
        counts = active.sum(axis=1)
        return {
            "lo": np.where(counts > 0, np.nanmin(np.where(active, renyi, np.inf), axis=1), np.nan),
            "hi": np.where(counts > 0, np.nanmax(np.where(active, renyi, -np.inf), axis=1), np.nan),
            "mean": np.where(
                counts > 0, np.nansum(np.where(active, renyi, 0), axis=1) / counts, np.nan
            ),
            "h_std": np.where(
                counts > 1, np.nanstd(np.where(active, renyi, np.nan), axis=1), np.nan
            ),
            "g_std": np.where(
                counts > 1, np.nanstd(np.where(active, log_g, np.nan), axis=1), np.nan
            ),
        }


def renyi_figure(records: Sequence[StepRecord]) -> go.Figure:
    """H_{alpha_t}(p(.|prefix_i)) per particle with its spread, beside the log G_i it explains."""
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_xaxes=True,
        horizontal_spacing=0.1,
        subplot_titles=(
            "Rényi entropy H_{α_t}(p(·|prefix_i))",
            "Log incremental weight log G_i",
        ),
    )
    title = "Prefix-conditioned Rényi entropy explains the weight increments"
    if not records:
        fig.update_xaxes(title_text="token index t")
        return _finish(layout(fig, title, "token index t", "nats", height=400))
    steps = np.array([r.step for r in records], dtype=np.float64)
    alpha = np.array([r.alpha for r in records])
    renyi = stack(records, "renyi")  # (T, N), NaN where finished
    log_g = stack(records, "log_increment")  # (T, N)
    last = np.asarray(records[-1].log_weights, dtype=np.float64)
    order = np.argsort(-np.where(np.isfinite(last), last, -np.inf), kind="stable")
    shown = np.sort(order[:MAX_LINES])
    for trace, col in _line_traces(steps, renyi, shown, "H", 1) + _line_traces(
        steps, log_g, shown, "log G", 2
    ):
        fig.add_trace(trace, row=1, col=col)
    s = _spreads(renyi, log_g)
    band = {"x": steps, "mode": "lines", "line": {"width": 0}, "hoverinfo": "skip"}
    fig.add_scatter(y=s["hi"], showlegend=False, row=1, col=1, **band)
    fig.add_scatter(
        y=s["lo"],
        fill="tonexty",
        fillcolor="rgba(120,120,120,0.25)",
        name="min–max over particles",
        row=1,
        col=1,
        **band,
    )
    fig.add_scatter(
        x=steps,
        y=s["mean"],
        mode="lines",
        line={"color": MEAN_H_COLOR, "width": 2},
        name="mean H",
        customdata=s["h_std"],
        hovertemplate="step %{x}<br>mean H = %{y:.3f} nats<br>std = %{customdata:.3f}<extra></extra>",
        row=1,
        col=1,
    )
    fig.add_scatter(
        x=steps,
        y=s["g_std"],
        mode="lines",
        line={"color": STD_G_COLOR, "width": 3, "dash": "dot"},
        name="std_i log G",
        hovertemplate="step %{x}<br>std log G = %{y:.3f} nats<extra></extra>",
        row=1,
        col=2,
    )
    scaled = np.abs(1.0 - alpha) * s["h_std"]
    fig.add_scatter(
        x=steps,
        y=scaled,
        mode="lines",
        line={"color": SCALED_H_COLOR, "width": 2, "dash": "dash"},
        name="|1−α_t|·std_i H",
        hovertemplate="step %{x}<br>|1−α_t|·std H = %{y:.3f} nats<extra></extra>",
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="token index t")
    layout(fig, title, "token index t", "H_{α_t} [nats]", height=400)
    step_ticks(fig, records)
    right = np.concatenate([log_g[:, shown].ravel(), s["g_std"], scaled])
    fig.update_yaxes(
        title_text="H_{α_t} [nats]", range=min_span(renyi, MIN_SPAN_NATS, floor=0.0), row=1, col=1
    )
    fig.update_yaxes(title_text="log G [nats]", range=min_span(right, MIN_SPAN_NATS), row=1, col=2)
    return _finish(fig)


def _finish(fig: go.Figure) -> go.Figure:
    # Right of the panels, top-aligned with them: above, the legend would cover the
    # figure title and the two subplot titles.
    fig.update_layout(
        legend={"orientation": "v", "y": 1.0, "yanchor": "top", "x": 1.02, "xanchor": "left"}
    )
    return fig
