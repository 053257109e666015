"""Chopthin resampling: the scheme's maths, then the sampler against exact enumeration.

The scheme (``engine/resampling.py``, ``Chopthin``): with threshold a and b = eta·a/2,
particles below a are thinned (kept with probability W_i/a, then weight a), those above
b are chopped into floor/ceil(W_i/b) copies sharing W_i, the rest kept once; a solves
sum_i h_i = N. Checked here:

- the threshold against an independent bisection of sum_i h_i(a) = N;
- unbiasedness E[sum_{j: A_j = i} v_j] = W_i for every scheme (Monte Carlo, 5 standard
  errors), the ratio max/min <= eta, N particles, normalised weights, the thin/keep/chop
  structure, and the identity when all weights lie within a factor eta/2;
- the engine keeps the post weights and multiplies Ẑ by their mass, the same records for
  every stream_every;
- the sampler with resampling="chopthin" against pi_alpha computed by enumeration (a
  truncation, a stop string, block_size 2, ESS-triggered resampling, a ramp), with the
  tolerances of ``test_exactness_samplers.py`` (Bonferroni at family level 1e-4), and
  E[Ẑ] = Z_alpha.

``tests/mutation_check.py`` breaks the scheme and the engine's resampling path line by
line and checks that these tests fail.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from powersmc_core import PowerSMC, SMCConfig, StopStrings, ToyLM
from powersmc_core.cli.main import build_parser, config_from_args
from powersmc_core.engine.config import config_knobs
from powersmc_core.engine.resampling import (
    RESAMPLERS,
    Chopthin,
    chopthin_threshold,
    get_resampler,
)
from powersmc_core.theory.exact import (
    enumerate_sequences,
    exact_log_z,
    power_distribution,
    result_distribution,
    total_variation,
)

WEIGHT_SETS = {
    "spread": [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.0078125],
    "one_heavy": [0.9, 0.02, 0.02, 0.02, 0.02, 0.02],
    "with_zeros": [0.31, 0.29, 0.0, 0.2, 0.0, 0.15, 0.04, 0.01],
    "light_tail": [0.3, 0.3, 0.3, 0.05, 0.03, 0.01, 0.005, 0.005],
}
ETAS = (4.0, 6.0, 10.0)


def normalised(values) -> torch.Tensor:
    w = torch.tensor(values, dtype=torch.float64)
    return w / w.sum()


def expected_offspring(w: torch.Tensor, a: float, eta: float) -> torch.Tensor:
    """h_i(a): W_i/a below a, 1 in [a, eta·a/2], W_i/(eta·a/2) above."""
    b = eta * a / 2
    return torch.where(w < a, w / a, torch.where(w > b, w / b, torch.ones_like(w)))


def bisect_threshold(w: torch.Tensor, eta: float) -> float:
    """The a with sum_i h_i(a) = N by bisection: f is continuous and non-increasing."""
    n = w.numel()
    lo, hi = 0.0, float(w.max())  # f(0+) = inf, f(max W) = 1/max W <= N
    for _ in range(300):
        mid = (lo + hi) / 2
        if float(expected_offspring(w, mid, eta).sum()) > n:
            lo = mid
        else:
            hi = mid
    return hi


def post_mass_by_parent(drawn, n: int) -> torch.Tensor:
    """sum_{j: A_j = i} v_j for each i, v_j = exp(log_w_j + log_mass): (N,)."""
    v = (drawn.log_w + drawn.log_mass).exp()
    return torch.zeros(n, dtype=v.dtype).scatter_add_(0, drawn.ancestors, v)


# ---- the threshold ------------------------------------------------------------------------
@pytest.mark.parametrize("eta", ETAS)
@pytest.mark.parametrize("name", sorted(WEIGHT_SETS))
def test_threshold_solves_expected_offspring_equals_n(name, eta):
    w = normalised(WEIGHT_SETS[name])
    a = float(chopthin_threshold(w, eta))
    assert float(expected_offspring(w, a, eta).sum()) == pytest.approx(w.numel(), rel=1e-12)
    reference = bisect_threshold(w, eta)
    assert float(expected_offspring(w, reference, eta).sum()) == pytest.approx(w.numel())
    assert a == pytest.approx(reference, rel=1e-9)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=40).filter(
        lambda ws: sum(ws) > 1e-6
    ),
    st.sampled_from(ETAS),
)
def test_threshold_on_any_weights(raw, eta):
    w = normalised(raw)
    a = float(chopthin_threshold(w, eta))
    assert a > 0
    assert float(expected_offspring(w, a, eta).sum()) == pytest.approx(w.numel(), rel=1e-9)


# ---- the scheme ---------------------------------------------------------------------------
# Every registered scheme, chopthin at the smallest and a large eta.
SCHEMES = {
    **{name: RESAMPLERS[name] for name in sorted(RESAMPLERS) if name != "chopthin"},
    **{f"chopthin_eta{eta:g}": Chopthin(eta) for eta in (4.0, 10.0)},
}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("name", sorted(WEIGHT_SETS))
def test_every_scheme_hands_on_each_particles_weight_on_average(scheme, name, single_thread):
    """E[sum over the copies of i of their post weight] = W_i: 5 standard errors."""
    w, repeats = normalised(WEIGHT_SETS[name]), 2000
    resample, gen = SCHEMES[scheme], torch.Generator().manual_seed(1)
    mass = torch.stack([post_mass_by_parent(resample(w, gen), w.numel()) for _ in range(repeats)])
    se = mass.std(0) / math.sqrt(repeats)
    assert torch.all((mass.mean(0) - w).abs() <= 5 * se + 1e-12), (mass.mean(0), w)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=40).filter(
        lambda ws: sum(ws) > 1e-6
    ),
    st.sampled_from(ETAS),
    st.integers(0, 2**31),
)
def test_n_particles_normalised_weights_and_ratio_at_most_eta(raw, eta, seed):
    w = normalised(raw)
    n = w.numel()
    drawn = Chopthin(eta)(w, torch.Generator().manual_seed(seed))
    assert drawn.ancestors.shape == (n,) and drawn.ancestors.dtype == torch.long
    assert drawn.log_w.shape == (n,) and drawn.log_mass.shape == ()
    assert int(drawn.ancestors.min()) >= 0 and int(drawn.ancestors.max()) < n
    assert torch.all(w[drawn.ancestors] > 0), "a zero-weight particle was selected"
    assert float(torch.logsumexp(drawn.log_w, 0)) == pytest.approx(0.0, abs=1e-12)
    v = drawn.log_w.exp()
    assert float(v.max() / v.min()) <= eta * (1 + 1e-9)
    # The structure: kept once with W_i, chopped into floor/ceil(h_i) copies sharing W_i,
    # thinned at most once with weight a (the post weights in units of W).
    a = float(chopthin_threshold(w, eta))
    h = expected_offspring(w, a, eta)
    counts = torch.bincount(drawn.ancestors, minlength=n)
    post = (drawn.log_w + drawn.log_mass).exp()
    assert torch.all(counts >= torch.floor(h - 1e-9)) and torch.all(counts <= torch.ceil(h + 1e-9))
    for j, i in enumerate(drawn.ancestors.tolist()):
        if float(w[i]) < a:
            assert float(post[j]) == pytest.approx(a, rel=1e-9)
        else:
            assert float(post[j]) == pytest.approx(float(w[i]) / int(counts[i]), rel=1e-9)


def test_weights_within_eta_over_2_are_left_as_they_are():
    w = normalised([1.0, 1.5, 2.0, 1.2, 1.9])  # max/min = 2 = eta/2 at eta = 4
    drawn = Chopthin(4.0)(w, torch.Generator().manual_seed(0))
    assert torch.equal(drawn.ancestors, torch.arange(5))
    assert torch.allclose(drawn.log_w, w.log(), atol=1e-12)
    assert float(drawn.log_mass) == pytest.approx(0.0, abs=1e-12)


def test_chopthin_keeps_lineages_that_systematic_drops():
    """A light particle survives thinning with probability W_i/a, not N·W_i."""
    w = normalised([0.9] + [0.1 / 7] * 7)
    a = float(chopthin_threshold(w, 4.0))
    h = expected_offspring(w, a, 4.0)
    assert torch.all(h[1:] > 8 * w[1:]), (h, 8 * w)  # more likely to survive than N·W_i


def test_eta_below_4_is_refused_and_the_knob_reaches_the_scheme():
    with pytest.raises(ValueError, match=r"eta must be >= 4; got 3.9"):
        Chopthin(3.9)
    with pytest.raises(ValueError, match=r"chopthin_eta must be >= 4; got 3.0"):
        SMCConfig(chopthin_eta=3)
    with pytest.raises(ValueError, match="chopthin_eta must be finite"):
        SMCConfig(chopthin_eta=math.inf)
    assert get_resampler("chopthin", 8.0) == Chopthin(8.0)
    assert get_resampler("systematic", 8.0) is RESAMPLERS["systematic"]
    sampler = PowerSMC(ToyLM.trap(), SMCConfig(resampling="chopthin", chopthin_eta=6.5))
    assert sampler.parts().resampler == Chopthin(6.5)


def test_chopthin_is_offered_by_the_config_and_the_command_line():
    assert "chopthin" in config_knobs()["resampling"].choices
    args = build_parser().parse_args(
        ["run", "--prompt", "x", "--resampling", "chopthin", "--chopthin-eta", "6"]
    )
    config = config_from_args(args)
    assert (config.resampling, config.chopthin_eta) == ("chopthin", 6.0)


# ---- the engine ---------------------------------------------------------------------------
def spread_config(**changes) -> SMCConfig:
    """Plain proposal (tau = 1), resampling every step: the weights p^(alpha-1) spread."""
    base = dict(
        alpha=3.0,
        n_particles=16,
        max_new_tokens=5,
        resampling="chopthin",
        ess_threshold=1.0,
        proposal_temperature=1.0,
        seed=3,
    )
    return SMCConfig(**{**base, **changes})


def test_the_engine_keeps_the_post_weights_and_their_ratio_bound():
    """After a chopthin step, the next step's weights are post weights times G_{t+1}."""
    model = ToyLM.random(4, 5, seed=8, sharpness=1.0)
    records = list(PowerSMC(model, spread_config(), track_text=False).stream([]))
    assert any(r.resampled for r in records[:-1])
    kept_unequal = False
    for before, after in itertools.pairwise(records):
        if not before.resampled:
            continue
        post = torch.tensor(after.log_weights) - torch.tensor(after.log_increment)
        post = post - torch.logsumexp(post, 0)
        assert float(post.max() - post.min()) <= math.log(4.0) + 1e-9
        kept_unequal |= float(post.max() - post.min()) > 1e-6
    assert kept_unequal, "chopthin left every weight equal: the case does not test the weights"


@pytest.mark.parametrize("every", [1, 3])
def test_a_schemes_post_mass_multiplies_z_hat(every):
    """log Ẑ += log_mass at each resampling: a scheme that doubles its mass doubles Ẑ."""
    model = ToyLM.random(4, 5, seed=8, sharpness=1.0)
    base = Chopthin(4.0)

    def doubled(weights, generator):
        drawn = base(weights, generator)
        return drawn._replace(log_mass=drawn.log_mass + math.log(2.0))

    def records(resampler):
        run = PowerSMC(model, spread_config(), track_text=False, stream_every=every).stream([])
        run.parts = dataclasses.replace(run.parts, resampler=resampler)
        return list(run)

    plain, shifted = records(base), records(doubled)
    assert [r.tokens for r in plain] == [r.tokens for r in shifted]  # the same draws
    resamples = 0
    for one, two in zip(plain, shifted, strict=True):
        assert two.log_z - one.log_z == pytest.approx(resamples * math.log(2.0), abs=1e-9)
        resamples += one.resampled
    assert resamples >= 2


def test_chopthin_records_are_the_same_for_every_stream_every():
    model = ToyLM.random(4, 5, seed=8, sharpness=1.0)
    runs = [
        list(PowerSMC(model, spread_config(), track_text=False, stream_every=k).stream([]))
        for k in (1, 3)
    ]
    for one, three in zip(*runs, strict=True):
        assert (one.ancestors, one.resampled, one.tokens) == (
            three.ancestors,
            three.resampled,
            three.tokens,
        )
        assert one.log_z == pytest.approx(three.log_z, abs=1e-12)
        assert one.log_weights == pytest.approx(three.log_weights, abs=1e-12)


# ---- the sampler against the exact target ---------------------------------------------------
FAMILY_LEVEL = 1e-4
N, RUNS = 128, 120


def bound(k: int) -> float:
    """Two-sided normal bound for k simultaneous z-scores at family level FAMILY_LEVEL."""
    return float(norm.isf(FAMILY_LEVEL / (2 * k)))


# (model "VxL:seed:sharpness", alpha, max_new_tokens or None, stop strings, SMCConfig fields)
CASES = {
    "every_step": ("4x5:8:1.0", 3.0, None, (), dict(ess_threshold=1.0)),
    "truncation": ("4x6:2:0.8", 3.0, 3, (), dict(ess_threshold=1.0)),
    "stop_string": ("4x5:7:1.0", 3.0, None, ("b",), dict(ess_threshold=1.0)),
    "block_size_2": ("3x6:5:1.0", 3.0, None, (), dict(block_size=2, ess_threshold=1.0)),
    "ess_triggered": ("4x5:8:1.0", 4.0, None, (), dict(ess_threshold=0.6)),
    "eta_10_linear_ramp": (
        "4x5:3:1.0",
        4.0,
        None,
        (),
        dict(ess_threshold=1.0, chopthin_eta=10.0, schedule="linear", ramp_tokens=12),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_chopthin_smc_matches_the_exact_target(name, single_thread):
    spec, alpha, limit, stop, fields = CASES[name]
    vocab_len, seed, sharp = spec.split(":")
    vocab, length = (int(x) for x in vocab_len.split("x"))
    model = ToyLM.random(vocab, length, seed=int(seed), sharpness=float(sharp))
    limit = limit or model.max_len
    rule = StopStrings(list(stop)) if stop else None
    table = enumerate_sequences(model, (), limit, stop=rule)
    estimates, z_hat, resamples = [], [], 0
    for run_seed in range(RUNS):
        config = SMCConfig(
            alpha=alpha,
            n_particles=N,
            max_new_tokens=limit,
            seed=run_seed,
            resampling="chopthin",
            proposal_temperature=1.0,
            **fields,
        )
        result = PowerSMC(model, config, stop=rule, track_text=False).run([])
        estimates.append(result_distribution(table, result))
        z_hat.append(math.exp(result.log_z))
        resamples += result.n_resamples
    assert resamples > 0, f"{name}: chopthin never ran"
    estimates = torch.stack(estimates)
    target = power_distribution(table, alpha)
    se = torch.sqrt(estimates.var(0) / RUNS + target * (1 - target) / (N * RUNS))
    diff = (estimates.mean(0) - target).abs()
    z = torch.where(se > 0, diff / se, torch.where(diff > 1e-12, math.inf, 0.0))
    tv = total_variation(estimates.mean(0), target)
    worst = int(z.argmax())
    assert float(z.max()) <= bound(len(table.sequences)), (
        f"{name}: z = {float(z.max()):.1f} on {table.completions[worst]} (TV {tv:.4f}; "
        f"estimate {float(estimates.mean(0)[worst]):.4f}, exact {float(target[worst]):.4f})"
    )
    # E[Ẑ] = Z_alpha: the post mass of each chopthin step is a factor of Ẑ.
    z_hat = torch.tensor(z_hat, dtype=torch.float64)
    exact_z = math.exp(exact_log_z(table, alpha))
    z_z = abs(float(z_hat.mean()) - exact_z) / (float(z_hat.std()) / math.sqrt(RUNS))
    assert z_z <= bound(1), f"{name}: mean Ẑ = {float(z_hat.mean()):.5g}, Z = {exact_z:.5g}"
