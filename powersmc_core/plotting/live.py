"""Figures of one Power-SMC run, built from its step records (records in, figures out).

Every builder takes the records decoded so far (a prefix of a run, or a whole trace
read back from a file), so the same function draws the live run, a replay at any
step, and a notebook cell. Conventions shared by every figure:

- x is the token index t (1-based, as ``StepRecord.step``);
- particle i is drawn in ``particle_color(i)``, i the slot index, in every chart;
- per-particle arrays of record t describe slots *before* that step's resampling;
- hover text names the particle, the step, the token and the value.

Cost: every builder is O(T·N) numpy work plus the Plotly JSON of that size; the
app redraws the O(N) charts often and the O(T·N) ones on a slower, adaptive clock.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..genealogy import parents, surviving
from ..records import StepRecord
from .style import METHOD_COLORS, particle_color, particle_colors

__all__ = [
    "PARTICLE_COLUMNS",
    "TokenLabel",
    "add_estimate_bars",
    "ess_figure",
    "genealogy_figure",
    "live_figures",
    "log_weight_heatmap",
    "loglik_per_token_figure",
    "mh_acceptance_figure",
    "renyi_figure",
    "schedule_figure",
    "style_particle_table",
    "weights_figure",
]

TokenLabel = Callable[[int], str]

_HEIGHT = 330
_MARGIN = {"l": 60, "r": 20, "t": 50, "b": 50}
# Above this many (step, particle) cells the genealogy draws nodes at the current step only:
# tens of thousands of SVG markers with hover text stall a browser.
_MAX_GENEALOGY_NODES = 4000


def _default_label(token: int) -> str:
    return str(token)


def _labels(records: Sequence[StepRecord], token_label: TokenLabel | None) -> np.ndarray:
    """(T, N) strings: the token each slot appended at each step ('·' once finished)."""
    label = token_label or _default_label
    cache: dict[int, str] = {}

    def name(tok: int) -> str:
        if tok < 0:
            return "· (finished)"
        if tok not in cache:
            cache[tok] = repr(label(tok))
        return cache[tok]

    return np.array([[name(tok) for tok in r.tokens] for r in records], dtype=object)


def _stack(records: Sequence[StepRecord], name: str) -> np.ndarray:
    """(T, N) float array of one per-particle field, non-finite values as NaN (gaps)."""
    out = np.array([getattr(r, name) for r in records], dtype=np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        height=kwargs.pop("height", _HEIGHT),
        margin=_MARGIN,
        hovermode=kwargs.pop("hovermode", "closest"),
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 1, "xanchor": "right"},
        **kwargs,
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def _step_ticks(fig: go.Figure, records: Sequence[StepRecord]) -> None:
    """Token indices are integers: tick every step on short runs (no 1.5, 2.5 ticks)."""
    if len(records) <= 24:
        fig.update_xaxes(dtick=1 if len(records) <= 12 else 2, tick0=0)


def _empty(title: str, x_title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(
        text="no steps yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
    )
    return _layout(fig, title, x_title, y_title)


def ess_figure(records: Sequence[StepRecord], ess_threshold: float | None = None) -> go.Figure:
    """ESS_t = 1/sum_i W_i^2 over tokens, the kappa·N threshold, and a mark at every resampling."""
    title, x_title, y_title = "Effective sample size", "token index t", "ESS [particles]"
    if not records:
        return _empty(title, x_title, y_title)
    n = records[-1].n_particles
    steps = [r.step for r in records]
    ess = [r.ess for r in records]
    fig = go.Figure()
    fig.add_scatter(
        x=steps,
        y=ess,
        mode="lines",
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
    _step_ticks(fig, records)
    return _layout(fig, title, x_title, y_title)


def schedule_figure(records: Sequence[StepRecord], alpha: float | None = None) -> go.Figure:
    """The bridging schedule alpha_t and the proposal temperature tau_t actually used."""
    title, x_title, y_title = (
        "Schedule: exponent α_t and proposal temperature τ_t",
        "token index t",
        "value (dimensionless)",
    )
    if not records:
        return _empty(title, x_title, y_title)
    steps = [r.step for r in records]
    fig = go.Figure()
    fig.add_scatter(
        x=steps,
        y=[r.alpha for r in records],
        mode="lines",
        name="α_t",
        line={"color": METHOD_COLORS["smc"], "width": 2, "shape": "hv"},
        hovertemplate="step %{x}<br>α_t = %{y:.3f}<extra></extra>",
    )
    fig.add_scatter(
        x=steps,
        y=[r.tau for r in records],
        mode="lines",
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
    _step_ticks(fig, records)
    return _layout(fig, title, x_title, y_title)


def weights_figure(record: StepRecord | None, token_label: TokenLabel | None = None) -> go.Figure:
    """Normalised weights W_i of all particles at one step (bars; hatched once finished)."""
    title, x_title, y_title = (
        "Normalised weights",
        "particle (slot index)",
        "weight W_i (probability)",
    )
    if record is None:
        return _empty(title, x_title, y_title)
    n = record.n_particles
    log_w = np.asarray(record.log_weights, dtype=np.float64)
    weights = np.exp(log_w)
    labels = _labels([record], token_label)[0]
    texts = record.texts or ("",) * n
    snippets = [_snippet(t) for t in texts]
    fig = go.Figure()
    fig.add_bar(
        x=list(range(n)),
        y=weights,
        marker={
            "color": particle_colors(n),
            "pattern": {"shape": ["/" if f else "" for f in record.finished]},
        },
        customdata=np.stack(
            [
                np.where(np.isfinite(log_w), log_w, np.nan),
                labels,
                np.array(["finished" if f else "decoding" for f in record.finished], dtype=object),
                np.array(snippets, dtype=object),
            ],
            axis=1,
        ),
        hovertemplate="particle %{x}<br>W = %{y:.4f} (log W = %{customdata[0]:.2f})"
        "<br>token %{customdata[1]} · %{customdata[2]}<br>%{customdata[3]}<extra></extra>",
        name="W_i",
        showlegend=False,
    )
    fig.add_hline(
        y=1.0 / n,
        line={"dash": "dash", "color": "#7f7f7f"},
        annotation_text="uniform 1/N",
        annotation_position="top right",
    )
    fig.update_xaxes(dtick=1 if n <= 32 else None)
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, f"{title} at step {record.step}", x_title, y_title, bargap=0.15)


def _snippet(text: str, width: int = 60) -> str:
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= width else "…" + text[-width:]


def log_weight_heatmap(
    records: Sequence[StepRecord], token_label: TokenLabel | None = None
) -> go.Figure:
    """Particle × token heatmap of normalised log-weights log W_{t,i} (before resampling)."""
    title, x_title, y_title = (
        "Log-weights log W (particle × token)",
        "token index t",
        "particle (slot index)",
    )
    if not records:
        return _empty(title, x_title, y_title)
    n = records[-1].n_particles
    log_w = _stack(records, "log_weights")  # (T, N)
    labels = _labels(records, token_label)  # (T, N)
    steps = [r.step for r in records]
    fig = go.Figure()
    fig.add_heatmap(
        x=steps,
        y=list(range(n)),
        z=log_w.T.astype(np.float32),
        customdata=labels.T,
        colorscale="Viridis",
        colorbar={"title": {"text": "log W [nats]"}, "thickness": 12},
        hovertemplate="particle %{y}<br>step %{x}<br>token %{customdata}"
        "<br>log W = %{z:.3f}<extra></extra>",
        name="log W",
    )
    # The particle colour key: one square per row at t = 0, as in every other chart.
    fig.add_scatter(
        x=[0] * n,
        y=list(range(n)),
        mode="markers",
        marker={"symbol": "square", "size": max(3, min(10, 300 // n)), "color": particle_colors(n)},
        hovertemplate="particle %{y}<extra></extra>",
        showlegend=False,
    )
    fig.update_yaxes(autorange="reversed")
    _step_ticks(fig, records)
    return _layout(fig, title, x_title, y_title)


def renyi_figure(records: Sequence[StepRecord]) -> go.Figure:
    """H_{alpha_t}(p(.|prefix_i)) per particle with its spread, beside the log G_i it explains.

    With tau_t = 1/alpha_t every token gets log G_i = (1 - alpha_t)·H_{alpha_t}(p(.|prefix_i))
    (plus the bridging term), so across particles std(log G) = |1 - alpha_t|·std(H): the
    right panel overlays both spreads.
    """
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
        return _layout(fig, title, "token index t", "nats", height=360)
    n = records[-1].n_particles
    steps = np.array([r.step for r in records], dtype=np.float32)
    alpha = np.array([r.alpha for r in records])
    renyi = _stack(records, "renyi")  # (T, N), NaN where finished
    log_g = _stack(records, "log_increment")  # (T, N)
    for i in range(n):
        common = {
            "x": steps,
            "mode": "lines",
            "line": {"color": particle_color(i), "width": 1},
            "opacity": 0.7,
            "legendgroup": f"p{i}",
            "showlegend": False,
            "name": f"particle {i}",
        }
        fig.add_scatter(
            y=renyi[:, i].astype(np.float32),
            hovertemplate=f"particle {i}<br>step %{{x}}<br>H = %{{y:.3f}} nats<extra></extra>",
            row=1,
            col=1,
            **common,
        )
        fig.add_scatter(
            y=log_g[:, i].astype(np.float32),
            hovertemplate=f"particle {i}<br>step %{{x}}<br>log G = %{{y:.3f}} nats<extra></extra>",
            row=1,
            col=2,
            **common,
        )
    # Steps where fewer than two particles are active have no spread: NaN, drawn as gaps.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        active = np.isfinite(renyi)
        counts = active.sum(axis=1)
        h_lo = np.where(counts > 0, np.nanmin(np.where(active, renyi, np.inf), axis=1), np.nan)
        h_hi = np.where(counts > 0, np.nanmax(np.where(active, renyi, -np.inf), axis=1), np.nan)
        h_mean = np.where(
            counts > 0, np.nansum(np.where(active, renyi, 0), axis=1) / counts, np.nan
        )
        h_std = np.where(counts > 1, np.nanstd(np.where(active, renyi, np.nan), axis=1), np.nan)
        g_std = np.where(counts > 1, np.nanstd(np.where(active, log_g, np.nan), axis=1), np.nan)
    fig.add_scatter(
        x=steps,
        y=h_hi,
        mode="lines",
        line={"width": 0},
        showlegend=False,
        hoverinfo="skip",
        row=1,
        col=1,
    )
    fig.add_scatter(
        x=steps,
        y=h_lo,
        mode="lines",
        line={"width": 0},
        fill="tonexty",
        fillcolor="rgba(120,120,120,0.25)",
        name="min–max over particles",
        hoverinfo="skip",
        row=1,
        col=1,
    )
    fig.add_scatter(
        x=steps,
        y=h_mean,
        mode="lines",
        line={"color": "#111111", "width": 2},
        name="mean H",
        customdata=h_std,
        hovertemplate="step %{x}<br>mean H = %{y:.3f} nats<br>std = %{customdata:.3f}<extra></extra>",
        row=1,
        col=1,
    )
    fig.add_scatter(
        x=steps,
        y=g_std,
        mode="lines",
        line={"color": "#111111", "width": 2},
        name="std_i log G",
        hovertemplate="step %{x}<br>std log G = %{y:.3f} nats<extra></extra>",
        row=1,
        col=2,
    )
    fig.add_scatter(
        x=steps,
        y=np.abs(1.0 - alpha) * h_std,
        mode="lines",
        line={"color": "#d62728", "width": 2, "dash": "dash"},
        name="|1−α_t|·std_i H",
        hovertemplate="step %{x}<br>|1−α_t|·std H = %{y:.3f} nats<extra></extra>",
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="token index t")
    _layout(fig, title, "token index t", "H_{α_t} [nats]", height=400)
    _step_ticks(fig, records)
    fig.update_yaxes(title_text="H_{α_t} [nats]", row=1, col=1)
    fig.update_yaxes(title_text="log G [nats]", row=1, col=2)
    # Right of the panels: above them the legend would cover the two subplot titles.
    fig.update_layout(legend={"orientation": "v", "y": 1.0, "x": 1.02, "xanchor": "left"})
    return fig


def genealogy_figure(
    records: Sequence[StepRecord], token_label: TokenLabel | None = None
) -> go.Figure:
    """Who descends from whom: an edge (t-1, parent) -> (t, slot) for every slot and step.

    Edges of lineages with a descendant at the last step are dark, extinct ones faint;
    dotted verticals mark resampling. Nodes are coloured by slot (the particle colour).
    """
    title, x_title, y_title = (
        "Genealogy: surviving lineages (dark) and extinct ones (faint)",
        "token index t",
        "particle (slot index)",
    )
    if not records:
        return _empty(title, x_title, y_title)
    t_len, n = len(records), records[-1].n_particles
    steps = np.array([r.step for r in records], dtype=np.float64)
    par = parents(records)  # (T, N): slot at step t-1 of each slot at step t
    alive = surviving(records)  # (T, N)
    fig = go.Figure()
    # Edge k of step t joins (t-1, par[t, j]) to (t, j); NaN rows break the polyline.
    t_idx, j_idx = np.meshgrid(np.arange(1, t_len), np.arange(n), indexing="ij")
    t_idx, j_idx = t_idx.ravel(), j_idx.ravel()
    for keep, color, width, name in (
        (False, "rgba(150,150,150,0.35)", 1, "extinct lineage"),
        (True, "rgba(20,20,20,0.85)", 1.6, "surviving lineage"),
    ):
        sel = alive[t_idx, j_idx] == keep
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
    events = [r.step for r in records if r.resampled]
    if events:
        xs, ys = [], []
        for s in events:
            # Resampling happens after step s: the new slots start at s + 0.5 visually.
            xs += [s + 0.5, s + 0.5, None]
            ys += [-0.5, n - 0.5, None]
        fig.add_scatter(
            x=xs,
            y=ys,
            mode="lines",
            line={"color": "#d62728", "width": 1, "dash": "dot"},
            name=f"resampling ({len(events)})",
            hoverinfo="skip",
        )
    labels = _labels(records, token_label)
    log_w = _stack(records, "log_weights")
    rows = np.arange(t_len) if t_len * n <= _MAX_GENEALOGY_NODES else np.array([t_len - 1])
    tt, jj = np.meshgrid(rows, np.arange(n), indexing="ij")
    tt, jj = tt.ravel(), jj.ravel()
    fig.add_scatter(
        x=steps[tt],
        y=jj,
        mode="markers",
        marker={
            "color": [particle_color(int(j)) for j in jj],
            "size": 7 if rows.size * n <= 600 else 4,
            "opacity": np.where(alive[tt, jj], 1.0, 0.35),
            "line": {"width": 0},
        },
        customdata=np.stack([labels[tt, jj], np.exp(log_w[tt, jj]), par[tt, jj]], axis=1),
        hovertemplate="particle %{y} at step %{x}<br>token %{customdata[0]}"
        "<br>W = %{customdata[1]:.4f}<br>parent slot %{customdata[2]}<extra></extra>",
        name="particle",
        showlegend=False,
    )
    fig.update_yaxes(autorange="reversed", range=[-0.5, n - 0.5])
    _step_ticks(fig, records)
    return _layout(fig, title, x_title, y_title, height=max(_HEIGHT, min(700, 14 * n + 120)))


# st.dataframe column widths for ``style_particle_table`` (plain dicts: no Streamlit import).
PARTICLE_COLUMNS: dict[str, dict[str, Any]] = {
    "particle": {"width": 56},
    "weight": {"width": 72},
    "log p": {"width": 72},
    "status": {"width": 130},
    "text": {"width": "large"},
}


def style_particle_table(frame: pd.DataFrame) -> Any:
    """Colour the slot cell with the particle colour and highlight the leading particle.

    ``frame`` is ``app_support.particle_frame``'s output (columns particle, status, ...).
    """

    def slot_color(value: Any) -> str:
        return f"background-color: {particle_color(int(value))}; color: white; font-weight: 600"

    def leader(row: pd.Series) -> list[str]:
        style = "background-color: rgba(255, 215, 0, 0.35)" if "leader" in row["status"] else ""
        return [style] * len(row)

    return frame.style.apply(leader, axis=1).map(slot_color, subset=["particle"])


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
    return figures


# ---- method comparison ------------------------------------------------------------------
def loglik_per_token_figure(frame: pd.DataFrame) -> go.Figure:
    """Bars of sequence log-likelihood per token, one per method (``comparison_frame`` rows)."""
    fig = go.Figure()
    fig.add_bar(
        x=frame["method"],
        y=frame["log p / token"],
        marker={"color": [METHOD_COLORS.get(k, "#7f7f7f") for k in frame["key"]]},
        customdata=np.stack([frame["log p"], frame["tokens"]], axis=1),
        hovertemplate="%{x}<br>log p / token = %{y:.3f} nats"
        "<br>log p = %{customdata[0]:.2f} over %{customdata[1]} tokens<extra></extra>",
        showlegend=False,
    )
    return _layout(
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
            name=name,
            line={"color": METHOD_COLORS["mh"]},
            hovertemplate=name + "<br>MH step %{x}<br>acceptance %{y:.2f}<extra></extra>",
        )
    if not traces:
        fig.add_annotation(
            text="no MH run", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
    fig.update_yaxes(range=[0, 1.05])
    return _layout(
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
        name=name,
        marker_color=METHOD_COLORS["smc"],
        hovertemplate="%{x}<br>%{y:.4f}<extra>" + name + "</extra>",
    )
    return fig
