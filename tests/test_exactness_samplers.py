"""Every sampler against its exact target, computed by enumeration, case by case.

Each case runs R independent seeded runs and compares their average (the law of the
sample the sampler returns) with the exact target over *complete* continuations: the
completions of the run's prompt, ``max_new_tokens`` and stop rule, matched by tokens and
ending (``exact.result_distribution``). The target is pi_alpha ∝ P^alpha of that stopped,
truncated law; the cases are chosen so that each piece of the maths decides a result:

- a prompt; truncation below the model's length (a cut "a b" is not "a b <eos>");
- a linear ramp and the adaptive schedule longer than the sequences, so alpha_T < alpha
  when runs end and the final catch-up (alpha - alpha_T)·log p(y) carries the target;
  sequences of different lengths, so finished particles must keep being bridged;
- block_size > 1; a non-optimal proposal temperature tau (the -log q term matters);
- every resampling scheme, resampling every step (weights reset after each draw), with
  the plain proposal q = p so that the weights carried through resampling are far from uniform;
- a stop string, against the exactly computed power of the stopped law;
- MH power sampling on the same cases;
- E[Ẑ] = Z_alpha = sum_y P(y)^alpha in every SMC case.

Tolerances come from N and R only. For each completion y the run average has standard
error se_y = sqrt(s_y^2/R + pi_y(1 - pi_y)/(N·R)) (s_y: the sd over runs; the second term
is the spread of N·R exact draws, so a completion no run visited still has an honest error
bar). A case fails when some |mean - pi_y| > b·se_y with b the two-sided normal bound at
family level 1e-4 over the S completions (Bonferroni), i.e. a correct sampler fails a case
about once in 10^4. ``tests/mutation_check.py`` breaks the engine line by line and checks
that these tests fail for every mutation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch
from scipy.stats import norm

from powersmc_core import (
    BestOfN,
    GreedyDecoding,
    MHPowerSampler,
    PowerSMC,
    SMCConfig,
    StopStrings,
    TemperatureSampling,
    ToyLM,
)
from powersmc_core.engine.choosers import WeightedChoice
from powersmc_core.engine.resampling import RESAMPLERS
from powersmc_core.theory.exact import (
    cut_distribution,
    enumerate_sequences,
    exact_log_z,
    power_distribution,
    result_distribution,
)

FAMILY_LEVEL = 1e-4
N, RUNS = 128, 120
MH_CHAINS = 300


def bound(k: int) -> float:
    """Two-sided normal bound for k simultaneous z-scores at family level FAMILY_LEVEL."""
    return float(norm.isf(FAMILY_LEVEL / (2 * k)))


def worst_z(estimates: torch.Tensor, target: torch.Tensor, n: int) -> tuple[float, int]:
    """(max_y |mean_y - pi_y| / se_y, argmax) over the table's completions."""
    runs = estimates.shape[0]
    var = estimates.var(0) if runs > 1 else torch.zeros_like(target)
    se = torch.sqrt(var / runs + target * (1 - target) / (n * runs))
    diff = (estimates.mean(0) - target).abs()
    z = torch.where(se > 0, diff / se, torch.where(diff > 1e-12, math.inf, 0.0))
    return float(z.max()), int(z.argmax())


@dataclass(frozen=True)
class Case:
    model: str
    alpha: float = 3.0
    prompt: tuple[int, ...] = ()
    max_new_tokens: int | None = None  # None: the model's own length
    stop: tuple[str, ...] = ()
    smc: dict = field(default_factory=dict)  # further SMCConfig fields
    mh: dict = field(default_factory=dict)  # MHPowerSampler fields (block_size, mh_steps, ...)

    def toy(self) -> ToyLM:
        name, seed, sharp = self.model.split(":")
        vocab, length = (int(x) for x in name.split("x"))
        return ToyLM.random(vocab, length, seed=int(seed), sharpness=float(sharp))

    def limit(self, model: ToyLM) -> int:
        return self.max_new_tokens or model.max_len - len(self.prompt)

    def rule(self) -> StopStrings | None:
        return StopStrings(list(self.stop)) if self.stop else None

    def table(self, model: ToyLM):
        return enumerate_sequences(model, self.prompt, self.limit(model), stop=self.rule())


# Models: "VxL:seed:sharpness" -> ToyLM.random(V, L, seed, sharpness). Sharpness ~1 spreads
# EOS over every length, so particles finish at different steps.
SMC_CASES = {
    "prompt": Case("4x5:1:1.0", prompt=(1,), smc=dict(ess_threshold=1.0)),
    "truncation": Case("4x6:2:0.8", max_new_tokens=3, smc=dict(ess_threshold=1.0)),
    "linear_ramp_longer_than_sequences": Case(
        "4x5:3:1.0",
        alpha=4.0,
        smc=dict(schedule="linear", ramp_tokens=12, ess_threshold=1.0),
    ),
    "adaptive_ramp_longer_than_sequences": Case(
        "4x5:4:1.0",
        alpha=4.0,
        smc=dict(schedule="adaptive", ramp_tokens=12, target_ess=0.9, ess_threshold=0.5),
    ),
    "block_size_2": Case("3x6:5:1.0", smc=dict(block_size=2, ess_threshold=1.0)),
    "non_optimal_tau": Case("4x5:6:1.0", smc=dict(proposal_temperature=0.7, ess_threshold=0.5)),
    "stop_string": Case("4x5:7:1.0", stop=("b",), smc=dict(ess_threshold=1.0)),
    **{
        # Proposal at tau = 1 (plain p): the weights p^(alpha-1) spread, so what resampling
        # does with them (and the reset to 1/N after it) decides the result.
        f"resampling_{name}": Case(
            "4x5:8:1.0",
            smc=dict(resampling=name, ess_threshold=1.0, proposal_temperature=1.0),
        )
        for name in sorted(RESAMPLERS)
    },
}
MH_CASES = {
    "prompt": Case("3x5:1:1.0", prompt=(1,), mh=dict(block_size=1, mh_steps=12)),
    "truncation": Case("3x6:2:1.0", max_new_tokens=3, mh=dict(block_size=1, mh_steps=12)),
    "block_size_2": Case("3x5:3:1.0", mh=dict(block_size=2, mh_steps=12)),
    "non_optimal_tau": Case(
        "3x4:4:1.0", mh=dict(block_size=1, mh_steps=12, proposal_temperature=0.7)
    ),
    "stop_string": Case("3x5:5:1.0", stop=("b",), mh=dict(block_size=1, mh_steps=12)),
}


def smc_runs(case: Case):
    """R runs of the case: (table, target, (R, S) estimates, (R,) Ẑ)."""
    model = case.toy()
    table = case.table(model)
    estimates, z_hat = [], []
    for seed in range(RUNS):
        config = SMCConfig(
            alpha=case.alpha,
            n_particles=N,
            max_new_tokens=case.limit(model),
            seed=seed,
            **case.smc,
        )
        result = PowerSMC(model, config, stop=case.rule(), track_text=False).run(case.prompt)
        estimates.append(result_distribution(table, result))
        z_hat.append(math.exp(result.log_z))
    target = power_distribution(table, case.alpha)
    return table, target, torch.stack(estimates), torch.tensor(z_hat, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(SMC_CASES))
def test_smc_matches_the_exact_target(name, single_thread):
    case = SMC_CASES[name]
    table, target, estimates, z_hat = smc_runs(case)
    z, worst = worst_z(estimates, target, N)
    assert z <= bound(len(table.sequences)), (
        f"{name}: z = {z:.1f} on {table.completions[worst]} "
        f"(estimate {float(estimates.mean(0)[worst]):.4f}, exact {float(target[worst]):.4f})"
    )
    # E[Ẑ] = Z_alpha: unbiased for fixed resampling times (kappa 0 or 1); ESS-triggered
    # resampling and the adaptive schedule add an O(1/N) bias far below this error bar.
    exact_z = math.exp(exact_log_z(table, case.alpha))
    se = float(z_hat.std()) / math.sqrt(RUNS)
    z_z = abs(float(z_hat.mean()) - exact_z) / se
    assert z_z <= bound(1), f"{name}: mean Ẑ = {float(z_hat.mean()):.5g}, Z = {exact_z:.5g}"


@pytest.mark.parametrize("name", sorted(MH_CASES))
def test_mh_matches_the_exact_target(name, single_thread):
    case = MH_CASES[name]
    model = case.toy()
    table = case.table(model)
    finals = []
    for seed in range(MH_CHAINS):
        sampler = MHPowerSampler(
            model,
            alpha=case.alpha,
            max_new_tokens=case.limit(model),
            seed=seed,
            stop=case.rule(),
            **case.mh,
        )
        finals.append(result_distribution(table, sampler.run(case.prompt)))
    target = power_distribution(table, case.alpha)
    z, worst = worst_z(torch.stack(finals), target, 1)
    assert z <= bound(len(table.sequences)), (
        f"MH {name}: z = {z:.1f} on {table.completions[worst]} "
        f"(estimate {float(torch.stack(finals).mean(0)[worst]):.4f}, "
        f"exact {float(target[worst]):.4f})"
    )


def test_the_ramp_cases_end_before_the_ramp_does(single_thread):
    """The schedules' catch-up must carry the target: runs end with alpha_T < alpha."""
    for name in ("linear_ramp_longer_than_sequences", "adaptive_ramp_longer_than_sequences"):
        case = SMC_CASES[name]
        model = case.toy()
        config = SMCConfig(
            alpha=case.alpha, n_particles=N, max_new_tokens=case.limit(model), **case.smc
        )
        records = list(PowerSMC(model, config).stream(case.prompt))
        assert records[-1].catch_up > 0.5, name
        # Particles finish at different steps, so bridging finished particles matters.
        ended_at = [sum(not r.finished[i] for r in records) for i in range(N)]
        assert len(set(ended_at)) >= 2, name


def test_the_check_fails_a_sampler_with_the_wrong_target(single_thread):
    """Negative control: the same check rejects SMC aimed at pi_alpha cut at the stop string
    (the runs of the stop case scored against the law without the stop rule's stopping)."""
    case = SMC_CASES["stop_string"]
    table, _, estimates, _ = smc_runs(case)
    model = case.toy()
    full = enumerate_sequences(model, case.prompt, case.limit(model))
    cut = cut_distribution(model, full, power_distribution(full, case.alpha), table, case.rule())
    z, _ = worst_z(estimates, cut, N)
    assert z > bound(len(table.sequences))


# The strategies the baselines are made of, each checked exactly (tests/mutation_check.py).


def test_greedy_is_the_argmax_path(single_thread):
    """ArgmaxProposal: y_t = argmax_v p(v|y_<t) at every step, as a hand-written loop finds."""
    model = ToyLM.random(5, 6, seed=3, sharpness=0.7)
    state, logp = model.start([], 1)
    path: list[int] = []
    for _ in range(6):
        token = int(torch.argmax(logp[0]))
        if token in model.eos_token_ids:
            break
        path.append(token)
        state, logp = model.advance(state, torch.tensor([token]), torch.tensor([True]))
    assert GreedyDecoding(model, max_new_tokens=6).run([]).completions == [path]


def test_baselines_keep_uniform_weights_and_best_of_n_keeps_the_argmax(single_thread):
    """UnweightedTarget: G = 1, so W stays 1/N; MaxLogP: chosen = argmax_i log p(y_i|x)."""
    model = ToyLM.random(4, 5, seed=1)
    n = 16
    for sampler in (
        TemperatureSampling(model, temperature=0.5, n_particles=n, seed=2),
        TemperatureSampling(model, temperature=1.0, n_particles=n, seed=2),
        BestOfN(model, n_particles=n, seed=2),
    ):
        result = sampler.run([])
        assert result.weights == pytest.approx([1.0 / n] * n, abs=1e-12), sampler.method
    best = BestOfN(model, n_particles=n, seed=2).run([])
    assert len(set(best.log_p)) > 1
    assert best.log_p[best.chosen] == max(best.log_p)


def test_the_chosen_particle_is_drawn_by_weight():
    """WeightedChoice: P(chosen = i) = W_i (a z-test over seeds; a zero weight is never chosen)."""
    weights = torch.tensor([0.6, 0.3, 0.1, 0.0], dtype=torch.float64)
    draws = 400
    counts = torch.zeros(4, dtype=torch.float64)
    for seed in range(draws):
        counts[WeightedChoice().choose(weights, torch.zeros(4), seed)] += 1
    assert counts[3] == 0
    se = torch.sqrt(weights * (1 - weights) / draws)[:3]
    z = ((counts[:3] / draws - weights[:3]).abs() / se).max()
    assert float(z) <= bound(3)
