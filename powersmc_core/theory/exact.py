"""Exact distributions of a small model by enumerating every complete continuation.

A *completion* is a pair (tokens, ending): the tokens a sampler returns (EOS excluded) and
how the sequence ended, one of ``"eos"`` (the model emitted EOS), ``"stop"`` (a stop rule
such as a stop string fired on the token just appended) or ``"length"`` (``max_new_tokens``
tokens were drawn without either). "a b" cut by the length limit and "a b <eos>" are two
different completions with different probabilities, and a sampler's result says which one it
drew: ``SMCResult.finished`` is True for EOS or a stop rule, False for the length limit.

For a ToyLM (or any model small enough), the tree of continuations of a prompt is walked
once, honouring the prompt, ``max_new_tokens`` and a stop rule exactly as the samplers do;
everything else is arithmetic on the resulting table:

- P(y) = prod_t p(y_t|x, y_<t) over the completion's tokens (EOS included when it ended one):
  the law of the *stopped* process, a distribution over the table's completions
- pi_alpha(y) = P(y)^alpha / Z_alpha,  Z_alpha = sum_y P(y)^alpha  (the samplers' target)
- token-level temperature T: q(y) = prod_t softmax(log p(.|y_<t) / T)[y_t]
- total variation TV(P, Q) = 1/2 sum_y |P(y) - Q(y)|
- ``cut_distribution``: push a law over the completions *without* a stop rule through the
  cut at the first point a stop rule fires (e.g. "pi_alpha, then cut at the stop string",
  which is not the power of the stopped law: see ``theory.stopped_law_targets``).

Cost: one ``next_token_logprobs`` call per non-final prefix, O(V) work per node.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel

__all__ = [
    "ENDINGS",
    "Completion",
    "SequenceTable",
    "TemperatureLaws",
    "cut_distribution",
    "empirical_distribution",
    "enumerate_sequences",
    "exact_log_z",
    "power_distribution",
    "result_distribution",
    "stop_position",
    "temperature_distribution",
    "total_variation",
    "weighted_distribution",
]

Sequence_ = tuple[int, ...]
ENDINGS = ("eos", "stop", "length")
Completion = tuple[Sequence_, str]  # (tokens without EOS, ending)


@dataclass(frozen=True)
class SequenceTable:
    """All complete continuations of a prompt: tokens (EOS excluded) and how each ended.

    ``sequences[i]`` and ``endings[i]`` together name completion i; the same tokens may
    appear twice (once ended by EOS or a stop rule, once cut by the length limit).
    """

    sequences: list[Sequence_]
    log_p: torch.Tensor  # (S,) float64, log P(y|x) of the stopped process
    step_logprobs: list[list[torch.Tensor]]  # per sequence, the next-token log-probs at each step
    emitted: list[Sequence_]  # the tokens actually emitted (EOS included when it ended one)
    endings: list[str]  # "eos", "stop" or "length" per sequence

    @property
    def finished(self) -> list[bool]:
        """Ended by EOS or a stop rule (as ``SMCResult.finished`` reports it)."""
        return [e != "length" for e in self.endings]

    @property
    def completions(self) -> list[Completion]:
        return list(zip(self.sequences, self.endings, strict=True))

    def index(self) -> dict[tuple[Sequence_, bool], int]:
        """(tokens, finished) -> row: the key a sampler's result can be matched on."""
        return {
            (s, f): i for i, (s, f) in enumerate(zip(self.sequences, self.finished, strict=True))
        }


def stop_position(model: LanguageModel, tokens: Sequence[int], stop: StopRule | None) -> int | None:
    """Number of tokens after which ``stop`` fires on the text of ``tokens`` (None: never).

    The rule sees the generated text only (not the prompt's), one piece per token: the
    text the token adds to the decoded sequence, as the samplers feed it.
    """
    if stop is None:
        return None
    rule = copy.deepcopy(stop)
    rule.reset(1)
    text = ""
    for k in range(1, len(tokens) + 1):
        new = model.decode_batch([list(tokens[:k])])[0]
        if rule.update([new[len(text) :]])[0]:
            return k
        text = new
    return None


def enumerate_sequences(
    model: LanguageModel,
    prompt: Sequence[int] = (),
    max_new_tokens: int | None = None,
    max_sequences: int = 200_000,
    stop: StopRule | None = None,
) -> SequenceTable:
    """Walk the continuation tree; a completion ends at EOS, when ``stop`` fires, or after
    ``max_new_tokens`` tokens (default: the model's ``max_len`` minus the prompt).

    Branches of probability exactly 0 are pruned (they carry no mass under any target).
    The order of the checks is the samplers': EOS, then the stop rule, then the length.
    """
    limit = max_new_tokens
    if limit is None:
        max_len = getattr(model, "max_len", None)
        if max_len is None:
            raise ValueError("max_new_tokens is required for a model without max_len")
        limit = max(1, max_len - len(prompt))
    eos = set(model.eos_token_ids)
    rows: list[tuple[Sequence_, str, float, list[torch.Tensor], Sequence_]] = []
    # Each open prefix carries its text and its own copy of the stop rule's state.
    rule = None
    if stop is not None:
        rule = copy.deepcopy(stop)
        rule.reset(1)
    stack: list[tuple[Sequence_, float, list[torch.Tensor], str, StopRule | None]] = [
        ((), 0.0, [], "", rule)
    ]
    while stack:
        prefix, log_p, dists, text, state = stack.pop()
        logp = model.next_token_logprobs(list(prompt) + list(prefix)).to(torch.float64)
        for token in range(logp.numel()):
            lp = float(logp[token])
            if lp == -math.inf:
                continue
            path, grown = [*dists, logp], (*prefix, token)
            if token in eos:
                rows.append((prefix, "eos", log_p + lp, path, grown))
                continue
            child, new_text = None, text
            if state is not None:
                child = copy.deepcopy(state)
                new_text = model.decode_batch([list(grown)])[0]
                if child.update([new_text[len(text) :]])[0]:
                    rows.append((grown, "stop", log_p + lp, path, grown))
                    continue
            if len(grown) >= limit:
                rows.append((grown, "length", log_p + lp, path, grown))
            else:
                stack.append((grown, log_p + lp, path, new_text, child))
            if len(rows) > max_sequences:
                raise ValueError(f"more than {max_sequences} sequences: too large to enumerate")
    rows.sort(key=lambda r: (r[0], r[1]))
    return SequenceTable(
        sequences=[r[0] for r in rows],
        log_p=torch.tensor([r[2] for r in rows], dtype=torch.float64),
        step_logprobs=[r[3] for r in rows],
        emitted=[r[4] for r in rows],
        endings=[r[1] for r in rows],
    )


def exact_log_z(table: SequenceTable, alpha: float) -> float:
    """log Z_alpha = log sum_y p(y)^alpha."""
    return float(torch.logsumexp(alpha * table.log_p, 0))


def power_distribution(table: SequenceTable, alpha: float) -> torch.Tensor:
    """pi_alpha over ``table.sequences``, shape (S,)."""
    return torch.softmax(alpha * table.log_p, 0)


class TemperatureLaws:
    """A table's per-step next-token log-probs padded to (S, L, V): exact token-level
    temperature laws for many temperatures at the cost of one tensor pass each."""

    def __init__(self, table: SequenceTable) -> None:
        lengths = [len(d) for d in table.step_logprobs]
        s, length = len(lengths), max(lengths)
        v = table.step_logprobs[0][0].numel()
        self.logp = torch.zeros(s, length, v, dtype=torch.float64)  # padding rows: log p = 0
        self.tokens = torch.zeros(s, length, dtype=torch.long)
        self.mask = torch.zeros(s, length, dtype=torch.bool)
        for i, (dists, emitted) in enumerate(zip(table.step_logprobs, table.emitted, strict=True)):
            self.logp[i, : len(dists)] = torch.stack(dists)
            self.tokens[i, : len(dists)] = torch.tensor(emitted, dtype=torch.long)
            self.mask[i, : len(dists)] = True

    def temperature(self, temperature: float) -> torch.Tensor:
        """q(y) = prod_t softmax(log p(.|y_<t) / T)[y_t], shape (S,)."""
        logq = torch.log_softmax(self.logp / temperature, dim=-1)  # (S, L, V)
        per_step = logq.gather(2, self.tokens[..., None]).squeeze(2)  # (S, L)
        return torch.where(self.mask, per_step, 0.0).sum(1).exp()


def temperature_distribution(table: SequenceTable, temperature: float) -> torch.Tensor:
    """Exact law of token-by-token sampling from softmax(log p / T), shape (S,)."""
    return TemperatureLaws(table).temperature(temperature)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """TV = 1/2 sum |p - q| (both over the same support ordering)."""
    return 0.5 * float((p - q).abs().sum())


def weighted_distribution(
    table: SequenceTable,
    completions: Iterable[Sequence[int]],
    weights: Iterable[float],
    finished: Iterable[bool] | None = None,
) -> torch.Tensor:
    """Put each completion's weight on its row of the table: the SMC estimate of pi_alpha.

    ``finished[i]`` (EOS or stop rule, as in ``SMCResult.finished``) picks between the
    ended and the length-cut version of the same tokens. Without it the tokens must name
    one row: a table holding both versions raises instead of guessing.
    """
    index = table.index()
    by_tokens: dict[Sequence_, list[int]] = {}
    for (tokens, _), row in index.items():
        by_tokens.setdefault(tokens, []).append(row)
    completions, weights = list(completions), list(weights)
    ended = [None] * len(completions) if finished is None else list(finished)
    out = torch.zeros(len(table.sequences), dtype=torch.float64)
    for seq, w, f in zip(completions, weights, ended, strict=True):
        key = tuple(seq)
        if f is None:
            rows = by_tokens.get(key, [])
            if len(rows) > 1:
                raise ValueError(
                    f"completion {key} is in the table both ended and cut by max_new_tokens; "
                    "pass finished= (SMCResult.finished) to say which one was drawn"
                )
            row = rows[0] if rows else None
        else:
            row = index.get((key, bool(f)))
        if row is None:
            how = "" if f is None else (" ended by EOS or a stop rule" if f else " cut by length")
            raise KeyError(f"completion {key}{how} is not a complete sequence of this table")
        out[row] += w
    return out


def result_distribution(table: SequenceTable, result) -> torch.Tensor:
    """A result's weighted particles on the table, matched by tokens *and* ending."""
    return weighted_distribution(table, result.completions, result.weights, result.finished)


def empirical_distribution(
    table: SequenceTable,
    completions: Iterable[Sequence[int]],
    finished: Iterable[bool] | None = None,
) -> torch.Tensor:
    """Histogram of sampled completions over the table's rows (normalised)."""
    completions = list(completions)
    uniform = [1.0 / len(completions)] * len(completions)
    return weighted_distribution(table, completions, uniform, finished)


def cut_distribution(
    model: LanguageModel,
    full: SequenceTable,
    law: torch.Tensor,
    stopped: SequenceTable,
    stop: StopRule,
) -> torch.Tensor:
    """Push ``law`` (over ``full``, enumerated without the stop rule) through the cut at the
    first point ``stop`` fires: a law over ``stopped``'s rows.

    A completion the rule never fires on keeps its tokens and ending; one it fires on after
    k tokens becomes (tokens[:k], "stop").
    """
    index = stopped.index()
    out = torch.zeros(len(stopped.sequences), dtype=torch.float64)
    for row, (tokens, ending) in enumerate(full.completions):
        k = stop_position(model, tokens, stop)
        key = (tokens[:k], True) if k is not None else (tokens, ending != "length")
        out[index[key]] += law[row]
    return out
