"""Exact distributions of a small model by enumerating every complete sequence.

For a ToyLM (or any model small enough), the tree of continuations of a prompt
is walked once; everything else is arithmetic on the resulting table:

- pi_alpha(y) = p(y)^alpha / Z_alpha,  Z_alpha = sum_y p(y)^alpha
- token-level temperature T: q(y) = prod_t softmax(log p(.|y_<t) / T)[y_t]
- total variation TV(P, Q) = 1/2 sum_y |P(y) - Q(y)|
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from .models.base import LanguageModel

__all__ = [
    "SequenceTable",
    "TemperatureLaws",
    "empirical_distribution",
    "enumerate_sequences",
    "exact_log_z",
    "power_distribution",
    "temperature_distribution",
    "total_variation",
    "weighted_distribution",
]

Sequence_ = tuple[int, ...]


@dataclass(frozen=True)
class SequenceTable:
    """All complete continuations of a prompt, EOS excluded from the keys."""

    sequences: list[Sequence_]
    log_p: torch.Tensor  # (S,) float64, log p(y|x)
    step_logprobs: list[list[torch.Tensor]]  # per sequence, the next-token log-probs at each step
    emitted: list[Sequence_]  # the tokens actually emitted (EOS included when it ended one)

    def index(self) -> dict[Sequence_, int]:
        return {s: i for i, s in enumerate(self.sequences)}


def enumerate_sequences(
    model: LanguageModel,
    prompt: Sequence[int] = (),
    max_new_tokens: int | None = None,
    max_sequences: int = 200_000,
) -> SequenceTable:
    """Walk the continuation tree; sequences end at EOS or after ``max_new_tokens`` tokens.

    Branches of probability exactly 0 are pruned (they carry no mass under any target).
    """
    limit = max_new_tokens if max_new_tokens is not None else getattr(model, "max_len", None)
    if limit is None:
        raise ValueError("max_new_tokens is required for a model without max_len")
    eos = set(model.eos_token_ids)
    sequences: list[Sequence_] = []
    log_ps: list[float] = []
    steps: list[list[torch.Tensor]] = []
    emitted: list[Sequence_] = []
    stack: list[tuple[Sequence_, float, list[torch.Tensor]]] = [((), 0.0, [])]
    while stack:
        prefix, log_p, dists = stack.pop()
        logp = model.next_token_logprobs(list(prompt) + list(prefix)).to(torch.float64)
        for token in range(logp.numel()):
            lp = float(logp[token])
            if lp == -math.inf:
                continue
            path = [*dists, logp]
            if token in eos or len(prefix) + 1 >= limit:
                key = prefix if token in eos else (*prefix, token)
                sequences.append(key)
                log_ps.append(log_p + lp)
                steps.append(path)
                emitted.append((*prefix, token))
                if len(sequences) > max_sequences:
                    raise ValueError(f"more than {max_sequences} sequences: too large to enumerate")
            else:
                stack.append(((*prefix, token), log_p + lp, path))
    order = sorted(range(len(sequences)), key=lambda i: sequences[i])
    return SequenceTable(
        sequences=[sequences[i] for i in order],
        log_p=torch.tensor([log_ps[i] for i in order], dtype=torch.float64),
        step_logprobs=[steps[i] for i in order],
        emitted=[emitted[i] for i in order],
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
    table: SequenceTable, completions: Iterable[Sequence[int]], weights: Iterable[float]
) -> torch.Tensor:
    """Put each completion's weight on its sequence: the SMC estimate of pi_alpha."""
    index = table.index()
    out = torch.zeros(len(table.sequences), dtype=torch.float64)
    for seq, w in zip(completions, weights, strict=True):
        key = tuple(seq)
        if key not in index:
            raise KeyError(f"completion {key} is not a complete sequence of this model")
        out[index[key]] += w
    return out


def empirical_distribution(
    table: SequenceTable, completions: Iterable[Sequence[int]]
) -> torch.Tensor:
    """Histogram of sampled completions over ``table.sequences`` (normalised)."""
    completions = list(completions)
    return weighted_distribution(table, completions, [1.0 / len(completions)] * len(completions))
