"""ToyLM: a small autoregressive table whose every sequence can be enumerated.

Every prefix of non-EOS tokens shorter than ``max_len`` owns one row of next-
token log-probabilities. Prefixes are numbered in bijective base V' (V' = the
number of non-EOS tokens): idx(()) = 0 and idx(prefix + (c,)) = V'·idx(prefix)
+ c + 1, so the whole model is one dense (n_prefixes, V) tensor and a batched
``advance`` is one integer multiply-add plus one gather. A sequence holds at
most ``max_len`` tokens including EOS: after ``max_len - 1`` tokens EOS is
forced.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["PIVOTAL_ALPHA", "ToyLM", "ToyState"]

MAX_VOCAB = 8
MAX_LEN = 8
# The pivotal family (``ToyLM.pivotal``) is built so that pi_alpha at this alpha puts a
# seeded 65-85% of its mass behind the rare first token.
PIVOTAL_ALPHA = 4.0
PIVOTAL_INDICES = 1000  # toy-pivotal:0 .. toy-pivotal:999


@dataclass(frozen=True)
class ToyState:
    """Row index into the table and prefix length, per particle: (n,), (n,)."""

    index: torch.Tensor
    depth: torch.Tensor


class ToyLM:
    """Exactly enumerable language model; EOS is the last token id (vocab_size - 1)."""

    def __init__(
        self, logprob_table: torch.Tensor, max_len: int, token_names: Sequence[str], name: str
    ) -> None:
        vocab_size = logprob_table.shape[1]
        if not 2 <= vocab_size <= MAX_VOCAB:
            raise ValueError(
                f"vocab_size must be in [2, {MAX_VOCAB}] (EOS included), got {vocab_size}"
            )
        if not 1 <= max_len <= MAX_LEN:
            raise ValueError(f"max_len must be in [1, {MAX_LEN}], got {max_len}")
        if len(token_names) != vocab_size:
            raise ValueError("token_names must name every token id")
        if logprob_table.shape[0] != _n_prefixes(vocab_size - 1, max_len):
            raise ValueError("logprob_table must have one row per prefix shorter than max_len")
        table = torch.log_softmax(logprob_table.to(torch.float64), dim=-1)
        if torch.isnan(table).any():
            raise ValueError("logprob_table contains NaN or a row with no possible token")
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.eos_token_id = vocab_size - 1
        self.eos_token_ids = (self.eos_token_id,)
        self.token_names = tuple(token_names)
        self.name = name
        self.device = torch.device("cpu")
        self._branching = vocab_size - 1
        self.pivot_token: int | None = None  # the rare first token of a pivotal table
        self._table = self._force_eos_at_max_len(table)

    # ---- constructors -------------------------------------------------------------
    @classmethod
    def random(
        cls, vocab_size: int = 4, max_len: int = 4, seed: int = 0, sharpness: float = 1.5
    ) -> ToyLM:
        """Random table: logits ~ sharpness · N(0, 1), drawn from a generator seeded by ``seed``."""
        if not 2 <= vocab_size <= MAX_VOCAB:
            raise ValueError(
                f"vocab_size must be in [2, {MAX_VOCAB}] (EOS included), got {vocab_size}"
            )
        if not 1 <= max_len <= MAX_LEN:
            raise ValueError(f"max_len must be in [1, {MAX_LEN}], got {max_len}")
        generator = torch.Generator().manual_seed(seed)
        rows = _n_prefixes(vocab_size - 1, max_len)
        logits = sharpness * torch.randn(rows, vocab_size, generator=generator, dtype=torch.float64)
        names = [*string.ascii_lowercase[: vocab_size - 1], "<eos>"]
        return cls(
            logits, max_len, names, name=f"toy-random(V={vocab_size},L={max_len},seed={seed})"
        )

    @classmethod
    def trap(cls) -> ToyLM:
        """The teaching example where token-level temperature and power sampling disagree.

        First token: "A" (p = 0.6) or "B" (p = 0.4). After A come three equally weak
        endings x, y, z (1/3 each); after B one confident ending x (0.9). So p(A ·) =
        0.2 each and p(B x) = 0.36: low temperature follows the locally likely A,
        while p^alpha concentrates on the single confident path "B x".
        """
        names = ["A", "B", "x", "y", "z", "<eos>"]
        vocab, max_len = len(names), 3
        probs = torch.full(
            (_n_prefixes(vocab - 1, max_len), vocab), 1.0 / vocab, dtype=torch.float64
        )

        def row(prefix: Sequence[str]) -> int:
            return _prefix_index([names.index(t) for t in prefix], vocab - 1)

        probs[row([])] = torch.tensor([0.6, 0.4, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
        probs[row(["A"])] = torch.tensor([0.0, 0.0, 1 / 3, 1 / 3, 1 / 3, 0.0], dtype=torch.float64)
        probs[row(["B"])] = torch.tensor([0.0, 0.0, 0.9, 0.05, 0.05, 0.0], dtype=torch.float64)
        return cls(probs.log(), max_len, names, name="toy-trap")

    @classmethod
    def pivotal(cls, index: int = 0) -> ToyLM:
        """A "pivotal decision" table, ``toy-pivotal:<index>``: a myopic proposal misses it.

        The first token r (seeded) is rare under p and opens one confident continuation
        (0.95 per step, then EOS); every other first token opens diffuse continuations
        (logits 0.3·N(0, 1), EOS one nat less likely). p(r) = rho is solved by bisection so
        that pi_alpha at alpha = ``PIVOTAL_ALPHA`` puts a seeded m in [0.65, 0.85] of its
        mass behind r (rho comes out a few per cent). V = 5 or 6 tokens with EOS, sequences
        of at most L = 4 or 5 tokens, all by ``index``. The first token is never EOS;
        ``pivot_token`` names r.
        """
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"the pivotal index must be an integer, got {index!r}")
        if not 0 <= index < PIVOTAL_INDICES:
            raise ValueError(f"the pivotal index must be in [0, {PIVOTAL_INDICES}), got {index}")
        generator = torch.Generator().manual_seed(7919 * index + 17)
        vocab, max_len = 5 + index % 2, 4 + (index // 2) % 2
        branching, eos = vocab - 1, vocab - 1
        logits = 0.3 * torch.randn(
            _n_prefixes(branching, max_len), vocab, generator=generator, dtype=torch.float64
        )
        logits[:, eos] -= 1.0  # diffuse rows: continuations spread rather than stop
        rare = int(torch.randint(branching, (1,), generator=generator))
        prefix = [rare]
        for token in torch.randint(branching, (max_len - 2,), generator=generator).tolist():
            confident = torch.full((vocab,), 0.05 / (vocab - 1), dtype=torch.float64)
            confident[token] = 0.95
            logits[_prefix_index(prefix, branching)] = confident.log()
            prefix.append(token)
        target = 0.65 + 0.2 * float(torch.rand((), generator=generator, dtype=torch.float64))
        others = torch.softmax(0.3 * torch.randn(branching - 1, generator=generator), 0)
        others = others.to(torch.float64)

        def first_row(rho: float) -> torch.Tensor:
            row = torch.full((vocab,), -torch.inf, dtype=torch.float64)
            row[[t for t in range(branching) if t != rare]] = ((1.0 - rho) * others).log()
            row[rare] = math.log(rho)
            return row

        names = [*string.ascii_lowercase[:branching], "<eos>"]
        logits[0] = first_row(0.5)
        draft = cls(logits, max_len, names, name=f"toy-pivotal:{index}")
        ends, first = _sequence_log_p(draft._table, branching)  # given the first token
        ends = ends - draft._table[0][first.clamp(min=0)]  # the empty prefix stays -inf
        behind = first == rare

        def mass(rho: float) -> float:
            log_p = ends + first_row(rho)[first.clamp(min=0)]
            return float(torch.softmax(PIVOTAL_ALPHA * log_p, 0)[behind].sum())

        low, high = math.log(1e-4), math.log(0.5)  # mass rises with rho
        for _ in range(60):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if mass(math.exp(mid)) < target else (low, mid)
        logits[0] = first_row(math.exp(0.5 * (low + high)))
        toy = cls(logits, max_len, names, name=f"toy-pivotal:{index}")
        toy.pivot_token = rare
        return toy

    def _force_eos_at_max_len(self, table: torch.Tensor) -> torch.Tensor:
        first_last = _n_prefixes(self._branching, self.max_len - 1)
        forced = torch.full((self.vocab_size,), -torch.inf, dtype=torch.float64)
        forced[self.eos_token_id] = 0.0
        table = table.clone()
        table[first_last:] = forced
        return table

    # ---- protocol --------------------------------------------------------------------
    def _check_prompt(self, prompt: Sequence[int]) -> list[int]:
        prompt = [int(t) for t in prompt]
        if len(prompt) >= self.max_len:
            raise ValueError(
                f"prompt has {len(prompt)} tokens but {self.name} only has sequences "
                f"shorter than max_len={self.max_len}"
            )
        bad = [t for t in prompt if not 0 <= t < self.eos_token_id]
        if bad:
            raise ValueError(
                f"prompt tokens must be non-EOS ids in [0, {self.eos_token_id}), got {bad}"
            )
        return prompt

    def start(self, prompt: Sequence[int], n: int) -> tuple[ToyState, torch.Tensor]:
        prompt = self._check_prompt(prompt)
        index = torch.full((n,), _prefix_index(prompt, self._branching), dtype=torch.long)
        state = ToyState(index, torch.full((n,), len(prompt), dtype=torch.long))
        return state, self._table[index]

    def advance(
        self, state: ToyState, tokens: torch.Tensor, active: torch.Tensor
    ) -> tuple[ToyState, torch.Tensor]:
        # EOS has no child row; rows that emit it (or are already finished) keep their index.
        grows = active & (tokens != self.eos_token_id)
        index = torch.where(grows, state.index * self._branching + tokens + 1, state.index)
        new = ToyState(index, state.depth + grows.long())
        return new, self._table[index]

    def reorder(self, state: ToyState, ancestors: torch.Tensor) -> ToyState:
        return ToyState(state.index[ancestors], state.depth[ancestors])

    def next_token_logprobs(self, prefix: Sequence[int]) -> torch.Tensor:
        return self._table[_prefix_index(self._check_prompt(prefix), self._branching)].clone()

    def decode_batch(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        return [" ".join(self.token_names[t] for t in seq) for seq in sequences]

    def token_name(self, token: int) -> str:
        return self.token_names[token]

    def __repr__(self) -> str:
        return f"ToyLM({self.name})"


def _n_prefixes(branching: int, max_len: int) -> int:
    """Number of non-EOS prefixes of length < max_len: sum_{k < max_len} V'^k."""
    return sum(branching**k for k in range(max_len))


def _sequence_log_p(table: torch.Tensor, branching: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per prefix row k: log p(prefix_k, EOS) and the prefix's first token (-1 for the empty
    prefix), (rows,), (rows,). Every complete sequence of a ToyLM is one such row."""
    rows = table.shape[0]
    log_p = torch.zeros(rows, dtype=torch.float64)
    first = torch.full((rows,), -1, dtype=torch.long)
    for k in range(1, rows):  # a parent's row index is smaller than its children's
        parent, token = divmod(k - 1, branching)
        log_p[k] = log_p[parent] + table[parent, token]
        first[k] = token if parent == 0 else first[parent]
    return log_p + table[:, -1], first


def _prefix_index(prefix: Sequence[int], branching: int) -> int:
    index = 0
    for token in prefix:
        index = index * branching + token + 1
    return index
