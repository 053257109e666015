import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from powersmc_core.engine.tempering import log_power_mass, renyi_entropy, tempered_logprobs
from powersmc_core.engine.weights import conditional_ess, ess, normalise_log_weights, reweight


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=64))
def test_ess_between_one_and_n(values):
    lw = torch.tensor(values, dtype=torch.float64)
    value = ess(lw)
    assert 1 - 1e-9 <= value <= len(values) + 1e-9


def test_ess_extremes_and_formula():
    assert ess(torch.zeros(10, dtype=torch.float64)) == pytest.approx(10)
    assert ess(torch.tensor([0.0, -math.inf, -math.inf], dtype=torch.float64)) == pytest.approx(1)
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    assert ess(w.log() + 7.0) == pytest.approx(1 / float((w**2).sum()))


def test_normalise_is_shift_invariant_and_all_minus_inf_fails():
    lw = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert torch.allclose(normalise_log_weights(lw), normalise_log_weights(lw + 500))
    assert float(normalise_log_weights(lw).exp().sum()) == pytest.approx(1.0)
    with pytest.raises(FloatingPointError, match="zero or non-finite weight"):
        normalise_log_weights(torch.full((3,), -math.inf, dtype=torch.float64))


def test_conditional_ess_and_reweight():
    lw = torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert conditional_ess(lw, torch.zeros(2, dtype=torch.float64)) == pytest.approx(1.0)
    g = torch.tensor([1.0, 3.0], dtype=torch.float64)
    expected = float((0.25 * 1 + 0.75 * 3) ** 2 / (0.25 * 1 + 0.75 * 9))
    assert conditional_ess(lw, g.log()) == pytest.approx(expected)
    new, log_mean = reweight(lw, g.log())
    assert float(log_mean) == pytest.approx(math.log(0.25 + 2.25))
    assert new.exp().tolist() == pytest.approx([0.25 / 2.5, 2.25 / 2.5])


def test_tempered_proposal_and_renyi():
    p = torch.tensor([[0.7, 0.2, 0.1, 0.0]], dtype=torch.float64)
    logp = p.log()
    q = tempered_logprobs(logp, 0.5).exp()
    assert torch.allclose(q, p**2 / (p**2).sum())
    assert float(renyi_entropy(logp, 1.0)) == pytest.approx(
        -sum(x * math.log(x) for x in (0.7, 0.2, 0.1))
    )
    assert float(renyi_entropy(logp, 3.0)) == pytest.approx(math.log(0.7**3 + 0.2**3 + 0.1**3) / -2)
    # the Rényi entropy is continuous at a = 1 (Shannon is its limit)
    assert float(renyi_entropy(logp, 1.0 + 1e-7)) == pytest.approx(
        float(renyi_entropy(logp, 1.0)), rel=1e-5
    )
    assert float(log_power_mass(logp, 1.0)) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-8, 8, allow_nan=False), min_size=2, max_size=12), st.floats(0.2, 8.0))
def test_optimal_proposal_weight_is_constant_and_equals_renyi(logits, alpha):
    """With q ∝ p^alpha the incremental weight p^alpha/q equals sum p^alpha = exp((1-a)·H_a)."""
    logp = torch.log_softmax(torch.tensor([logits], dtype=torch.float64), -1)
    logq = tempered_logprobs(logp, 1 / alpha)
    log_w = alpha * logp - logq
    assert torch.allclose(log_w, log_w[0, :1].expand_as(log_w), atol=1e-9)
    expected = (1 - alpha) * renyi_entropy(logp, alpha) if abs(alpha - 1) > 1e-9 else 0.0
    assert float(log_w[0, 0]) == pytest.approx(float(expected), abs=1e-9)


def test_sample_rows_draws_each_rows_distribution():
    """Frequencies within 5 s.e. over 40 000 draws per row; zero-mass tokens never drawn."""
    from powersmc_core.engine.tempering import sample_rows

    rows = torch.tensor(
        [[0.5, 0.3, 0.15, 0.05, 0.0], [0.0, 0.0, 0.9, 0.0, 0.1], [0.25, 0.25, 0.25, 0.25, 0.0]],
        dtype=torch.float64,
    )
    draws = 40_000
    probs = rows.repeat_interleave(draws, dim=0) * 3.0  # unnormalised rows are allowed
    tokens = sample_rows(probs, torch.Generator().manual_seed(0)).view(3, draws)
    for row, got in zip(rows, tokens, strict=True):
        freq = torch.bincount(got, minlength=5).double() / draws
        se = (row * (1 - row) / draws).sqrt()
        assert bool(((freq - row).abs() <= 5 * se + 1e-12).all()), (row, freq)
        assert bool((row[got] > 0).all())


def test_sample_rows_is_reproducible_and_never_returns_a_zero_mass_tail(monkeypatch):
    from powersmc_core.engine import tempering

    probs = torch.rand(6, 50, dtype=torch.float64) ** 3
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(tempering.sample_rows(probs, a), tempering.sample_rows(probs, b))
    # U·C(V) rounding up to C(V) (U just below 1) must still land on a token with mass.
    tail = torch.tensor([[0.2, 0.8, 0.0, 0.0]], dtype=torch.float64)
    monkeypatch.setattr(
        torch, "rand", lambda shape, **kw: torch.full(shape, 1.0, dtype=kw["dtype"])
    )
    assert int(tempering.sample_rows(tail, torch.Generator())) == 1
