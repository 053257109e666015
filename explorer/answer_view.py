"""A run's answers for the Live SMC page: the answer posterior and a decision.

``answer_view(entry, rule)`` reads a run's result as a law over answers
(``powersmc_core.answers.extract``) and returns what the page shows: the answer the rule
decides, a one-line headline and the bounded bar chart
(``powersmc_core.plotting.answer_chart``). Toy models are graded on the whole text (the
"exact" extractor, as ``presets.grade`` does); LLM text by the "auto" rule (\\boxed{},
"####", then the last number). The page only picks the rule and draws.

What it guarantees:

- only finished particles (EOS or the stop rule) are read for an answer; the rest form
  the "(unfinished)" bucket; a decided particle that did not finish, or a vote with no
  finished answer while some particles are unfinished, reads "unfinished", never graded
  (a stopped run's "6 * 7 - 5 =" is no answer 5);
- the headline names its statistic: "vote share" (fraction of particles) under the
  majority vote, "weighted mass" P̂ otherwise, and the chart's bars are that statistic;
- no known answer (free text, a toy prompt whose mode is the empty completion): no view,
  so neither a chart nor a grade.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from explorer.history import RunEntry
from explorer.inputs import escape_markdown
from powersmc_core.answers.extract import (
    RULES,
    AnswerPosterior,
    decide,
    result_posterior,
    rule_statistic,
)
from powersmc_core.answers.grading import is_equivalent
from powersmc_core.plotting.answer_chart import answer_posterior_figure

__all__ = ["RULES", "RULE_LABELS", "AnswerView", "answer_view", "has_answers"]

RULE_LABELS = {
    "chosen": "chosen: the sampler's own draw (particle ~ W)",
    "weighted-vote": "weighted vote: argmax of the weighted mass P̂(answer)",
    "majority-vote": "majority vote: largest vote share (most particles, weights ignored)",
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
    statistic: str = "weighted mass"  # what the headline's number and the bars measure
    value: float = 0.0  # that statistic for the decided answer (or its bucket)
    unfinished: bool = False  # the decided particle never finished: no answer, no grade
    correct: bool | None = None  # graded against the known answer; None: not graded


def has_answers(entry: RunEntry) -> bool:
    """Whether ``entry`` gets an answer view: a result with texts and a known answer."""
    result = entry.result
    return result is not None and result.texts is not None and bool(entry.reference)


def answer_view(entry: RunEntry, rule: str = "weighted-vote") -> AnswerView | None:
    """The answer posterior of ``entry``'s result under ``rule``; None without a result,
    particle texts (an uploaded trace without its result line) or a known answer."""
    if not has_answers(entry):
        return None
    result = entry.result
    assert result is not None  # has_answers
    extractor = "exact" if entry.toy else "auto"
    posterior = result_posterior(result, extractor=extractor)
    statistic = rule_statistic(rule)
    unfinished = rule == "chosen" and not posterior.is_finished(result.chosen)
    decided = None if unfinished else decide(posterior, rule)
    # A vote with no finished answer while particles are still unfinished is not a wrong
    # answer: the run did not get that far (a stopped run of echoes reads "unfinished").
    unfinished = unfinished or (decided is None and posterior.unfinished > 0)
    values = posterior.shares if statistic == "vote share" else posterior.probabilities
    kinds = posterior.bucket_kinds
    if decided is not None:
        value = (posterior.share if statistic == "vote share" else posterior.probability)(decided)
    else:  # the share of what is no answer: the unfinished bucket, or every non-answer one
        value = sum(
            v
            for v, t in zip(values, kinds, strict=True)
            if (t == "unfinished" if unfinished else t != "answer")
        )
    # Model output and presets are shown as text, never as markdown (links, images).
    reference = str(entry.reference)
    if unfinished:
        shown, correct = "unfinished (the particle did not end: not graded)", None
    elif decided is None:
        shown, correct = "(no answer)", False
    else:
        correct = (
            is_equivalent(decided, reference) if not entry.toy else decided == reference.strip()
        )
        shown = f"**{escape_markdown(decided, 120)}** " + ("✓" if correct else "✗")
    symbol = "vote share" if statistic == "vote share" else "weighted mass P̂"
    headline = (
        f"Decided answer ({rule}): {shown}, {symbol} = {value:.3f}"
        f" · known answer: {escape_markdown(reference, 120)}"
    )
    figure = answer_posterior_figure(posterior, top=TOP, decided=decided, statistic=statistic)
    return AnswerView(
        posterior, rule, decided, headline, figure, statistic, value, unfinished, correct
    )
