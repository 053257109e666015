r"""Answers aggregated by weight: a particle system read as a distribution over answers.

A reasoning task is graded on its final answer, not on the string that leads to it. SMC
returns weighted particles {(y_i, W_i)}; pushing them through an answer extractor a(.)
gives the **weighted answer posterior**

    P̂(a) = Σ_i W_i · 1[a(y_i) = a],

the particle estimate of π_α(a(Y) = a), the push-forward of the target onto answers.
Particles with no extractable answer form their own bucket (``NO_ANSWER``), shown and
never dropped, so the probabilities always sum to 1.

    post = answer_posterior(texts, log_weights, extractor="auto", chosen=result.chosen)
    post = result_posterior(result, model.decode_batch)      # the same, from an SMCResult
    decide(post, "weighted-vote")                              # -> "42" (or None)
    post.rows()                                                # bar-chart rows

Decision rules (``RULES``):

- ``"chosen"``: the answer of the sampler's own draw (SMC draws ``chosen`` ~ W);
- ``"weighted-vote"``: argmax_a P̂(a) over extracted answers;
- ``"majority-vote"``: argmax_a #{i : a(y_i) = a}, weights ignored (self-consistency).

A vote is over extracted answers: the no-answer bucket wins only when nobody answered
(``decide`` then returns None). Ties go to the other statistic (count for the weighted
vote, mass for the majority), then to the answer seen first in particle order.
Answers are grouped by ``grading.normalise`` ("1/2", "0.5" and "\frac12" are one answer);
each group is shown as its first spelling. Costs: one extraction per particle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from powersmc_core.answers.grading import extract_answer, normalise
from powersmc_core.engine.records import SMCResult
from powersmc_core.engine.weights import normalise_log_weights

__all__ = [
    "NO_ANSWER",
    "RULES",
    "AnswerPosterior",
    "Extractor",
    "answer_posterior",
    "decide",
    "result_posterior",
]

RULES = ("chosen", "weighted-vote", "majority-vote")
NO_ANSWER = "(no answer)"  # label of the bucket of particles with no extractable answer

# A grading rule name ("auto", "boxed", ...) or any text -> answer function.
Extractor = str | Callable[[str], str | None]


@dataclass(frozen=True)
class AnswerPosterior:
    """P̂(a) over distinct answers, by descending mass, the no-answer bucket last."""

    keys: tuple[str | None, ...]  # canonical answer (grading.normalise); None: no answer
    labels: tuple[str, ...]  # first spelling of each answer; NO_ANSWER for the bucket
    probabilities: tuple[float, ...]  # P̂(a) = Σ_i W_i·1[a(y_i) = a]; sums to 1
    counts: tuple[int, ...]  # particles per answer
    particle_answers: tuple[str | None, ...]  # extracted answer of each particle, as written
    particle_keys: tuple[str | None, ...]  # its canonical form
    chosen: int | None = None  # the sampler's own draw, if known

    @property
    def no_answer(self) -> float:
        """Mass of the particles with no extractable answer."""
        return sum(p for k, p in zip(self.keys, self.probabilities, strict=True) if k is None)

    def probability(self, answer: str | None) -> float:
        """P̂ of the answer equivalent to ``answer`` (None: the no-answer bucket); 0 if absent."""
        key = None if answer is None else normalise(answer)
        return sum(p for k, p in zip(self.keys, self.probabilities, strict=True) if k == key)

    def rows(self) -> list[dict[str, float | int | str]]:
        """One dict per answer (label, probability, count): what a bar chart needs."""
        return [
            {"answer": label, "probability": p, "count": c}
            for label, p, c in zip(self.labels, self.probabilities, self.counts, strict=True)
        ]


def _extract(extractor: Extractor) -> Callable[[str], str | None]:
    if callable(extractor):
        return extractor
    extract_answer("", extractor)  # validates the name, with the list of valid ones
    return lambda text: extract_answer(text, extractor)


def answer_posterior(
    texts: Sequence[str],
    log_weights: Sequence[float] | torch.Tensor,
    extractor: Extractor = "auto",
    chosen: int | None = None,
) -> AnswerPosterior:
    """Weighted answer posterior of particles (texts, unnormalised log-weights); see module."""
    n = len(texts)
    log_w = torch.as_tensor(log_weights, dtype=torch.float64).reshape(-1)
    if n == 0 or log_w.numel() != n:
        raise ValueError(
            f"need one log-weight per particle text and at least one particle; got {n} texts "
            f"and {log_w.numel()} log-weights"
        )
    if chosen is not None and not 0 <= chosen < n:
        raise ValueError(f"chosen must index a particle in [0, {n}), got {chosen}")
    weights = normalise_log_weights(log_w).exp().tolist()
    extract = _extract(extractor)
    answers = [extract(text) for text in texts]
    keys = [None if a is None else normalise(a) for a in answers]
    # Groups in order of first appearance: that order breaks ties deterministically.
    first: dict[str | None, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    mass = dict.fromkeys(first, 0.0)
    count = dict.fromkeys(first, 0)
    for key, w in zip(keys, weights, strict=True):
        mass[key] += w
        count[key] += 1
    order = sorted(first, key=lambda k: (k is None, -mass[k], first[k]))
    return AnswerPosterior(
        keys=tuple(order),
        labels=tuple(NO_ANSWER if k is None else str(answers[first[k]]) for k in order),
        probabilities=tuple(mass[k] for k in order),
        counts=tuple(count[k] for k in order),
        particle_answers=tuple(answers),
        particle_keys=tuple(keys),
        chosen=chosen,
    )


def result_posterior(
    result: SMCResult,
    decode: Callable[[list[list[int]]], list[str]] | None = None,
    extractor: Extractor = "auto",
) -> AnswerPosterior:
    """``answer_posterior`` of a sampler result: its completions decoded by ``decode``
    (e.g. ``model.decode_batch``; default: the result's own texts) and its weights."""
    if decode is not None:
        texts = decode([list(c) for c in result.completions])
    elif result.texts is not None:
        texts = list(result.texts)
    else:
        raise ValueError("this result has no texts: pass decode=model.decode_batch")
    log_w = [math.log(w) if w > 0 else -math.inf for w in result.weights]
    return answer_posterior(texts, log_w, extractor, chosen=result.chosen)


def decide(posterior: AnswerPosterior, rule: str = "weighted-vote") -> str | None:
    """The answer a decision rule picks (as first written), or None if nobody answered."""
    if rule not in RULES:
        raise ValueError(f"unknown answer rule {rule!r}; choose one of {list(RULES)}")
    if rule == "chosen":
        if posterior.chosen is None:
            raise ValueError("rule 'chosen' needs the sampler's draw: pass chosen=result.chosen")
        return posterior.particle_answers[posterior.chosen]
    candidates = [i for i, k in enumerate(posterior.keys) if k is not None]
    if not candidates:
        return None
    mass, count = posterior.probabilities, posterior.counts
    # keys are sorted by mass then first appearance, so index order breaks the last tie.
    if rule == "weighted-vote":
        best = max(candidates, key=lambda i: (mass[i], count[i], -i))
    else:
        best = max(candidates, key=lambda i: (count[i], mass[i], -i))
    return posterior.labels[best]
