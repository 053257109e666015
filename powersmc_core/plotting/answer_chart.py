r"""The weighted answer posterior as a bar chart (an ``AnswerPosterior`` in, a figure out).

A particle system read through an answer extractor is a law over answers,
P̂(a) = Σ_i W_i·1[a(y_i) = a] (``powersmc_core.answers.extract``). Its bar chart must stay
readable for any N, so the number of bars is bounded:

    bars = answer_bars(post, top=8)   # top-8 answers, "(other: m answers)", "(no answer)",
                                      # "(unfinished)"
    fig = answer_posterior_figure(post, top=8, decided=decide(post, "weighted-vote"))
    fig = answer_posterior_figure(post, decided=..., statistic="vote share")  # majority vote

The top ``top`` answers by mass keep their own bars, in the posterior's order; the rest
are summed into one "other" bar; the no-answer bucket follows (always shown, never
dropped), then the unfinished particles if any, so the bars always sum to 1. A bar's
height is the weighted mass P̂(a) (``statistic="weighted mass"``, the weighted vote's
statistic) or the vote share #{i : a(y_i) = a}/N (``"vote share"``, the majority vote's);
the title says which. The probability axis is fixed to [0, 1]: a posterior that
is nearly uniform over many answers must look flat, not auto-scaled into structure.
Costs: O(number of answers), no loop over particles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from powersmc_core.answers.extract import NO_ANSWER, UNFINISHED, AnswerPosterior
from powersmc_core.answers.grading import normalise
from powersmc_core.plotting.common import layout, plain, snippet
from powersmc_core.plotting.style import METHOD_COLORS

__all__ = ["STATISTICS", "answer_bars", "answer_posterior_figure"]

# Bar height -> (column of ``answer_bars``, chart title, axis title).
STATISTICS = {
    "weighted mass": (
        "probability",
        "Weighted answer posterior P̂(a) = Σ W_i·1[a(y_i) = a] (weighted mass)",
        "weighted mass P̂(answer)",
    ),
    "vote share": (
        "share",
        "Answer vote share #{i : a(y_i) = a} / N (fraction of particles, weights ignored)",
        "vote share (fraction of particles)",
    ),
}

LABEL_WIDTH = 40  # characters of an answer shown under its bar (the hover shows it whole)
_BAR = "#9ecae1"  # an answer's bar; the decided answer is drawn in Power-SMC red


def answer_bars(posterior: AnswerPosterior, top: int = 8, by: str = "probability") -> pd.DataFrame:
    """Bars of the chart: columns answer, probability (weighted mass), share (vote share),
    count, kind ('answer', 'other', 'none' or 'unfinished'), at most ``top`` + 3 rows, the
    no-answer bucket then the unfinished one last; probabilities and shares each sum to 1.
    Answers are ranked by ``by`` ("probability" or "share"; ties: the posterior's order)."""
    if by not in ("probability", "share"):
        raise ValueError(f"by must be 'probability' or 'share', got {by!r}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an integer >= 1 (answers with their own bar), got {top!r}")
    kinds = np.array(posterior.bucket_kinds, dtype=object)
    labels = np.array(posterior.labels, dtype=object)
    mass = np.asarray(posterior.probabilities, dtype=np.float64)
    share = np.asarray(posterior.shares, dtype=np.float64)
    count = np.asarray(posterior.counts, dtype=np.int64)
    answered = np.flatnonzero(kinds == "answer")  # by descending mass (AnswerPosterior's order)
    rank = mass if by == "probability" else share
    answered = answered[np.argsort(-rank[answered], kind="stable")]
    kept, rest = answered[:top], answered[top:]
    frame = pd.DataFrame(
        {
            "answer": labels[kept].tolist(),
            "probability": mass[kept],
            "share": share[kept],
            "count": count[kept],
            "kind": "answer",
        }
    )
    extra = []
    for label, kind, where in (
        (f"(other: {rest.size} answers)", "other", rest),
        (NO_ANSWER, "none", np.flatnonzero(kinds == "none")),
        (UNFINISHED, "unfinished", np.flatnonzero(kinds == "unfinished")),
    ):
        if where.size:
            extra.append(
                {
                    "answer": label,
                    "probability": float(mass[where].sum()),
                    "share": float(share[where].sum()),
                    "count": int(count[where].sum()),
                    "kind": kind,
                }
            )
    if extra:
        frame = pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)
    return frame.astype({"probability": "float64", "share": "float64", "count": "int64"})


def _tick_labels(answers: list[str]) -> list[str]:
    """Short, distinct category labels (Plotly merges bars that share a category)."""
    short = [snippet(a, LABEL_WIDTH) for a in answers]
    seen: dict[str, int] = {}
    out = []
    for s in short:
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s} #{seen[s]}")
    return out


def answer_posterior_figure(
    posterior: AnswerPosterior,
    top: int = 8,
    decided: str | None = None,
    title: str | None = None,
    statistic: str = "weighted mass",
) -> go.Figure:
    """Bar chart of ``answer_bars``, bars of height ``statistic`` ("weighted mass" or
    "vote share", named in the title and axis); the bar of ``decided`` (a decision rule's
    answer, e.g. ``decide(post, "weighted-vote")``) is drawn in red. Hover: answer in
    full, both statistics, count."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {list(STATISTICS)}, got {statistic!r}")
    column, default_title, axis = STATISTICS[statistic]
    bars = answer_bars(posterior, top, by=column)
    key = None if decided is None else normalise(decided)
    # Answers get blue bars, the decided one red; "other" and "no answer" are grey.
    colors = [
        (METHOD_COLORS["smc"] if key is not None and normalise(a) == key else _BAR)
        if kind == "answer"
        else METHOD_COLORS["base"]
        for a, kind in zip(bars["answer"], bars["kind"], strict=True)
    ]
    fig = go.Figure(
        go.Bar(
            x=_tick_labels(bars["answer"].tolist()),
            y=bars[column],
            marker_color=colors,
            text=[f"{p:.2f}" for p in bars[column]],
            textposition="outside",
            customdata=np.stack(
                [
                    np.array([plain(a) for a in bars["answer"]], dtype=object),
                    bars["count"],
                    bars["probability"],
                    bars["share"],
                ],
                axis=1,
            ),
            hovertemplate="%{customdata[0]}<br>weighted mass P̂ = %{customdata[2]:.4f}"
            "<br>vote share = %{customdata[3]:.4f}<br>%{customdata[1]} particles"
            "<extra></extra>",
            name=axis,
        )
    )
    layout(fig, default_title if title is None else title, "answer", axis)
    fig.update_yaxes(range=[0, 1.08])  # fixed: probabilities, never auto-scaled
    fig.update_xaxes(type="category")
    return fig
