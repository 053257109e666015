"""What look-ahead SMC looked at, one block boundary at a time (records and extras only).

At a boundary each particle i scores its next tokens v by ψ_i(v) = p(v | y_i)^a · ζ̂_i(v),
where ζ̂_i(v) = 1/M Σ_m Π_s p(c_s)^a / q(c_s) estimates the future power mass behind v
from M rollouts c of depth H (``engine.lookahead``); the particles are then resampled on
W_i·S_i, S_i = Σ_v ψ_i(v), so a particle whose candidates carry future mass has offspring.

``lookahead_figure`` draws one boundary of ``result.extras["lookahead"]`` (a list of
``engine.lookahead.Boundary``, or the same fields as mappings when read back from a
file): per particle (the first 16), its top candidates by ψ as bars of log ζ̂ labelled by
their token text (escaped by ``plain``), and beside them its offspring count (0: dropped,
> 1: copied). No Streamlit here: the app and notebooks both call it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from powersmc_core.plotting.common import HEIGHT, TokenLabel, empty, layout, plain

__all__ = ["boundary_title", "lookahead_boundaries", "lookahead_figure"]

RANK_COLORS = ("#17becf", "#9edae5", "#c7c7c7")  # 1st, 2nd, 3rd candidate by ψ
OFFSPRING_COLORS = {"dropped": "#d62728", "kept": "#7f7f7f", "copied": "#2ca02c"}


def _field(boundary: Any, name: str) -> Any:
    """A boundary's field, from a ``Boundary`` or from a mapping (a trace read back)."""
    return boundary[name] if isinstance(boundary, Mapping) else getattr(boundary, name)


def lookahead_boundaries(extras: Mapping[str, Any] | None) -> list[Any]:
    """The boundaries a look-ahead run kept in its extras (empty for other methods)."""
    return list((extras or {}).get("lookahead") or [])


def boundary_title(boundary: Any) -> str:
    """'after token 3 (resampled)' or 'before the first token': where a boundary sits."""
    step = int(_field(boundary, "step"))
    where = "before the first token" if step == 0 else f"after token {step}"
    return f"{where} ({'resampled' if _field(boundary, 'resampled') else 'not resampled'})"


def lookahead_figure(
    boundaries: Sequence[Any], index: int = -1, token_label: TokenLabel | None = None
) -> go.Figure:
    """Boundary ``index`` (default: the last): candidates' log ζ̂ and each particle's offspring.

    Left: one row per particle, one bar per candidate (rank by ψ = p^a·ζ̂), bar length
    log ζ̂ (0: no future mass gained or lost, as for EOS where ζ = 1), the token text on
    the bar. Right: offspring o_i, the slots that continue particle i (Σ o_i = N; 1 each
    when the boundary did not resample).
    """
    title = "Look-ahead: candidates and survivors"
    if not boundaries:
        return empty(title, "log ζ̂ (estimated future mass)", "particle")
    boundary = boundaries[index]
    label = token_label or str
    candidates = [list(row) for row in _field(boundary, "candidates")]
    log_zeta = [list(row) for row in _field(boundary, "log_zeta")]
    offspring = np.asarray(_field(boundary, "offspring"), dtype=np.int64)
    shown = len(candidates)
    rows = [f"particle {i}" for i in range(shown)]
    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=True, column_widths=[0.76, 0.24], horizontal_spacing=0.07
    )
    ranks = max((len(r) for r in candidates), default=0)
    names: dict[int, str] = {}  # the label function runs once per distinct token
    for rank in range(ranks):
        tokens = [row[rank] if rank < len(row) else None for row in candidates]
        for tok in tokens:
            if tok is not None and tok not in names:
                names[tok] = plain(repr(label(int(tok))))  # vocabulary text: escaped
        texts = ["" if tok is None else names[tok] for tok in tokens]
        values = [
            row[rank] if rank < len(row) and np.isfinite(row[rank]) else np.nan for row in log_zeta
        ]
        fig.add_trace(
            go.Bar(
                y=rows,
                x=values,
                orientation="h",
                name=f"candidate {rank + 1} by ψ",
                marker_color=RANK_COLORS[rank % len(RANK_COLORS)],
                text=texts,
                # Outside: a bar of length log ζ̂ = 0 (EOS, a depth cut) still shows its token.
                textposition="outside",
                constraintext="none",  # readable at any bar thickness
                textfont={"size": 11},
                cliponaxis=False,
                customdata=texts,
                # Token text enters through customdata (escaped), never the template itself.
                hovertemplate="%{y}: token %{customdata}<br>log ζ̂ = %{x:.3f}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fate = np.where(offspring == 0, "dropped", np.where(offspring > 1, "copied", "kept"))
    fig.add_trace(
        go.Bar(
            y=rows,
            x=offspring[:shown],
            orientation="h",
            name="offspring",
            marker_color=[OFFSPRING_COLORS[f] for f in fate[:shown]],
            text=[f"{o} ({f})" for o, f in zip(offspring[:shown], fate[:shown], strict=True)],
            textposition="auto",
            hovertemplate="%{y}: %{x} offspring<extra></extra>",
        ),
        row=1,
        col=2,
    )
    layout(
        fig,
        f"{title} · boundary {boundary_title(boundary)}",
        "",
        "",
        height=max(HEIGHT, 110 + 26 * shown),
        barmode="group",
    )
    fig.update_xaxes(title_text="log ζ̂ (estimated future mass)", row=1, col=1)
    fig.update_xaxes(title_text="offspring", row=1, col=2, rangemode="tozero")
    fig.update_yaxes(autorange="reversed", row=1, col=1)  # particle 0 on top
    return fig
