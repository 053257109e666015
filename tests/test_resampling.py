"""Resampling schemes: unbiased offspring counts, variance no larger than multinomial.

The offspring-count tests are about the equal-weight schemes (post weights 1/N);
chopthin, whose post weights differ, is checked in test_chopthin.py.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from powersmc_core.engine.resampling import RESAMPLERS, EqualWeights, get_resampler

SCHEMES = sorted(name for name, s in RESAMPLERS.items() if isinstance(s, EqualWeights))
WEIGHT_SETS = [
    [0.5, 0.25, 0.125, 0.0625, 0.0625],
    [0.9, 0.02, 0.02, 0.02, 0.02, 0.02],
    [1 / 7] * 7,
    [0.31, 0.29, 0.0, 0.2, 0.2],
]


def offspring_counts(scheme, weights, repeats, seed=0):
    w = torch.tensor(weights, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    resample = get_resampler(scheme)
    return torch.stack(
        [torch.bincount(resample(w, gen).ancestors, minlength=len(weights)) for _ in range(repeats)]
    ).to(torch.float64)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_unbiased_expected_offspring_is_n_w(scheme, weights, single_thread):
    n, repeats = len(weights), 4000
    counts = offspring_counts(scheme, weights, repeats)
    w = torch.tensor(weights, dtype=torch.float64)
    # Every scheme's count variance is at most multinomial's N·W(1-W): 5 standard errors.
    se = torch.sqrt(n * w * (1 - w) / repeats)
    assert torch.all((counts.mean(0) - n * w).abs() <= 5 * se + 1e-12)


@pytest.mark.parametrize("scheme", ["systematic", "stratified", "residual"])
@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_variance_not_above_multinomial(scheme, weights, single_thread):
    n, repeats = len(weights), 4000
    w = torch.tensor(weights, dtype=torch.float64)
    var = offspring_counts(scheme, weights, repeats).var(0)
    multinomial_var = n * w * (1 - w)
    # sd of a sample variance is sqrt(E(X-mu)^4 / R) <= N·sigma/sqrt(R) since |X - mu| <= N;
    # sigma is taken at its multinomial upper reference; 5 standard errors.
    slack = 5 * n * torch.sqrt(multinomial_var) / math.sqrt(repeats)
    assert torch.all(var <= multinomial_var + slack)
    assert var.sum() <= multinomial_var.sum()


def test_multinomial_negative_control_exceeds_systematic():
    """The variance check can fail: multinomial is visibly noisier than systematic."""
    w = [0.2] * 5
    assert offspring_counts("multinomial", w, 2000).var(0).sum() > 1.0
    assert offspring_counts("systematic", w, 2000).var(0).sum() == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=40).filter(
        lambda ws: sum(ws) > 1e-6
    ),
    st.sampled_from(sorted(RESAMPLERS)),
    st.integers(0, 2**31),
)
def test_ancestors_valid_and_counts_sum_to_n(raw, scheme, seed):
    w = torch.tensor(raw, dtype=torch.float64)
    w = w / w.sum()
    ancestors = get_resampler(scheme)(w, torch.Generator().manual_seed(seed)).ancestors
    assert ancestors.shape == (len(raw),)
    assert ancestors.dtype == torch.long
    assert int(ancestors.min()) >= 0 and int(ancestors.max()) < len(raw)
    assert torch.all(w[ancestors] > 0), "a zero-weight particle was selected"
    counts = torch.bincount(ancestors, minlength=len(raw))
    if scheme in ("systematic", "residual"):
        # Both keep at least floor(N·W_i) copies; systematic also at most ceil(N·W_i).
        nw = len(raw) * w
        assert torch.all(counts >= torch.floor(nw - 1e-9))
        if scheme == "systematic":
            assert torch.all(counts <= torch.ceil(nw + 1e-9))


def test_equal_weight_schemes_leave_weights_1_over_n_and_the_mass_1():
    w = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)
    for scheme in SCHEMES:
        drawn = get_resampler(scheme)(w, torch.Generator().manual_seed(3))
        assert torch.equal(drawn.log_w, torch.full_like(w, -math.log(3)))
        assert float(drawn.log_mass) == 0.0


def test_unknown_scheme_lists_valid_ones():
    with pytest.raises(ValueError, match="multinomial"):
        get_resampler("bootstrap")


def test_same_generator_seed_same_ancestors():
    w = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)
    for scheme in sorted(RESAMPLERS):
        a = get_resampler(scheme)(w, torch.Generator().manual_seed(7))
        b = get_resampler(scheme)(w, torch.Generator().manual_seed(7))
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
