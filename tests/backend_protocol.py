"""One conformance suite that every model backend passes (toy, torch/HF, llama.cpp).

Subclass ``BackendProtocolTests`` in a test module and give it a ``case`` fixture
returning a ``ProtocolCase``: the model, a prompt, the token ids safe to feed (no
EOS; the toy has no row after EOS) and the tolerance ``atol`` between a cached
row and a fresh ``next_token_logprobs`` of the same prefix (what "the cache is
correct" means for that backend: 0 for the exact toy table, float32 rounding for
torch, batched-vs-single quantised arithmetic for llama.cpp; each test module states
how its value was measured).

The checks follow the protocol in ``powersmc_core/models/base.py``:

* shapes, dtypes, normalisation and EOS attributes;
* ``start`` equals a fresh forward of the prompt in every row;
* random walks with resampling reorders (a cycle, duplicates, identity) and rows
  finishing mid-run: every active row of every step equals a fresh forward of that
  row's whole prefix (``drive``);
* finished rows never influence active ones;
* an all-finished step still returns (n, V).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import torch

from powersmc_core.models import LanguageModel


@dataclass
class ProtocolCase:
    """What the suite needs to know about one backend."""

    model: LanguageModel
    prompt: Sequence[int]
    tokens: tuple[int, int]  # feed ids drawn from [low, high): never EOS
    atol: float
    steps: int = 6  # the toy's max_len bounds how far a walk can go
    n: int = 5


@dataclass
class WalkResult:
    """What ``drive`` saw: rows checked and the largest |cached - fresh| over them."""

    checked_rows: int
    max_error: float


def drive(case: ProtocolCase, seed: int) -> WalkResult:
    """Random tokens, reorders and finishing rows; every active row checked against a fresh forward.

    Step s: resample with a cycle (s = 1), with random duplicates (s = 2, 4), an
    identity (s = 3); one row finishes at s = 2 and another at s = 4 (the sampler
    then feeds EOS and marks them inactive, and copies of them stay finished).
    """
    model, n = case.model, case.n
    gen = torch.Generator().manual_seed(seed)
    seqs = [list(case.prompt) for _ in range(n)]
    finished = torch.zeros(n, dtype=torch.bool)
    state, logp = model.start(case.prompt, n)
    result = WalkResult(0, 0.0)
    _check_rows(case, logp, seqs, ~finished, result)
    eos = torch.full((n,), model.eos_token_id, dtype=torch.long)
    for step in range(case.steps):
        ancestors = _ancestors(step, n, gen)
        if ancestors is not None:
            state = model.reorder(state, ancestors)
            seqs = [list(seqs[a]) for a in ancestors.tolist()]
            finished = finished[ancestors]
        if step in (2, 4):
            live = torch.nonzero(~finished).flatten()
            if live.numel() > 1:
                finished[live[0]] = True
        tokens = torch.randint(*case.tokens, (n,), generator=gen)
        active = ~finished
        feed = torch.where(active, tokens, eos)
        for i in torch.nonzero(active).flatten().tolist():
            seqs[i].append(int(feed[i]))
        state, logp = model.advance(state, feed, active)
        assert logp.shape == (n, model.vocab_size)
        _check_rows(case, logp, seqs, active, result)
    return result


def _ancestors(step: int, n: int, gen: torch.Generator) -> torch.Tensor | None:
    if step == 1:
        return torch.roll(torch.arange(n), 1)  # one n-cycle: no row keeps its slot
    if step in (2, 4):
        return torch.randint(0, max(1, n // 2), (n,), generator=gen)  # duplicates certain
    if step == 3:
        return torch.arange(n)
    return None


def _check_rows(
    case: ProtocolCase,
    logp: torch.Tensor,
    seqs: list[list[int]],
    active: torch.Tensor,
    result: WalkResult,
) -> None:
    for i in torch.nonzero(active).flatten().tolist():
        error = _max_gap(logp[i], case.model.next_token_logprobs(seqs[i]))
        result.max_error = max(result.max_error, error)
        result.checked_rows += 1
        assert error <= case.atol, f"row {i} prefix {seqs[i]}: |cached - fresh| = {error:.3g}"


def _max_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| over the vocabulary; equal entries (-inf for impossible tokens) count 0."""
    a, b = a.double(), b.double()
    return float(torch.where(a == b, 0.0, (a - b).abs()).max())


class BackendProtocolTests:
    """Mixin: subclass with a ``case`` fixture returning a ``ProtocolCase``."""

    def test_attributes(self, case: ProtocolCase) -> None:
        model = case.model
        assert isinstance(model, LanguageModel)
        assert model.eos_token_id == model.eos_token_ids[0]
        assert all(0 <= e < model.vocab_size for e in model.eos_token_ids)
        texts = model.decode_batch([list(case.prompt), []])
        assert (
            isinstance(texts, list) and len(texts) == 2 and all(isinstance(t, str) for t in texts)
        )

    def test_start_fans_out_the_prompt(self, case: ProtocolCase) -> None:
        _, logp = case.model.start(case.prompt, case.n)
        assert logp.shape == (case.n, case.model.vocab_size)
        assert logp.dtype in (torch.float32, torch.float64)
        norm = torch.logsumexp(logp.double(), dim=-1)
        torch.testing.assert_close(norm, torch.zeros_like(norm), atol=1e-4, rtol=0)
        fresh = case.model.next_token_logprobs(case.prompt)
        for row in logp:
            assert _max_gap(row, fresh) <= case.atol

    @pytest.mark.parametrize("seed", [0, 1])
    def test_cache_matches_fresh_forward(self, case: ProtocolCase, seed: int) -> None:
        result = drive(case, seed)
        assert result.checked_rows >= case.n * 2
        assert result.max_error <= case.atol

    def test_finished_rows_do_not_affect_active_rows(self, case: ProtocolCase) -> None:
        model, n = case.model, 4
        low, high = case.tokens
        mask = torch.tensor([True, False, True, False])
        eos = model.eos_token_id
        outputs = []
        for garbage in (low, high - 1):
            state, _ = model.start(case.prompt, n)
            first = torch.tensor([low, garbage, min(low + 1, high - 1), garbage])
            state, _ = model.advance(state, first, torch.ones(n, dtype=torch.bool))
            tokens = torch.tensor([low, eos, low, eos])
            state, logp = model.advance(state, tokens, mask)
            state = model.reorder(state, torch.tensor([2, 1, 0, 3]))
            state, again = model.advance(state, tokens, mask)
            outputs.append(torch.cat([logp[mask], again[mask]]))
        torch.testing.assert_close(outputs[0], outputs[1], atol=case.atol, rtol=0)

    def test_all_rows_finished(self, case: ProtocolCase) -> None:
        model = case.model
        state, _ = model.start(case.prompt, 2)
        eos = torch.full((2,), model.eos_token_id, dtype=torch.long)
        state, logp = model.advance(state, eos, torch.zeros(2, dtype=torch.bool))
        assert logp.shape == (2, model.vocab_size)
