"""The arena's figure: error to the exact pi_alpha against token forwards, one line per method.

Frame in (``theory.arena.ArenaResult.frame``), figure out. One panel per toy (a grid), one
line per arena line (Power-SMC once per schedule), error bars ± 2 s.e. over the runs, a log
x axis of mean token forwards, and a dotted vertical rule at the reference's forwards
(Power-SMC, N = 32) and at 4x, where the matched table reads every line.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from powersmc_core.plotting.common import plain
from powersmc_core.plotting.style import METHOD_COLORS, particle_color

__all__ = ["METRICS", "arena_figure"]

METRICS = {
    "tv": ("tv", "tv_se", "mean TV(one run, π_α)"),
    "rare_mass_error": ("rare_mass_error", "rare_mass_se", "|mean rare-branch mass − exact|"),
    "tv_of_mean": ("tv_of_mean", None, "TV(mean over runs, π_α)"),
}
_SCHEDULE_DASH = {"constant": "solid", "linear": "dash", "adaptive": "dot"}
_SCHEDULE_SYMBOL = {"constant": "circle", "linear": "square", "adaptive": "diamond"}


def arena_figure(
    frame: pd.DataFrame, metric: str = "tv", reference: tuple[str, int] = ("smc", 32)
) -> go.Figure:
    """Panels per toy of ``metric`` (``METRICS``) against mean forwards (log x), ± 2 s.e."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {list(METRICS)}")
    column, se_column, y_title = METRICS[metric]
    if frame.empty:
        fig = go.Figure()
        fig.add_annotation(text="no arena rows", showarrow=False, x=0.5, y=0.5)
        return fig
    shown = frame.dropna(subset=[column])
    models = list(dict.fromkeys(shown["model"])) or list(dict.fromkeys(frame["model"]))
    cols = min(4, len(models))
    rows = math.ceil(len(models) / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[plain(m) for m in models],
        horizontal_spacing=0.06,
        vertical_spacing=0.12 if rows > 1 else 0.1,
    )
    lines = list(dict.fromkeys(frame["line"]))
    for k, line in enumerate(lines):
        first = frame[frame["line"] == line].iloc[0]
        method, schedule = str(first["method"]), str(first["schedule"] or "")
        color = METHOD_COLORS.get(method, particle_color(k))
        if method == "smc" and schedule:
            color = {"constant": "#d62728", "linear": "#ff7f0e", "adaptive": "#17becf"}.get(
                schedule, color
            )
        for m, model in enumerate(models):
            df = shown[(shown["line"] == line) & (shown["model"] == model)].sort_values("forwards")
            if df.empty:
                continue
            y = df[column].to_numpy(dtype=float)
            err = 2 * df[se_column].fillna(0.0).to_numpy(dtype=float) if se_column else None
            fig.add_scatter(
                x=df["forwards"],
                y=y,
                error_y=None if err is None else {"type": "data", "array": err, "visible": True},
                customdata=np.stack(
                    [df["budget"], y, err if err is not None else np.zeros_like(y)], 1
                ),
                mode="lines+markers",
                name=plain(line),
                legendgroup=line,
                showlegend=m == 0,
                line={"color": color, "dash": _SCHEDULE_DASH.get(schedule, "solid")},
                marker={"symbol": _SCHEDULE_SYMBOL.get(schedule, "circle"), "size": 7},
                hovertemplate=(
                    "forwards=%{x:.0f} (budget %{customdata[0]:.0f})<br>"
                    "error=%{customdata[1]:.3f} ± %{customdata[2]:.3f}"
                    "<extra>%{fullData.name}</extra>"
                ),
                row=m // cols + 1,
                col=m % cols + 1,
            )
    method, budget = reference
    for m, model in enumerate(models):
        ref = frame[
            (frame["model"] == model) & (frame["method"] == method) & (frame["budget"] == budget)
        ]
        if ref.empty:
            continue
        base = float(ref["forwards"].mean())
        for factor in (1, 4):
            fig.add_vline(
                x=base * factor,
                line={"color": "#999999", "dash": "dot", "width": 1},
                row=m // cols + 1,
                col=m % cols + 1,
            )
    fig.update_xaxes(type="log")
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(
        title=(
            f"Error to the exact π_α against token forwards ({y_title}; ± 2 s.e.; dotted: "
            "Power-SMC N = 32 and 4× its forwards)"
        ),
        template="plotly_white",
        height=300 * rows + 140,
        legend={"orientation": "h", "yanchor": "top", "y": -0.08, "x": 0},
        margin={"l": 50, "r": 20, "t": 80, "b": 40},
    )
    fig.update_xaxes(title_text="token forwards (log)", row=rows)
    fig.update_yaxes(title_text=y_title, col=1)
    return fig
