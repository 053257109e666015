"""A run's answers for the Live SMC page: the weighted answer posterior and a decision.

``answer_view(entry, rule)`` reads a finished (or stopped) run's result as a law over
answers, P̂(a) = Σ_i W_i·1[a(y_i) = a] (``powersmc_core.answers.extract``), and returns what
the page shows: the answer the rule decides, a one-line headline and the bounded bar
chart (``powersmc_core.plotting.answer_chart``). Toy models are graded on the whole text (the
"exact" extractor, as ``presets.grade`` does); LLM text by the "auto" rule (\\boxed{},
"####", then the last number). The page only picks the rule and draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from explorer.history import RunEntry
from explorer.inputs import escape_markdown
from powersmc_core.answers.extract import RULES, AnswerPosterior, decide, result_posterior
from powersmc_core.plotting.answer_chart import answer_posterior_figure

__all__ = ["RULES", "RULE_LABELS", "AnswerView", "answer_view"]

RULE_LABELS = {
    "chosen": "chosen: the sampler's own draw (particle ~ W)",
    "weighted-vote": "weighted vote: argmax of P̂(answer)",
    "majority-vote": "majority vote: most particles, weights ignored",
}
TOP = 8  # answers with their own bar; the rest share one "other" bar


@dataclass(frozen=True)
class AnswerView:
    """What Live SMC shows under the final result for one decision rule."""

    posterior: AnswerPosterior
    rule: str
    decided: str | None  # None: the decided particle (or every particle) has no answer
    headline: str  # one line of markdown, model text escaped
    figure: go.Figure


def answer_view(entry: RunEntry, rule: str = "weighted-vote") -> AnswerView | None:
    """The answer posterior of ``entry``'s result under ``rule``; None without a result
    or particle texts (an uploaded trace without its result line)."""
    result = entry.result
    if result is None or result.texts is None:
        return None
    extractor = "exact" if entry.toy else "auto"
    posterior = result_posterior(result, extractor=extractor)
    decided = decide(posterior, rule)
    mass = posterior.probability(decided) if decided is not None else posterior.no_answer
    # Model output and presets are shown as text, never as markdown (links, images).
    shown = "(no answer)" if decided is None else f"**{escape_markdown(decided, 120)}**"
    headline = f"Decided answer ({rule}): {shown}, P̂ = {mass:.3f}"
    if entry.reference is not None:
        headline += f" · known answer: {escape_markdown(entry.reference, 120)}"
    figure = answer_posterior_figure(posterior, top=TOP, decided=decided)
    return AnswerView(posterior, rule, decided, headline, figure)
