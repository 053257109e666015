"""Plotly figures of an evaluation (rows or summary in, figures out; nothing is computed here).

- ``accuracy_latency_figure``: accuracy (Wilson 95% bars) against mean latency, one point
  per (method, config): the shape of the paper's headline figure.
- ``sweep_figure``: accuracy or mean log p per token against alpha or N, one line per
  method; methods that do not read the swept knob (base ignores alpha) are dashed
  horizontal references.
- ``save_figure``: HTML always; PNG through kaleido when a Chromium is available, otherwise
  the reason PNG was skipped is returned, never raised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from powersmc_core.evaluation.runner import canonical_columns
from powersmc_core.evaluation.summary import summary_table
from powersmc_core.plotting.style import METHOD_COLORS

__all__ = [
    "SavedFigure",
    "accuracy_latency_figure",
    "save_figure",
    "save_report_figures",
    "sweep_figure",
]

_METRICS = {"accuracy": "accuracy", "logp_per_token": "mean log p per token"}
_PARAMS = {"alpha": "alpha", "n_particles": "particles N"}
_PARAM_ALIASES = {"particles": "n_particles"}  # the name before the rename


def accuracy_latency_figure(summary: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Accuracy vs mean latency per (method, config), with Wilson 95% error bars."""
    fig = go.Figure()
    for method, group in summary.groupby("method", sort=False):
        fig.add_trace(
            go.Scatter(
                x=group["latency_s"],
                y=group["accuracy"],
                mode="markers+text",
                name=str(method),
                text=group["config"],
                textposition="top center",
                marker={"size": 11, "color": METHOD_COLORS.get(str(method))},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": group["ci_high"] - group["accuracy"],
                    "arrayminus": group["accuracy"] - group["ci_low"],
                },
                hovertemplate="%{text}<br>latency %{x:.3g} s<br>accuracy %{y:.2f}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title or "Accuracy vs latency",
        xaxis_title="mean latency per problem (s, log scale)",
        yaxis_title="accuracy",
        yaxis_range=[-0.05, 1.05],
        template="plotly_white",
    )
    fig.update_xaxes(type="log")
    return fig


def sweep_figure(
    rows: pd.DataFrame, param: str = "alpha", metric: str = "accuracy", title: str | None = None
) -> go.Figure:
    """metric ('accuracy' or 'logp_per_token') vs param ('alpha' or 'n_particles') per method."""
    param = _PARAM_ALIASES.get(param, param)
    if param not in _PARAMS:
        raise ValueError(f"param must be one of {list(_PARAMS)}, got {param!r}")
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {list(_METRICS)}, got {metric!r}")
    summary = summary_table(rows)
    fig = go.Figure()
    # Values of the swept knob that appear at all, for the span of the reference lines.
    swept = summary[param][summary[param].map(_has_value)]
    span = (float(swept.min()), float(swept.max())) if len(swept) else (0.0, 1.0)
    for method, group in summary.groupby("method", sort=False):
        colour = METHOD_COLORS.get(str(method))
        has = group[group[param].map(_has_value)]
        if len(has):
            line = has.groupby(param, as_index=False)[[metric, "ci_low", "ci_high"]].mean()
            line = line.sort_values(param)
            error = None
            if metric == "accuracy":
                error = {
                    "type": "data",
                    "symmetric": False,
                    "array": line["ci_high"] - line[metric],
                    "arrayminus": line[metric] - line["ci_low"],
                }
            fig.add_trace(
                go.Scatter(
                    x=line[param],
                    y=line[metric],
                    mode="lines+markers",
                    name=str(method),
                    line={"color": colour},
                    error_y=error,
                )
            )
        else:  # the method ignores this knob: one value, drawn as a reference line
            value = float(group[metric].mean())
            fig.add_trace(
                go.Scatter(
                    x=list(span),
                    y=[value, value],
                    mode="lines",
                    name=f"{method} (no {param})",
                    line={"color": colour, "dash": "dash"},
                )
            )
    fig.update_layout(
        title=title or f"{_METRICS[metric]} vs {_PARAMS[param]}",
        xaxis_title=_PARAMS[param],
        yaxis_title=_METRICS[metric],
        template="plotly_white",
    )
    if param == "n_particles" or (len(swept) and float(swept.min()) > 0):
        fig.update_xaxes(type="log")
    return fig


def _has_value(value: object) -> bool:
    if value is None:
        return False
    number = float(value)
    return not math.isnan(number) and number >= 0


@dataclass(frozen=True)
class SavedFigure:
    html: Path
    png: Path | None
    png_skipped: str | None = None  # why PNG export was skipped, when it was


def save_figure(fig: go.Figure, stem: str | Path, png: bool = True) -> SavedFigure:
    """Write ``stem``.html, and ``stem``.png via kaleido when possible (else say why not)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    html = stem.with_suffix(".html")
    fig.write_html(html, include_plotlyjs="cdn")
    if not png:
        return SavedFigure(html, None, "PNG export not requested")
    target = stem.with_suffix(".png")
    try:
        fig.write_image(target, width=900, height=560, scale=1)
    except Exception as err:  # kaleido missing, or kaleido 1.x without a Chromium
        reason = (
            f"PNG skipped ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}); "
            "kaleido 1.x needs a Chromium: install one (e.g. `make browser`, Debian's chromium)"
        )
        return SavedFigure(html, None, reason)
    return SavedFigure(html, target, None)


def save_report_figures(
    rows: pd.DataFrame, folder: str | Path, png: bool = True, rules: Sequence[str] = ("chosen",)
) -> list[SavedFigure]:
    """The standard set: accuracy-latency (one point per line of ``summary_table(rows,
    rules)``), and accuracy / log p per token vs alpha and vs N (the sampler's own draw)."""
    folder = Path(folder)
    rows = canonical_columns(rows)
    summary = summary_table(rows, rules)
    saved = [save_figure(accuracy_latency_figure(summary), folder / "accuracy_vs_latency", png)]
    for param in ("alpha", "n_particles"):
        values = rows[param][rows[param].map(_has_value)]
        if values.nunique() >= 2:  # a sweep plot needs at least two points on its axis
            for metric in ("accuracy", "logp_per_token"):
                fig = sweep_figure(rows, param, metric)
                saved.append(save_figure(fig, folder / f"{metric}_vs_{param}", png))
    return saved
