"""Helpers every run chart shares: stacking records, labels, layout, honest axis ranges.

``stack`` turns records into (T, N) arrays in one numpy call per field; ``labels``
calls the token-label function once per distinct token, not once per cell.
``plain`` makes model or visitor text (particle texts, tokens, answers, prompts) show
as written: Plotly renders ``<a href>``, ``<b>`` and the like inside hover labels, tick
labels and legends, so such text is entity-escaped and goes in ``customdata``/``text``,
never into a ``hovertemplate`` (where ``%{...}`` would be substituted too).
``min_span`` widens an axis or colour range to a minimum span, so float noise
(1e-7 nats between uniform weights) is never stretched over a whole axis or colour
bar as if it were structure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from powersmc_core.engine.records import StepRecord

__all__ = [
    "HEIGHT",
    "MARGIN",
    "TokenLabel",
    "empty",
    "labels",
    "layout",
    "min_span",
    "plain",
    "snippet",
    "stack",
    "step_ticks",
]

TokenLabel = Callable[[int], str]

HEIGHT = 330
# Top margin: the title's row, then the legend's row above the plot (no overlap).
MARGIN = {"l": 60, "r": 20, "t": 80, "b": 50}


def _default_label(token: int) -> str:
    return str(token)


def plain(text: object) -> str:
    """``text`` entity-escaped for Plotly: ``<a href>``, ``<b>``, ``&`` and ``%{x}`` are shown
    as written, never rendered or substituted (Plotly decodes the entities when drawing)."""
    return (
        str(text)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("%", "&#37;")
    )


def labels(records: Sequence[StepRecord], token_label: TokenLabel | None) -> np.ndarray:
    """(T, N) strings: the token each slot appended at each step ('·' once finished),
    escaped by ``plain`` (safe in hover text and labels).

    The label function runs once per distinct token id; cells are filled by indexing.
    """
    label = token_label or _default_label
    if not records:
        return np.empty((0, 0), dtype=object)
    tokens = np.array([r.tokens for r in records], dtype=np.int64).reshape(len(records), -1)
    distinct, inverse = np.unique(tokens, return_inverse=True)
    # Token strings come from the model's vocabulary: escaped like any text shown in a chart.
    names = np.array(
        ["· (finished)" if tok < 0 else plain(repr(label(int(tok)))) for tok in distinct],
        dtype=object,
    )
    return names[inverse].reshape(tokens.shape)


def stack(records: Sequence[StepRecord], name: str) -> np.ndarray:
    """(T, N) float array of one per-particle field, non-finite values as NaN (gaps)."""
    out = np.array([getattr(r, name) for r in records], dtype=np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


def min_span(values: np.ndarray, span: float, *, floor: float | None = None) -> list[float]:
    """[lo, hi] covering the finite ``values``, widened about their middle to >= ``span``.

    ``floor`` (e.g. 0 for a standard deviation) is never crossed: the range then grows
    upwards instead. No finite value: [0, span] (or [floor, floor + span]).
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        base = 0.0 if floor is None else floor
        return [base, base + span]
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < span:
        middle = 0.5 * (lo + hi)
        lo, hi = middle - span / 2, middle + span / 2
    if floor is not None and lo < floor:
        lo, hi = floor, max(hi, floor + span)
    pad = 0.04 * (hi - lo)
    return [lo - (pad if floor is None or lo - pad >= floor else 0.0), hi + pad]


def layout(fig: go.Figure, title: str, x_title: str, y_title: str, **kwargs: Any) -> go.Figure:
    """Title top-left in the margin, legend in its own row between title and plot."""
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "y": 0.98, "yanchor": "top"},
        height=kwargs.pop("height", HEIGHT),
        margin=MARGIN,
        hovermode=kwargs.pop("hovermode", "closest"),
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 1, "xanchor": "right"},
        **kwargs,
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def step_ticks(fig: go.Figure, records: Sequence[StepRecord]) -> None:
    """Token indices are integers: tick every step on short runs (no 1.5, 2.5 ticks)."""
    if len(records) <= 24:
        fig.update_xaxes(dtick=1 if len(records) <= 12 else 2, tick0=0)


def empty(title: str, x_title: str, y_title: str) -> go.Figure:
    """A figure saying "no steps yet", with the chart's titles."""
    fig = go.Figure()
    fig.add_annotation(
        text="no steps yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
    )
    return layout(fig, title, x_title, y_title)


def snippet(text: str, width: int = 60) -> str:
    """The last ``width`` characters of a particle's text, newlines shown as ⏎, escaped by
    ``plain`` (cut first, so that no entity is cut in half)."""
    text = str(text).replace("\n", " ⏎ ")
    return plain(text if len(text) <= width else "…" + text[-width:])
