"""powersmc_core.theory against closed forms and enumeration (and Monte Carlo with derived bounds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from powersmc_core import SMCConfig, ToyLM
from powersmc_core.engine.genealogy import sequences_at
from powersmc_core.engine.run import PowerSMC
from powersmc_core.engine.tempering import renyi_entropy
from powersmc_core.plotting import theory as figures
from powersmc_core.theory import (
    empirical_tv_floor,
    ess_traces,
    fit_loglog_slope,
    incremental_weight_variance,
    mh_vs_smc,
    power_vs_temperature,
    renyi_diagnostics,
    renyi_identity,
    renyi_identity_from_records,
    smc_estimate,
    tv_curves,
    tv_vs_n,
    zhat_unbiasedness,
)
from powersmc_core.theory.exact import enumerate_sequences, temperature_distribution

TAUS = np.geomspace(0.05, 4.0, 49)


def random_rows(n: int, v: int, scale: float = 2.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(scale * torch.randn(n, v, generator=g, dtype=torch.float64), -1)


# -- power vs temperature -------------------------------------------------------------------
def test_trap_closed_form():
    cmp = power_vs_temperature(ToyLM.trap(), 2.0)
    frame = cmp.frame().set_index("sequence")
    # p: A· = 0.2 each, B x = 0.36, B y = B z = 0.02. The trap's table is built from float32
    # literals, so its probabilities carry float32 rounding (relative 1e-7).
    rel = 1e-6
    z = 3 * 0.2**2 + 0.36**2 + 2 * 0.02**2
    assert frame.loc["B x", "pi_alpha"] == pytest.approx(0.36**2 / z, rel=rel)
    assert cmp.log_z == pytest.approx(math.log(z), rel=rel)
    # T = 1/2: first token 0.36/(0.36+0.16), then 1/3 each after A.
    assert frame.loc["A y", "token_temperature"] == pytest.approx(0.36 / 0.52 / 3, rel=rel)
    assert cmp.tv_power_vs_temperature > 0.2


def test_alpha_one_everything_agrees():
    curves = tv_curves(ToyLM.random(4, 4, seed=3), [1.0])
    assert curves.iloc[0, 1:].abs().max() < 1e-12


def test_vectorised_temperature_matches_a_loop_over_sequences():
    table = enumerate_sequences(ToyLM.random(4, 4, seed=1))
    for t in (0.25, 1.0, 3.0):
        loop = torch.tensor(
            [
                sum(
                    float(torch.log_softmax(d / t, 0)[tok])
                    for d, tok in zip(dists, emitted, strict=True)
                )
                for dists, emitted in zip(table.step_logprobs, table.emitted, strict=True)
            ],
            dtype=torch.float64,
        ).exp()
        fast = temperature_distribution(table, t)
        torch.testing.assert_close(fast, loop, atol=1e-12, rtol=0)
        assert float(fast.sum()) == pytest.approx(1.0, abs=1e-12)


def test_tv_grows_with_alpha_on_trap():
    curves = tv_curves(ToyLM.trap(), [1.0, 2.0, 4.0, 8.0])
    assert np.all(np.diff(curves["tv_power_vs_temperature"]) > 0)


# -- optimal proposal -----------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.5, 2.0, 4.0, 8.0])
def test_variance_zero_at_inverse_alpha_and_positive_elsewhere(alpha):
    # Logit scale shrinks with alpha so p^alpha is not a float-level point mass (for which
    # every small tau would give a variance below rounding, hiding the strict inequality).
    rows = random_rows(20, 50, scale=min(2.0, 4.0 / alpha), seed=int(alpha * 10))
    taus = np.sort(np.append(TAUS, 1.0 / alpha))
    wv = incremental_weight_variance(rows, alpha, taus)
    k = int(np.argmin(np.abs(taus - 1.0 / alpha)))
    assert np.abs(wv.relative_variance[:, k]).max() < 1e-10
    assert np.abs(wv.log_weight_variance[:, k]).max() < 1e-10
    others = np.delete(wv.relative_variance, k, axis=1)
    assert others.min() > 1e-8
    np.testing.assert_allclose(wv.grid_argmin, 1.0 / alpha)
    np.testing.assert_allclose(wv.tau_star * alpha, 1.0, atol=1e-9)
    # Unimodal along the grid: decreasing before 1/alpha, increasing after.
    assert np.all(np.diff(wv.log_relative_variance[:, : k + 1], axis=1) < 0)
    assert np.all(np.diff(wv.log_relative_variance[:, k:], axis=1) > 0)


def test_relative_variance_matches_direct_enumeration():
    row = random_rows(1, 7, seed=5)[0]
    alpha, tau = 3.0, 0.7
    q = torch.softmax(row / tau, 0)
    w = row.exp() ** alpha / q
    mean = float((q * w).sum())
    var = float((q * (w - mean) ** 2).sum())
    log_w = torch.log(w)
    var_log = float((q * (log_w - (q * log_w).sum()) ** 2).sum())
    wv = incremental_weight_variance(row, alpha, [tau])
    assert mean == pytest.approx(float((row.exp() ** alpha).sum()), rel=1e-12)
    assert wv.relative_variance[0, 0] == pytest.approx(var / mean**2, rel=1e-9)
    assert wv.log_weight_variance[0, 0] == pytest.approx(var_log, rel=1e-9)


def test_uniform_row_is_flagged_and_impossible_tokens_are_ignored():
    row = torch.tensor([0.0, 0.0, 0.0, -math.inf], dtype=torch.float64).log_softmax(0)
    wv = incremental_weight_variance(row, 3.0, TAUS)
    assert wv.uniform.tolist() == [True]
    assert np.isnan(wv.tau_star).all()
    assert np.abs(wv.relative_variance).max() < 1e-12
    sparse = torch.tensor([-0.1, -2.5, -math.inf, -4.0], dtype=torch.float64).log_softmax(0)
    wv = incremental_weight_variance(sparse, 3.0, TAUS)
    assert np.isfinite(wv.relative_variance).all()
    assert wv.tau_star[0] == pytest.approx(1 / 3, rel=1e-9)


def test_renyi_identity_and_variance():
    rows = random_rows(40, 30, seed=2)
    ri = renyi_identity(rows, 4.0, draws=5, seed=1)
    assert ri.max_abs_error < 1e-12
    np.testing.assert_allclose(ri.renyi_term, -3.0 * renyi_entropy(rows, 4.0).numpy())
    assert ri.variance_log_weight == pytest.approx(ri.variance_predicted, rel=1e-10)


def test_renyi_identity_from_sampler_records():
    """The records' increments against (1 - alpha)·H_alpha of each prefix's row in the toy
    model's table (prefixes from the genealogy): independent of the sampler's log-sum-exp."""
    alpha = 4.0
    model = ToyLM.random(5, 6, seed=3)
    cfg = SMCConfig(alpha=alpha, n_particles=32, max_new_tokens=6, seed=0)
    records = list(PowerSMC(model, cfg).stream([]))
    frame = renyi_identity_from_records(records)
    assert len(frame) >= 2
    for row in frame.itertuples():
        rec = records[row.step - 1]
        active = [i for i in range(32) if rec.tokens[i] >= 0]
        prefixes = [sequences_at(records, row.step)[i][:-1] for i in active]
        table_rows = np.stack([model.next_token_logprobs(p).numpy() for p in prefixes])
        renyi = np.log(np.exp(alpha * table_rows).sum(1)) / (1 - alpha)  # H_alpha per prefix
        increments = np.asarray(rec.log_increment)[active]
        np.testing.assert_allclose(increments, (1 - alpha) * renyi, atol=1e-10)
        assert row.var_log_increment == pytest.approx(np.var(increments, ddof=1), abs=1e-12)
        predicted = (alpha - 1) ** 2 * np.var(renyi, ddof=1)
        assert row.predicted_variance == pytest.approx(predicted, rel=1e-8, abs=1e-12)


# -- SMC against exact ------------------------------------------------------------------------
def test_smc_estimate_is_unbiased_on_trap_and_lowtemp_is_not():
    model = ToyLM.trap()
    cfg = SMCConfig(alpha=4.0, n_particles=64, max_new_tokens=3, seed=0)
    smc = smc_estimate(model, cfg, runs=40)
    low = smc_estimate(model, cfg, runs=40, method="lowtemp")
    # Bonferroni over the visited sequences at family level 1e-3: a two-sided normal bound.
    from scipy.stats import norm

    bound = norm.isf(1e-3 / (2 * len(smc.exact)))
    assert np.abs(smc.bias_z()).max() < bound
    assert np.abs(low.bias_z()).max() > 3 * bound
    assert smc.estimate.sum() == pytest.approx(1.0, abs=1e-9)


def test_tv_vs_n_slope_is_about_minus_half():
    frame = tv_vs_n(ToyLM.trap(), 4.0, [32, 128, 512], runs=40, seed=1)
    slope, _, se = fit_loglog_slope(frame["n_particles"], frame["mean_tv"], frame["stderr"])
    assert abs(slope + 0.5) < 4 * se
    assert slope < -0.25  # would be ~0 if TV plateaued at a bias


def test_fit_loglog_slope_recovers_power_law():
    x = np.array([1.0, 10.0, 100.0])
    slope, intercept, _ = fit_loglog_slope(x, 3.0 * x**-0.5)
    assert slope == pytest.approx(-0.5)
    assert intercept == pytest.approx(math.log(3.0))


def test_zhat_unbiased_with_derived_bound():
    check = zhat_unbiasedness(
        ToyLM.trap(), SMCConfig(alpha=4.0, n_particles=4, max_new_tokens=3, seed=0), runs=300
    )
    assert abs(check.z_score) < 4.0
    # log Ẑ is biased low (Jensen): a check that the statistic can fail.
    assert check.mean_log_ratio < -4 * check.log_ratio_stderr


def test_empirical_tv_floor_shrinks_with_samples():
    pi = np.array([0.5, 0.3, 0.2])
    small, _ = empirical_tv_floor(pi, 50)
    large, _ = empirical_tv_floor(pi, 5000)
    assert large < small / 5


def test_ess_traces_shape_and_range():
    frame = ess_traces(ToyLM.trap(), 4.0, runs=3, n_particles=16, ramp_tokens=2)
    assert set(frame["schedule"]) == {"constant", "linear", "adaptive"}
    assert frame["ess_fraction"].between(1 / 16 - 1e-12, 1 + 1e-12).all()


def test_mh_vs_smc_budget_zero_is_token_temperature():
    model = ToyLM.trap()
    frame = mh_vs_smc(model, 4.0, mh_steps=(0,), n_particles=(1,), runs=200)
    exact_tv = power_vs_temperature(model, 4.0).tv_power_vs_temperature
    floor, sd = frame["tv_floor"].iloc[0], frame["tv_floor_sd"].iloc[0]
    # Both budgets sample token-level T = 1/alpha; the histogram TV is within the MC floor.
    assert (frame["tv"] - exact_tv).abs().max() < floor + 4 * sd
    assert (frame["token_forwards"] > 0).all()


def test_renyi_diagnostics_columns():
    model = ToyLM.random(5, 6, seed=3)
    records = list(
        PowerSMC(model, SMCConfig(alpha=4.0, n_particles=8, max_new_tokens=6)).stream([])
    )
    diag = renyi_diagnostics(records)
    assert len(diag) == len(records)
    assert diag["ess_fraction"].between(0, 1 + 1e-12).all()
    assert (diag["renyi_std"].dropna() >= 0).all()


def test_figures_build():
    model = ToyLM.trap()
    rows = random_rows(3, 10)
    wv = incremental_weight_variance(rows, 4.0, TAUS)
    figs = [
        figures.power_comparison_figure(power_vs_temperature(model, 4.0)),
        figures.tv_curves_figure({"trap": tv_curves(model, [1, 2, 4])}),
        figures.weight_variance_figure(wv),
        figures.tau_star_figure({"random": wv}),
        figures.renyi_identity_figure(renyi_identity(rows, 4.0)),
        figures.tv_vs_n_figure(tv_vs_n(model, 4.0, [8, 16], runs=3)),
        figures.ess_traces_figure(ess_traces(model, 4.0, runs=2, n_particles=8, ramp_tokens=2)),
        figures.zhat_figure(
            {"trap": zhat_unbiasedness(model, SMCConfig(alpha=4.0, max_new_tokens=3), runs=5)}
        ),
        figures.mh_vs_smc_figure(mh_vs_smc(model, 4.0, (0, 1), (1, 2), runs=5)),
    ]
    assert all(len(f.data) > 0 for f in figs)
