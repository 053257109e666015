r"""Answers aggregated by weight: a particle system read as a distribution over answers.

A reasoning task is graded on its final answer, not on the string that leads to it. SMC
returns weighted particles {(y_i, W_i)}; pushing them through an answer extractor a(.)
gives the **weighted answer posterior**

    P̂(a) = Σ_i W_i · 1[a(y_i) = a],

the particle estimate of π_α(a(Y) = a), the push-forward of the target onto answers.
Particles with no extractable answer form their own bucket (``NO_ANSWER``), shown and
never dropped, so the probabilities always sum to 1. Given ``finished`` (the result's
flags: EOS or stop rule), an unfinished particle (stopped run, or cut at max new tokens)
is never read for an answer: it goes to the ``UNFINISHED`` bucket, not to any answer
("6 * 7 - 5 =" cut mid-way is no claim that the answer is 5).

Two statistics per answer: the weighted mass P̂(a) (``probabilities``) and the vote share
#{i : a(y_i) = a}/N (``shares``); the weighted vote maximises the first, the majority vote
the second (``rule_statistic`` names the one a rule reads).

    post = answer_posterior(texts, log_weights, extractor="auto", chosen=result.chosen)
    post = result_posterior(result, model.decode_batch)      # the same, from an SMCResult
                                                              # (unfinished particles apart)
    decide(post, "weighted-vote")                              # -> "42" (or None)
    post.rows()                                                # bar-chart rows

Decision rules (``RULES``):

- ``"chosen"``: the answer of the sampler's own draw (SMC draws ``chosen`` ~ W);
- ``"weighted-vote"``: argmax_a P̂(a) over extracted answers;
- ``"majority-vote"``: argmax_a #{i : a(y_i) = a}, weights ignored (self-consistency).

A vote is over extracted answers: the no-answer and unfinished buckets never win; with
no answer at all ``decide`` returns None. Ties go to the other statistic (count for the weighted
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
    "UNFINISHED",
    "AnswerPosterior",
    "Extractor",
    "answer_posterior",
    "decide",
    "result_posterior",
    "rule_statistic",
]

RULES = ("chosen", "weighted-vote", "majority-vote")
NO_ANSWER = "(no answer)"  # label of the bucket of particles with no extractable answer
UNFINISHED = "(unfinished)"  # label of the bucket of particles that never finished

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
    particle_keys: tuple[str | None, ...]  # its canonical form (None: unfinished too)
    chosen: int | None = None  # the sampler's own draw, if known
    # Bucket kind per key: "answer", "none" (finished, no answer) or "unfinished".
    kinds: tuple[str, ...] = ()
    particle_finished: tuple[bool, ...] = ()  # empty: every particle counts as finished

    @property
    def bucket_kinds(self) -> tuple[str, ...]:
        """Kind of each bucket: "answer", "none" (finished, no answer) or "unfinished"."""
        return self.kinds or tuple("none" if k is None else "answer" for k in self.keys)

    def _mass(self, kind: str) -> float:
        return sum(
            p for t, p in zip(self.bucket_kinds, self.probabilities, strict=True) if t == kind
        )

    @property
    def no_answer(self) -> float:
        """Mass of the finished particles with no extractable answer."""
        return self._mass("none")

    @property
    def unfinished(self) -> float:
        """Mass of the particles that never finished (never read for an answer)."""
        return self._mass("unfinished")

    @property
    def shares(self) -> tuple[float, ...]:
        """Vote share of each bucket: its fraction of particles, weights ignored."""
        n = sum(self.counts)
        return tuple(c / n for c in self.counts)

    def is_finished(self, particle: int) -> bool:
        """Whether particle ``particle`` finished (True when no flags were given)."""
        return not self.particle_finished or self.particle_finished[particle]

    def _index(self, answer: str | None) -> int | None:
        key = None if answer is None else normalise(answer)
        want = "none" if key is None else "answer"
        for i, (k, t) in enumerate(zip(self.keys, self.bucket_kinds, strict=True)):
            if k == key and t == want:
                return i
        return None

    def probability(self, answer: str | None) -> float:
        """P̂ of the answer equivalent to ``answer`` (None: the no-answer bucket); 0 if absent."""
        i = self._index(answer)
        return 0.0 if i is None else self.probabilities[i]

    def share(self, answer: str | None) -> float:
        """Vote share (fraction of particles) of ``answer`` (None: no-answer bucket); 0 if absent."""
        i = self._index(answer)
        return 0.0 if i is None else self.shares[i]

    def rows(self) -> list[dict[str, float | int | str]]:
        """One dict per bucket (label, probability, share, count, kind): a bar chart's rows."""
        return [
            {"answer": label, "probability": p, "share": v, "count": c, "kind": t}
            for label, p, v, c, t in zip(
                self.labels,
                self.probabilities,
                self.shares,
                self.counts,
                self.bucket_kinds,
                strict=True,
            )
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
    finished: Sequence[bool] | None = None,
) -> AnswerPosterior:
    """Weighted answer posterior of particles (texts, unnormalised log-weights); see module.

    ``finished[i]`` False: particle i is not read for an answer (``UNFINISHED`` bucket)."""
    n = len(texts)
    log_w = torch.as_tensor(log_weights, dtype=torch.float64).reshape(-1)
    if n == 0 or log_w.numel() != n:
        raise ValueError(
            f"need one log-weight per particle text and at least one particle; got {n} texts "
            f"and {log_w.numel()} log-weights"
        )
    if chosen is not None and not 0 <= chosen < n:
        raise ValueError(f"chosen must index a particle in [0, {n}), got {chosen}")
    done = [True] * n if finished is None else [bool(f) for f in finished]
    if len(done) != n:
        raise ValueError(f"need one finished flag per particle; got {len(done)} for {n}")
    weights = normalise_log_weights(log_w).exp().tolist()
    extract = _extract(extractor)
    answers = [extract(text) if ok else None for text, ok in zip(texts, done, strict=True)]
    keys = [None if a is None else normalise(a) for a in answers]
    # A group is (kind, key); groups in order of first appearance break ties deterministically.
    groups = [
        ("unfinished", None) if not ok else ("none", None) if k is None else ("answer", k)
        for k, ok in zip(keys, done, strict=True)
    ]
    first: dict[tuple[str, str | None], int] = {}
    for i, group in enumerate(groups):
        first.setdefault(group, i)
    mass = dict.fromkeys(first, 0.0)
    count = dict.fromkeys(first, 0)
    for group, w in zip(groups, weights, strict=True):
        mass[group] += w
        count[group] += 1
    last = {"answer": 0, "none": 1, "unfinished": 2}  # answers first, then the two buckets
    order = sorted(first, key=lambda g: (last[g[0]], -mass[g], first[g]))
    label = {"none": NO_ANSWER, "unfinished": UNFINISHED}
    return AnswerPosterior(
        keys=tuple(k for _, k in order),
        labels=tuple(label.get(t) or str(answers[first[(t, k)]]) for t, k in order),
        probabilities=tuple(mass[g] for g in order),
        counts=tuple(count[g] for g in order),
        particle_answers=tuple(answers),
        particle_keys=tuple(keys),
        chosen=chosen,
        kinds=tuple(t for t, _ in order),
        particle_finished=tuple(done),
    )


def result_posterior(
    result: SMCResult,
    decode: Callable[[list[list[int]]], list[str]] | None = None,
    extractor: Extractor = "auto",
) -> AnswerPosterior:
    """``answer_posterior`` of a sampler result: its completions decoded by ``decode``
    (e.g. ``model.decode_batch``; default: the result's own texts), its weights and its
    ``finished`` flags (a particle that did not finish is never read for an answer)."""
    if decode is not None:
        texts = decode([list(c) for c in result.completions])
    elif result.texts is not None:
        texts = list(result.texts)
    else:
        raise ValueError("this result has no texts: pass decode=model.decode_batch")
    log_w = [math.log(w) if w > 0 else -math.inf for w in result.weights]
    finished = result.finished if len(result.finished) == len(texts) else None
    return answer_posterior(texts, log_w, extractor, chosen=result.chosen, finished=finished)


def rule_statistic(rule: str) -> str:
    """What a rule's winner is measured by: "vote share" (majority vote: fraction of
    particles, weights ignored) or "weighted mass" (weighted vote, chosen: P̂(a))."""
    if rule not in RULES:
        raise ValueError(f"unknown answer rule {rule!r}; choose one of {list(RULES)}")
    return "vote share" if rule == "majority-vote" else "weighted mass"


def decide(posterior: AnswerPosterior, rule: str = "weighted-vote") -> str | None:
    """The answer a decision rule picks (as first written), or None if nobody answered."""
    if rule not in RULES:
        raise ValueError(f"unknown answer rule {rule!r}; choose one of {list(RULES)}")
    if rule == "chosen":
        if posterior.chosen is None:
            raise ValueError("rule 'chosen' needs the sampler's draw: pass chosen=result.chosen")
        return posterior.particle_answers[posterior.chosen]
    candidates = [i for i, t in enumerate(posterior.bucket_kinds) if t == "answer"]
    if not candidates:
        return None
    mass, count = posterior.probabilities, posterior.counts
    # keys are sorted by mass then first appearance, so index order breaks the last tie.
    if rule == "weighted-vote":
        best = max(candidates, key=lambda i: (mass[i], count[i], -i))
    else:
        best = max(candidates, key=lambda i: (count[i], mass[i], -i))
    return posterior.labels[best]
