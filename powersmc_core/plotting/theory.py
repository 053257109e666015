"""Figures of the theory checks (``powersmc_core.theory`` results in, Plotly figures out).

The Theory lab page and the notebooks call these same builders on the same results, so a
chart in a notebook and in the app are the same chart. Colours follow ``METHOD_COLORS``:
exact pi_alpha in black, token-level temperature in blue, Power-SMC in red, MH in green.

At ~500 lines this module is over the usual 400: it is twelve short, independent
builders sharing one layout helper, and splitting them would only scatter that list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from powersmc_core.plotting.style import METHOD_COLORS, particle_color
from powersmc_core.theory import PowerComparison, RenyiIdentity, WeightVariance, ZhatCheck

__all__ = [
    "ess_traces_figure",
    "mh_vs_smc_figure",
    "power_comparison_figure",
    "renyi_diagnostics_figure",
    "renyi_identity_figure",
    "renyi_variance_figure",
    "resampling_counts_figure",
    "tau_star_figure",
    "tv_curves_figure",
    "tv_vs_n_figure",
    "weight_variance_figure",
    "zhat_figure",
]

SCHEDULE_COLORS = {"constant": "#d62728", "linear": "#ff7f0e", "adaptive": "#8c564b"}
# (dash, marker) per schedule: linear and adaptive often coincide on a toy (the adaptive
# schedule's CESS rarely brakes below its ramp), so colour alone would hide one under the other.
SCHEDULE_STYLES = {
    "constant": ("solid", "circle"),
    "linear": ("dash", "square"),
    "adaptive": ("dot", "diamond"),
}
_TV_FLOOR = 1e-4  # a mean TV of exactly 0 (a degenerate toy) is drawn here on the log axis
_TINY = 1e-30  # floor for log axes: a variance of exactly 0 (tau = 1/alpha) is drawn here


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        template="plotly_white",
        # Legend under the plot: long labels never collide with the title or the data.
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0},
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        height=kwargs.pop("height", 480),
        **kwargs,
    )
    return fig


def power_comparison_figure(result: PowerComparison, top: int | None = 20) -> go.Figure:
    """Grouped bars over sequences (largest pi_alpha first): p, token-level T = 1/alpha, pi_alpha."""
    frame = result.frame()
    if top is not None:
        frame = frame.head(top)
    fig = go.Figure()
    for column, name, color in (
        ("p", "p(y)  (alpha = 1)", METHOD_COLORS["base"]),
        ("token_temperature", f"token-level T = 1/{result.alpha:g}", METHOD_COLORS["lowtemp"]),
        ("pi_alpha", f"pi_alpha ∝ p^{result.alpha:g}  (exact)", METHOD_COLORS["exact"]),
    ):
        fig.add_bar(
            x=frame["sequence"],
            y=frame[column],
            name=name,
            marker_color=color,
            hovertemplate="%{x}<br>%{y:.4f}<extra>%{fullData.name}</extra>",
        )
    title = (
        f"alpha = {result.alpha:g}: TV(pi_alpha, token T) = {result.tv_power_vs_temperature:.3f}, "
        f"TV(pi_alpha, p) = {result.tv_power_vs_p:.3f}"
    )
    return _layout(fig, title, "sequence y", "probability", barmode="group")


def tv_curves_figure(curves: pd.DataFrame | Mapping[str, pd.DataFrame]) -> go.Figure:
    """Exact TVs against alpha; a mapping draws one model per dash style."""
    frames = {"": curves} if isinstance(curves, pd.DataFrame) else dict(curves)
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    fig = go.Figure()
    for k, (label, df) in enumerate(frames.items()):
        for column, name, color in (
            ("tv_power_vs_temperature", "TV(pi_alpha, token T=1/alpha)", METHOD_COLORS["lowtemp"]),
            ("tv_power_vs_p", "TV(pi_alpha, p)", METHOD_COLORS["exact"]),
            ("tv_temperature_vs_p", "TV(token T=1/alpha, p)", METHOD_COLORS["base"]),
        ):
            full = f"{name} {label}".strip()
            fig.add_scatter(
                x=df["alpha"],
                y=df[column],
                mode="lines+markers",
                name=full,
                line={"color": color, "dash": dashes[k % len(dashes)]},
                hovertemplate="alpha=%{x:.2f}<br>TV=%{y:.4f}<extra>%{fullData.name}</extra>",
            )
    fig.update_xaxes(type="log")
    return _layout(
        fig, "Exact total variation as alpha grows", "alpha (log scale)", "total variation"
    )


def weight_variance_figure(
    result: WeightVariance,
    labels: list[str] | None = None,
    max_rows: int = 40,
    y_range_log10: tuple[float, float] = (-20.0, 6.0),
    legend_title: str = "next-token distribution",
) -> go.Figure:
    """Var_q[w]/E[w]^2 and Var_q[log w] against tau (log axes), one line per distribution.

    ``labels`` name the rows (e.g. "p(· | a b)": the prefix each row conditions on), under
    ``legend_title``; without them the rows read "row 0", "row 1", ...

    Both are exactly 0 at tau = 1/alpha: the lines drop off the bottom of the view there. The
    view is clipped to ``y_range_log10`` (far from 1/alpha the variance reaches 1e100 and more).
    """
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Var_q[w] / E_q[w]²", "Var_q[log w]"),
        horizontal_spacing=0.1,
    )
    n = min(max_rows, result.log_relative_variance.shape[0])
    for i in range(n):
        label = labels[i] if labels is not None else f"row {i}"
        for col, values in ((1, result.relative_variance[i]), (2, result.log_weight_variance[i])):
            fig.add_scatter(
                x=result.taus,
                y=np.maximum(values, _TINY),
                mode="lines",
                line={"color": particle_color(i), "width": 1.2},
                opacity=0.7,
                name=label,
                legendgroup=label,
                showlegend=col == 1 and n <= 12,
                hovertemplate="tau=%{x:.4f}<br>%{y:.3g}<extra>%{fullData.name}</extra>",
                row=1,
                col=col,
            )
    for col in (1, 2):
        fig.add_vline(
            x=1.0 / result.alpha,
            line_dash="dash",
            line_color=METHOD_COLORS["exact"],
            row=1,
            col=col,
        )
    ticks = [
        t for t in (0.05, 0.1, 0.25, 0.5, 1, 2, 4) if result.taus.min() <= t <= result.taus.max()
    ]
    fig.update_xaxes(type="log", title_text="proposal temperature tau", tickvals=ticks)
    fig.update_yaxes(type="log", exponentformat="power", range=list(y_range_log10))
    return _layout(
        fig,
        f"w = p^alpha / q_tau, alpha = {result.alpha:g}: zero variance at tau = 1/alpha = "
        f"{1 / result.alpha:.3g} (dashed)",
        "",
        "",
        height=460,
        legend_title_text=legend_title,
    )


def tau_star_figure(results: Mapping[str, WeightVariance]) -> go.Figure:
    """|alpha·tau* - 1| per distribution, per family: how exactly the minimiser sits at 1/alpha."""
    fig = go.Figure()
    for k, (label, result) in enumerate(results.items()):
        err = np.abs(result.alpha * result.tau_star - 1.0)
        err = np.where(np.isnan(err), np.nan, np.maximum(err, _TINY))
        fig.add_scatter(
            x=np.arange(len(err)),
            y=err,
            mode="markers",
            name=f"{label} (alpha={result.alpha:g})",
            marker={"color": particle_color(k)},
            hovertemplate="row %{x}<br>|alpha tau* - 1| = %{y:.2e}<extra>%{fullData.name}</extra>",
        )
    fig.update_yaxes(type="log", exponentformat="power")
    return _layout(
        fig, "Located minimiser tau* vs 1/alpha", "distribution index", "|alpha·tau* − 1|"
    )


def renyi_identity_figure(result: RenyiIdentity) -> go.Figure:
    """Every sampled log w at tau = 1/alpha against (1 - alpha)·H_alpha of its row: the line y = x."""
    draws = result.log_weight.shape[1]
    x = np.repeat(result.renyi_term, draws)
    y = result.log_weight.reshape(-1)
    fig = go.Figure()
    fig.add_scatter(
        x=x,
        y=y,
        mode="markers",
        name="log w of a sampled token",
        marker={"color": METHOD_COLORS["smc"], "size": 6, "opacity": 0.6},
        hovertemplate="(1-alpha)H=%{x:.6f}<br>log w=%{y:.6f}<extra></extra>",
    )
    lo, hi = float(np.min(x)), float(np.max(x))
    fig.add_scatter(
        x=[lo, hi],
        y=[lo, hi],
        mode="lines",
        name="y = x",
        line={"color": METHOD_COLORS["exact"], "dash": "dash"},
    )
    title = (
        f"log w = (1 − alpha)·H_alpha exactly (alpha = {result.alpha:g}; "
        f"max error {result.max_abs_error:.1e})"
    )
    return _layout(fig, title, "(1 − alpha)·H_alpha(p(·|prefix))", "log incremental weight")


def renyi_variance_figure(frame: pd.DataFrame) -> go.Figure:
    """Per step: across-particle Var(log G) (markers) vs (alpha - 1)^2 Var(H_alpha) (line)."""
    fig = go.Figure()
    fig.add_scatter(
        x=frame["step"],
        y=frame["predicted_variance"],
        mode="lines",
        name="(alpha − 1)²·Var_i H_alpha",
        line={"color": METHOD_COLORS["exact"]},
    )
    fig.add_scatter(
        x=frame["step"],
        y=frame["var_log_increment"],
        mode="markers",
        name="Var_i log G_i (recorded)",
        marker={"color": METHOD_COLORS["smc"], "size": 8, "symbol": "circle-open"},
    )
    # From zero: at tau = 1/alpha both series can be ~1e-30 (float noise), not a signal.
    fig.update_yaxes(rangemode="tozero")
    return _layout(
        fig, "Across-particle variance of log-weight increments", "token t", "variance (nats²)"
    )


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks covering [low, high] (at least the two around it): labelled log axes
    without Plotly's unlabelled minor digits ("9 8 7 … 2") between decades."""
    low, high = max(low, _TV_FLOOR), max(high, _TV_FLOOR)
    ticks = [m * 10.0**e for e in range(-6, 2) for m in (1, 2, 5)]
    inside = [t for t in ticks if low <= t <= high]
    below = [t for t in ticks if t < low][-1:]
    above = [t for t in ticks if t > high][:1]
    return below + inside + above


def tv_vs_n_figure(frame: pd.DataFrame) -> go.Figure:
    """Mean TV(weighted estimate, pi_alpha) ± 2 s.e. against N on log-log axes, with slope -1/2.

    One line per group of ``schedule`` (and ``method``/``model`` columns when present); the
    label names only the columns that vary, so one method over three schedules reads
    "constant", "linear", "adaptive". Lines differ in colour, dash and marker and are dodged
    slightly in N, so schedules with equal values stay visible; ticks sit at the N values run.
    """
    keys = [c for c in ("model", "method", "schedule") if c in frame.columns]
    varying = [c for c in keys if frame[c].nunique() > 1] or keys[-1:]
    fig = go.Figure()
    groups = list(frame.groupby(keys, sort=False)) if keys else [((), frame)]
    anchor = None
    for k, (key, df) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        named = dict(zip(keys, key, strict=True))
        label = " · ".join(str(named[c]) for c in varying) or "Power-SMC"
        schedule = named.get("schedule")
        color = SCHEDULE_COLORS.get(schedule, particle_color(k))
        if named.get("method", "smc") != "smc":
            color = METHOD_COLORS.get(named["method"], color)
        dash, symbol = SCHEDULE_STYLES.get(schedule, ("solid", "circle"))
        n = df["n_particles"].to_numpy(dtype=float)
        dodge = 1.0 + 0.04 * (k - (len(groups) - 1) / 2)  # multiplicative: the x axis is log
        fig.add_scatter(
            x=n * dodge,
            y=np.maximum(df["mean_tv"].to_numpy(dtype=float), _TV_FLOOR),
            customdata=np.stack([n, df["mean_tv"], 2 * df["stderr"]], 1),
            error_y={"type": "data", "array": 2 * df["stderr"], "visible": True},
            mode="lines+markers",
            name=label,
            line={"color": color, "dash": dash},
            marker={"symbol": symbol, "size": 8},
            hovertemplate=(
                "N=%{customdata[0]:.0f}<br>mean TV=%{customdata[1]:.4f} ± %{customdata[2]:.4f}"
                "<extra>%{fullData.name}</extra>"
            ),
        )
        if anchor is None:
            anchor = (float(n[0]), max(float(df["mean_tv"].iloc[0]), _TV_FLOOR))
    n_values = np.asarray(sorted(frame["n_particles"].unique()), dtype=float)
    if anchor is not None:
        fig.add_scatter(
            x=n_values,
            y=anchor[1] * (n_values / anchor[0]) ** -0.5,
            mode="lines",
            name="slope −1/2",
            line={"color": "#999999", "dash": "dot"},
            hoverinfo="skip",
        )
    high = frame["mean_tv"] + 2 * frame["stderr"].fillna(0.0)
    low = frame["mean_tv"] - 2 * frame["stderr"].fillna(0.0)
    y_ticks = _log_ticks(float(low[low > 0].min()) if (low > 0).any() else 0.0, high.max())
    fig.update_xaxes(type="log", tickvals=list(n_values), ticktext=[f"{v:g}" for v in n_values])
    fig.update_yaxes(type="log", tickvals=y_ticks, ticktext=[f"{t:g}" for t in y_ticks])
    return _layout(
        fig,
        "SMC estimate converges to the exact pi_alpha, per schedule",
        "particles N (log scale)",
        "mean TV to exact pi_alpha ± 2 s.e. (log scale)",
    )


def ess_traces_figure(frame: pd.DataFrame) -> go.Figure:
    """Mean ESS/N (± 2 s.e. over runs) per step, one line per schedule; open markers show how
    often that step resampled (right axis). Schedules differ in colour, dash and marker and
    are dodged by a tenth of a step, so a schedule equal to another stays visible."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    schedules = list(dict.fromkeys(frame["schedule"]))
    for k, (schedule, df) in enumerate(frame.groupby("schedule", sort=False)):
        stats = df.groupby("step").agg(
            mean=("ess_fraction", "mean"),
            sd=("ess_fraction", "std"),
            runs=("ess_fraction", "size"),
            resampled=("resampled", "mean"),
        )
        se = (stats["sd"].fillna(0.0) / np.sqrt(stats["runs"])).to_numpy()
        color = SCHEDULE_COLORS.get(schedule, particle_color(k))
        dash, symbol = SCHEDULE_STYLES.get(schedule, ("solid", "circle"))
        x = stats.index.to_numpy(dtype=float) + 0.1 * (k - (len(schedules) - 1) / 2)
        fig.add_scatter(
            x=x,
            y=stats["mean"],
            customdata=stats.index,
            error_y={"type": "data", "array": 2 * se, "visible": True},
            mode="lines+markers",
            name=f"{schedule}: ESS/N",
            line={"color": color, "dash": dash},
            marker={"symbol": symbol, "size": 8},
            hovertemplate="t=%{customdata}<br>ESS/N=%{y:.3f}<extra>%{fullData.name}</extra>",
            secondary_y=False,
        )
        fig.add_scatter(
            x=x,
            y=stats["resampled"],
            customdata=stats.index,
            mode="markers",
            name=f"{schedule}: resampling rate",
            marker={"color": color, "symbol": f"{symbol}-open", "size": 10},
            hovertemplate="t=%{customdata}<br>resampled in %{y:.0%} of runs"
            "<extra>%{fullData.name}</extra>",
            secondary_y=True,
        )
    fig.update_yaxes(range=[0, 1.05], secondary_y=False)
    fig.update_yaxes(title_text="fraction of runs resampling (open markers)", secondary_y=True)
    fig.update_yaxes(range=[0, 1.05], secondary_y=True)
    # The left title goes through _layout: its yaxis_title would otherwise blank it.
    return _layout(
        fig,
        "ESS with and without exponent bridging",
        "token t",
        "mean ESS / N before resampling",
    )


def zhat_figure(checks: Mapping[str, ZhatCheck]) -> go.Figure:
    """mean Ẑ / Z_alpha ± 2 s.e. (unbiased: covers 1) and exp(mean log Ẑ) / Z (Jensen: below 1)."""
    fig = go.Figure()
    labels = list(checks)
    fig.add_scatter(
        x=labels,
        y=[c.ratio for c in checks.values()],
        error_y={"type": "data", "array": [2 * c.ratio_stderr for c in checks.values()]},
        mode="markers",
        name="mean Ẑ / Z  ± 2 s.e.",
        marker={"color": METHOD_COLORS["smc"], "size": 10},
    )
    fig.add_scatter(
        x=labels,
        y=[float(np.exp(c.mean_log_ratio)) for c in checks.values()],
        mode="markers",
        name="exp(mean log Ẑ) / Z",
        marker={"color": METHOD_COLORS["base"], "size": 10, "symbol": "x"},
    )
    fig.add_hline(y=1.0, line_dash="dash", line_color=METHOD_COLORS["exact"])
    return _layout(fig, "Ẑ is unbiased for Z_alpha = Σ_y p(y)^alpha", "setting", "ratio to exact Z")


def mh_vs_smc_figure(frame: pd.DataFrame, title: str | None = None) -> go.Figure:
    """TV of the returned sample's law to pi_alpha against mean token forwards per sample."""
    fig = go.Figure()
    names = {"mh": "MH power sampling (K MH steps/block)", "smc": "Power-SMC (N particles)"}
    for method, df in frame.groupby("method", sort=False):
        label = "K" if method == "mh" else "N"
        fig.add_scatter(
            x=df["token_forwards"],
            y=df["tv"],
            mode="lines+markers+text",
            text=[f"{label}={b}" for b in df["budget"]],
            textposition="top center",
            name=names.get(method, method),
            line={"color": METHOD_COLORS.get(method, "#333333")},
            hovertemplate="forwards=%{x:.1f}<br>TV=%{y:.4f}<extra>%{text}</extra>",
        )
    floor, sd = float(frame["tv_floor"].iloc[0]), float(frame["tv_floor_sd"].iloc[0])
    fig.add_hrect(
        y0=max(floor - 2 * sd, 0.0),
        y1=floor + 2 * sd,
        fillcolor="#cccccc",
        opacity=0.4,
        line_width=0,
        annotation_text="Monte-Carlo floor (exact draws)",
        annotation_position="bottom right",
    )
    fig.update_xaxes(type="log")
    return _layout(
        fig, title or "Cost vs accuracy", "token forwards per returned sample", "TV to pi_alpha"
    )


def renyi_diagnostics_figure(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Two rows sharing t: the spread of H_alpha across particles, then ESS/N with resamplings."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("Rényi entropy H_alpha(p(·|prefix_i)) across particles", "ESS / N"),
    )
    fig.add_scatter(
        x=frame["step"],
        y=frame["renyi_mean"],
        error_y={"type": "data", "array": frame["renyi_std"], "visible": True},
        mode="lines+markers",
        name="mean ± sd of H_alpha",
        line={"color": METHOD_COLORS["lowtemp"]},
        row=1,
        col=1,
    )
    fig.add_bar(
        x=frame["step"],
        y=frame["renyi_wstd"],
        name="weighted sd of H_alpha",
        marker_color="#9ecae1",
        opacity=0.6,
        row=1,
        col=1,
    )
    fig.add_scatter(
        x=frame["step"],
        y=frame["ess_fraction"],
        mode="lines+markers",
        name="ESS/N",
        line={"color": METHOD_COLORS["smc"]},
        row=2,
        col=1,
    )
    res = frame[frame["resampled"]]
    fig.add_scatter(
        x=res["step"],
        y=res["ess_fraction"],
        mode="markers",
        name="resampled",
        marker={"color": METHOD_COLORS["exact"], "symbol": "triangle-down", "size": 11},
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="nats", row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], row=2, col=1)
    fig.update_xaxes(title_text="token t", row=2, col=1)
    return _layout(fig, title or "Rényi entropy spread and ESS", "", "", height=560)


def resampling_counts_figure(frame: pd.DataFrame) -> go.Figure:
    """Resampling events per schedule (mean over seeds), grouped by prompt."""
    stats = frame.groupby(["schedule", "prompt"], sort=False)["n_resamples"].mean().reset_index()
    fig = go.Figure()
    for schedule, df in stats.groupby("schedule", sort=False):
        fig.add_bar(
            x=[f"prompt {p}" for p in df["prompt"]],
            y=df["n_resamples"],
            name=schedule,
            marker_color=SCHEDULE_COLORS.get(schedule, "#333333"),
        )
    return _layout(
        fig, "Resampling events by bridging schedule", "prompt", "resamplings", barmode="group"
    )
