"""Charts comparing methods: log-likelihood per token, MH acceptance, estimate bars."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from powersmc_core.plotting.common import HEIGHT, layout, plain
from powersmc_core.plotting.style import METHOD_COLORS

__all__ = [
    "add_estimate_bars",
    "loglik_per_token_figure",
    "mh_acceptance_figure",
    "short_label",
]


def short_label(description: str, width: int = 26) -> str:
    """A method's description as a bar label: cut at its first ":" or " (" and wrapped to
    lines of about ``width`` characters, never inside "T = 1" (escaped by ``plain``; the
    line breaks are Plotly's)."""
    short = description.split(":")[0].split(" (")[0].strip() or description
    short = short.replace(" = ", "\u00a0=\u00a0")  # textwrap never breaks at a no-break space
    return "<br>".join(plain(line) for line in textwrap.wrap(short, width) or [short])


def loglik_per_token_figure(frame: pd.DataFrame) -> go.Figure:
    """Horizontal bars of sequence log-likelihood per token, one per method (the rows of
    ``comparison_frame``), names on the y axis; a completion that did not end (cut, or at
    max new tokens) is hatched and starred: its log p is of a partial sequence."""
    finished = frame["finished"] if "finished" in frame else pd.Series(True, index=frame.index)
    status = frame["status"] if "status" in frame else pd.Series("finished", index=frame.index)
    names = [
        short_label(m) + ("" if f else " *") for m, f in zip(frame["method"], finished, strict=True)
    ]
    fig = go.Figure()
    fig.add_bar(
        orientation="h",
        y=names,
        x=frame["log p / token"],
        marker={
            "color": [METHOD_COLORS.get(k, "#7f7f7f") for k in frame["key"]],
            "pattern": {"shape": ["" if f else "/" for f in finished]},
        },
        customdata=np.stack([frame["log p"], frame["tokens"], [plain(s) for s in status]], axis=1),
        hovertemplate="%{y}<br>log p / token = %{x:.3f} nats"
        "<br>log p = %{customdata[0]:.2f} over %{customdata[1]} tokens"
        "<br>%{customdata[2]}<extra></extra>",
        showlegend=False,
    )
    fig.update_yaxes(autorange="reversed", automargin=True)  # the table's order, top down
    x_title = "log p(y|x) / |y| [nats per token]"
    if not finished.all():  # under the axis, never in the title's row
        x_title += "<br>* unfinished or cut: the log p of a partial sequence"
    fig = layout(
        fig,
        "Sequence log-likelihood per token",
        x_title,
        "",  # the method names say it; a vertical title would run into the chart title
        height=max(HEIGHT, 130 + 48 * len(frame)),
    )
    fig.update_xaxes(automargin=True)
    return fig


def mh_acceptance_figure(
    traces: dict[str, Sequence[float]], empty_note: str = "no MH run"
) -> go.Figure:
    """Running Metropolis–Hastings acceptance rate over MH steps, one line per run;
    ``empty_note`` is written on the chart when there is none."""
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
            text=plain(empty_note), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
    fig.update_yaxes(range=[0, 1.05])
    # A short y title: a long vertical one runs up into the chart title.
    return layout(fig, "MH acceptance rate over time", "MH step", "running acceptance")


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
