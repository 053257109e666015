"""Charts comparing methods: log-likelihood per token, MH acceptance, estimate bars."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from powersmc_core.plotting.common import layout, plain
from powersmc_core.plotting.style import METHOD_COLORS

__all__ = ["add_estimate_bars", "loglik_per_token_figure", "mh_acceptance_figure"]


def loglik_per_token_figure(frame: pd.DataFrame) -> go.Figure:
    """Bars of sequence log-likelihood per token, one per method (``comparison_frame`` rows)."""
    fig = go.Figure()
    fig.add_bar(
        x=[plain(m) for m in frame["method"]],
        y=frame["log p / token"],
        marker={"color": [METHOD_COLORS.get(k, "#7f7f7f") for k in frame["key"]]},
        customdata=np.stack([frame["log p"], frame["tokens"]], axis=1),
        hovertemplate="%{x}<br>log p / token = %{y:.3f} nats"
        "<br>log p = %{customdata[0]:.2f} over %{customdata[1]} tokens<extra></extra>",
        showlegend=False,
    )
    return layout(
        fig, "Sequence log-likelihood per token", "method", "log p(y|x) / |y| [nats per token]"
    )


def mh_acceptance_figure(traces: dict[str, Sequence[float]]) -> go.Figure:
    """Running Metropolis–Hastings acceptance rate over MH steps, one line per run."""
    fig = go.Figure()
    for name, trace in traces.items():
        fig.add_scatter(
            x=list(range(1, len(trace) + 1)),
            y=list(trace),
            mode="lines+markers",
            name=plain(name),
            line={"color": METHOD_COLORS["mh"]},
            # The name by reference, not pasted in: a template substitutes any %{...} in it.
            hovertemplate="%{fullData.name}<br>MH step %{x}<br>acceptance %{y:.2f}<extra></extra>",
        )
    if not traces:
        fig.add_annotation(
            text="no MH run", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
    fig.update_yaxes(range=[0, 1.05])
    return layout(
        fig, "MH acceptance rate over time", "MH step", "running acceptance rate (fraction)"
    )


def add_estimate_bars(
    fig: go.Figure,
    labels: Sequence[str],
    values: Sequence[float],
    stderr: Sequence[float] | None = None,
    name: str = "Power-SMC estimate",
) -> go.Figure:
    """Add a Monte-Carlo estimate (± 2 s.e.) to a bar chart over sequences, in place.

    Bars are matched by category, so only sequences already on the x axis are drawn
    (a chart of the top-k sequences stays top-k).
    """
    shown = {str(x) for trace in fig.data if trace.x is not None for x in trace.x}
    keep = [i for i, label in enumerate(labels) if str(label) in shown]
    error = None
    if stderr is not None:
        error = {"type": "data", "array": [2 * float(stderr[i]) for i in keep], "visible": True}
    fig.add_bar(
        x=[labels[i] for i in keep],
        y=[float(values[i]) for i in keep],
        error_y=error,
        name=plain(name),
        marker_color=METHOD_COLORS["smc"],
        hovertemplate="%{x}<br>%{y:.4f}<extra>%{fullData.name}</extra>",
    )
    return fig
