"""Power-SMC targets pi_alpha exactly: checked against enumeration on toy models.

Tolerances come from the runs themselves: for each sequence y the averaged weighted
estimate has standard error sqrt(s_y^2/R + pi(1-pi)/(N·R)) (the second term is the
noise floor of N·R exact draws, so a never-sampled sequence still gets a fair error
bar); we accept |estimate - pi| <= 5 standard errors, and the same check rejects
token-level temperature sampling on the trap model.
"""

from __future__ import annotations

import math

import pytest
import torch

from powersmc_core import MHPowerSampler, PowerSMC, SMCConfig, TemperatureSampling, ToyLM
from powersmc_core.theory.exact import (
    empirical_distribution,
    enumerate_sequences,
    exact_log_z,
    power_distribution,
    temperature_distribution,
    weighted_distribution,
)

Z_BOUND = 5.0
MODELS = {
    "V4L4s1": lambda: ToyLM.random(4, 4, seed=1, sharpness=0.7),
    "V4L4s2": lambda: ToyLM.random(4, 4, seed=2, sharpness=0.7),
    "V3L5s0": lambda: ToyLM.random(3, 5, seed=0, sharpness=0.7),
    "V3L5s1": lambda: ToyLM.random(3, 5, seed=1, sharpness=0.7),
}


def z_scores(estimates: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    runs = estimates.shape[0]
    se = torch.sqrt(estimates.var(0) / runs + target * (1 - target) / (n * runs))
    return (estimates.mean(0) - target).abs() / se


def smc_estimates(model, config_kwargs, runs):
    table = enumerate_sequences(model)
    estimates, log_z = [], []
    for r in range(runs):
        result = PowerSMC(model, SMCConfig(seed=r, **config_kwargs)).run([])
        estimates.append(weighted_distribution(table, result.completions, result.weights))
        log_z.append(result.log_z)
    return table, torch.stack(estimates), torch.tensor(log_z, dtype=torch.float64)


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("alpha", [2.0, 4.0])
@pytest.mark.parametrize("schedule", ["constant", "linear", "adaptive"])
def test_weighted_particles_match_exact_power_distribution(
    model_name, alpha, schedule, single_thread
):
    """Models × alphas × schedules with systematic resampling. Every resampling scheme, the
    ramps that end before alpha (catch-up), truncation, prompts, tau and stop rules are
    checked case by case in test_exactness_samplers.py."""
    n, runs = 64, 100
    model = MODELS[model_name]()
    config = dict(alpha=alpha, n_particles=n, schedule=schedule, ramp_tokens=3)
    table, estimates, _ = smc_estimates(model, config, runs)
    z = z_scores(estimates, power_distribution(table, alpha), n)
    assert float(z.max()) <= Z_BOUND, (
        f"max z = {float(z.max()):.2f} for {table.sequences[int(z.argmax())]}"
    )


def test_token_level_temperature_fails_the_same_check_on_the_trap_model(single_thread):
    """The negative control: the check above is able to fail."""
    model, alpha, n, runs = ToyLM.trap(), 4.0, 64, 100
    table = enumerate_sequences(model)
    estimates = []
    for r in range(runs):
        result = TemperatureSampling(
            model, temperature=1 / alpha, n_particles=n, max_new_tokens=8, seed=r
        ).run([])
        estimates.append(empirical_distribution(table, result.completions))
    estimates = torch.stack(estimates)
    assert float(z_scores(estimates, power_distribution(table, alpha), n).max()) > 10 * Z_BOUND
    # ...while it passes against its own exact law, so the failure is the target, not the test.
    assert (
        float(z_scores(estimates, temperature_distribution(table, 1 / alpha), n).max()) <= Z_BOUND
    )


def test_power_smc_on_trap_model_picks_the_confident_path(single_thread):
    model = ToyLM.trap()
    table, estimates, _ = smc_estimates(model, dict(alpha=4.0, n_particles=64), 60)
    z = z_scores(estimates, power_distribution(table, 4.0), 64)
    assert float(z.max()) <= Z_BOUND
    best = table.sequences[int(estimates.mean(0).argmax())]
    assert [model.token_names[t] for t in best] == ["B", "x"]


@pytest.mark.parametrize("schedule", ["constant", "linear"])
@pytest.mark.parametrize("model_name", ["V4L4s1", "V3L5s1"])
def test_normalising_constant_estimate_is_unbiased(model_name, schedule, single_thread):
    """E[Ẑ] = Z_alpha = sum_y p(y)^alpha for any N (standard SMC result)."""
    model, alpha, n, runs = MODELS[model_name](), 4.0, 16, 400
    table, _, log_z = smc_estimates(
        model, dict(alpha=alpha, n_particles=n, schedule=schedule, ramp_tokens=3), runs
    )
    z_hat = log_z.exp()
    exact = math.exp(exact_log_z(table, alpha))
    se = float(z_hat.std()) / math.sqrt(runs)
    assert abs(float(z_hat.mean()) - exact) <= Z_BOUND * se
    # and it is not trivially equal to a constant
    assert float(z_hat.std()) > 0


@pytest.mark.parametrize("alpha", [2.0, 4.0])
def test_mh_power_sampling_converges_to_pi_alpha(alpha, single_thread):
    model, chains = ToyLM.random(3, 3, seed=0, sharpness=0.7), 400
    table = enumerate_sequences(model)
    finals = []
    for seed in range(chains):
        sampler = MHPowerSampler(
            model, alpha=alpha, max_new_tokens=3, block_size=1, mh_steps=15, seed=seed
        )
        finals.append(sampler.run([]).completions[0])
    empirical = empirical_distribution(table, finals)
    pi = power_distribution(table, alpha)
    se = torch.sqrt(pi * (1 - pi) / chains)
    assert float(((empirical - pi).abs() / torch.clamp(se, min=1e-12)).max()) <= Z_BOUND


def test_mh_without_steps_is_just_low_temperature_and_fails(single_thread):
    """Negative control for the MH check: with 0 MH steps MH is token-level temperature."""
    model, alpha, chains = ToyLM.trap(), 4.0, 400
    table = enumerate_sequences(model)
    finals = [
        MHPowerSampler(model, alpha=alpha, max_new_tokens=3, block_size=1, mh_steps=0, seed=s)
        .run([])
        .completions[0]
        for s in range(chains)
    ]
    empirical = empirical_distribution(table, finals)
    pi = power_distribution(table, alpha)
    se = torch.sqrt(pi * (1 - pi) / chains)
    assert float(((empirical - pi).abs() / torch.clamp(se, min=1e-12)).max()) > Z_BOUND
