"""Look-ahead SMC (engine/lookahead.py) against exact enumeration on toy models.

- ζ̂ is unbiased: for one prefix, the mean of R independent ζ̂(prefix v) matches the exact
  depth-H power mass of every candidate v (and S = Σ_v p(v)^a ζ̂(v) the depth-(H+1) mass);
- the weighted particles match pi_alpha over complete continuations, with prompts,
  truncation, block sizes 1 and 2, a stop rule and a linear ramp longer than the
  sequences, and E[Ẑ] = Z in each case;
- on a pivotal table (a rare first token with a confident continuation holds most of the
  p^alpha mass) look-ahead finds the rare branch at N = 32 where Power-SMC does not.

Tolerances: for each completion the run average has standard error
se_y = sqrt(s_y^2/R + pi_y(1 - pi_y)/(N·R)); a case fails when some |mean - pi_y| > b·se_y
with b the two-sided normal bound at family level 1e-4 over the S completions (as in
test_exactness_samplers.py). ``tests/mutation_check.py`` breaks the maths (no second-stage
1/S, resampling on W alone, rollouts without p^a/q) and expects these tests to fail.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pytest
import torch
from scipy.stats import norm

from powersmc_core import PowerSMC, SMCConfig, StopStrings, ToyLM
from powersmc_core.engine.lookahead import LookaheadConfig, future_mass
from powersmc_core.engine.schedules import linear_ramp
from powersmc_core.samplers.lookahead import LookaheadSMC
from powersmc_core.samplers.registry import METHODS, make_sampler
from powersmc_core.theory.exact import (
    enumerate_sequences,
    exact_log_z,
    power_distribution,
    result_distribution,
)

FAMILY_LEVEL = 1e-4


def bound(k: int) -> float:
    """Two-sided normal bound for k simultaneous z-scores at family level FAMILY_LEVEL."""
    return float(norm.isf(FAMILY_LEVEL / (2 * k)))


def worst_z(estimates: torch.Tensor, target: torch.Tensor, n: int) -> tuple[float, int]:
    runs = estimates.shape[0]
    se = torch.sqrt(estimates.var(0) / runs + target * (1 - target) / (n * runs))
    diff = (estimates.mean(0) - target).abs()
    z = torch.where(se > 0, diff / se, torch.where(diff > 1e-12, math.inf, 0.0))
    return float(z.max()), int(z.argmax())


# ---- configuration ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(k=0), "lookahead_k must be in [1, 64]; got 0"),
        (dict(m=257), "lookahead_m must be in [1, 256]; got 257"),
        (dict(h=0), "lookahead_h must be in [1, 64]; got 0"),
        (dict(k=2.0), "lookahead_k must be an integer; got 2.0"),
        (dict(epsilon=1.0), "lookahead_epsilon must be in [0, 1); got 1.0"),
        (dict(future="last"), "lookahead_future must be one of ('step', 'final'); got 'last'"),
    ],
)
def test_lookahead_config_says_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LookaheadConfig(**kwargs)


def test_lookahead_is_registered_and_counts_rollout_forwards(single_thread):
    model = ToyLM.random(4, 5, seed=1, sharpness=1.0)
    config = SMCConfig(alpha=3.0, n_particles=4, max_new_tokens=4, seed=0)
    sampler = make_sampler("lookahead", model, config)
    assert isinstance(sampler, LookaheadSMC) and "lookahead" in METHODS
    result = sampler.run([])
    plain = PowerSMC(model, config).run([])
    # Every step forwards at most N rows; the rollouts add at most N·K·M rows per depth.
    assert result.extras["token_forwards"] > plain.extras["token_forwards"]
    assert METHODS["lookahead"].cost(result) == result.extras["token_forwards"]
    boundaries = result.extras["lookahead"]
    assert [b.step for b in boundaries] == list(range(result.n_steps))  # 0: before y_1
    assert all(len(b.candidates) == 4 and len(b.candidates[0]) == 3 for b in boundaries)
    assert all(sum(b.offspring) == 4 for b in boundaries)


def test_lookahead_refuses_a_backend_it_cannot_fork():
    class FixedSequences:  # stands for llama.cpp: at most 256 sequences per context
        name, backend, vocab_size = "fixed", "llamacpp", 1000

    look = LookaheadConfig(k=4, m=4)
    with pytest.raises(ValueError, match=r"N·K·M = 512 rollout rows; llama\.cpp holds at most 256"):
        LookaheadSMC(FixedSequences(), SMCConfig(n_particles=32), look)
    assert LookaheadSMC(FixedSequences(), SMCConfig(n_particles=16), look).lookahead == look

    class Static:
        name, static_cache = "static", True

    with pytest.raises(ValueError, match="static KV cache holds exactly N rows"):
        LookaheadSMC(Static(), SMCConfig())


@pytest.mark.parametrize("mode", [{}, {"copy_on_write": True}], ids=["dynamic", "copy_on_write"])
def test_transformer_rollouts_leave_the_particles_cache_untouched(mode, single_thread):
    """On a tiny random Llama: after the rollouts fork N·K·M rows, the particles' own
    cache still gives the full-forward log-probs; a short look-ahead run completes."""
    from test_hf_backend import PROMPT, make_model, make_tokenizer

    from powersmc_core.models.hf.model import HFModel

    model = HFModel(make_model("llama"), make_tokenizer(), "tiny", **mode)
    state, logp = model.start(PROMPT, 2)
    eos = torch.tensor(model.eos_token_ids)
    generator = torch.Generator().manual_seed(0)
    config = LookaheadConfig(k=2, m=2, h=2)
    active = torch.ones(2, dtype=torch.bool)
    log_zeta, forwards = future_mass(model, state, logp, active, 4.0, config, 9, eos, generator)
    assert torch.isfinite(log_zeta).all() and int(forwards) > 0
    tokens = torch.tensor([7, 9])
    _, after = model.advance(state, tokens, active)
    for i, token in enumerate(tokens.tolist()):
        full = model.next_token_logprobs([*PROMPT, token])
        assert float((after[i].float() - full).abs().max()) <= 1e-4
    cfg = SMCConfig(alpha=4.0, n_particles=2, max_new_tokens=3, seed=0)
    result = LookaheadSMC(model, cfg, LookaheadConfig(k=2, m=1, h=2)).run(PROMPT)
    assert math.isfinite(result.log_z) and result.extras["token_forwards"] > 2 * 3


def test_records_are_the_same_for_every_stream_every(single_thread):
    """Batched records (device-side resampling decisions) equal the per-token ones."""
    model = ToyLM.random(4, 6, seed=1, sharpness=0.7)
    config = SMCConfig(alpha=3.0, n_particles=8, seed=4, block_size=2, ess_threshold=1.0)
    look = LookaheadConfig(k=2, m=2, h=2)
    runs = [LookaheadSMC(model, config, look, stream_every=k).stream([]) for k in (1, 4)]
    records = [list(run) for run in runs]
    results = [run.result() for run in runs]
    assert [r.tokens for r in records[0]] == [r.tokens for r in records[1]]
    assert [r.ancestors for r in records[0]] == [r.ancestors for r in records[1]]
    assert any(r.resampled for r in records[0])
    assert results[0].log_z == pytest.approx(results[1].log_z, abs=1e-9)
    assert results[0].extras == results[1].extras


@pytest.mark.parametrize(("future", "final"), [("step", False), ("final", True)])
def test_the_twist_values_the_future_at_the_chosen_exponent(future, final, single_thread):
    """Depth 1 makes ζ̂(v) = Σ_u p(u | v)^b exact (the rollout's one weight p^b/q is the
    normaliser of q ∝ p^b); at the first boundary of a linear ramp b is alpha_1 ("step")
    or the final alpha ("final")."""
    model, alpha = ToyLM.random(4, 5, seed=2, sharpness=1.0), 4.0
    config = SMCConfig(alpha=alpha, n_particles=3, schedule="linear", ramp_tokens=8, seed=0)
    look = LookaheadConfig(k=8, m=1, h=1, future=future)
    result = LookaheadSMC(model, config, look, track_text=False).run([])
    first = result.extras["lookahead"][0]
    alpha_1 = linear_ramp(config.alpha_start, alpha, 1, config.ramp_tokens)
    assert alpha_1 < alpha - 1  # the two exponents differ: the test can tell them apart
    b = alpha if final else alpha_1
    for v, log_zeta in zip(first.candidates[0], first.log_zeta[0], strict=True):
        if v in model.eos_token_ids:
            assert log_zeta == 0.0
            continue
        exact = torch.logsumexp(b * model.next_token_logprobs([v]), -1)
        assert log_zeta == pytest.approx(float(exact), abs=1e-9), (v, future)


# ---- ζ̂ is unbiased for one prefix -------------------------------------------------------
@pytest.mark.parametrize("alpha", [2.0, 4.0])
def test_future_mass_is_unbiased_for_every_candidate(alpha, single_thread):
    """E[ζ̂(y v)] = Σ_{|c| <= H} p(c | y v)^a, each candidate v its own rollouts."""
    model, prefix, h, m, runs = ToyLM.random(4, 6, seed=3, sharpness=1.0), [0], 3, 64, 40
    config = LookaheadConfig(k=8, m=m, h=h)
    state, logp = model.start(prefix, 1)
    eos = torch.tensor(model.eos_token_ids)
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack(
        [
            future_mass(
                model,
                state,
                logp,
                torch.ones(1, dtype=torch.bool),
                alpha,
                config,
                99,
                eos,
                generator,
            )[0][0].exp()
            for _ in range(runs)
        ]
    )  # (R, V)
    exact = torch.ones(model.vocab_size, dtype=torch.float64)  # ζ after EOS is 1
    for v in range(model.vocab_size - 1):
        table = enumerate_sequences(model, [*prefix, v], max_new_tokens=h)
        exact[v] = math.exp(exact_log_z(table, alpha))
    se = draws.std(0) / math.sqrt(runs)
    z = ((draws.mean(0) - exact).abs() / se.clamp_min(1e-300))[:-1]
    assert float(z.max()) <= bound(model.vocab_size - 1), (draws.mean(0), exact)
    assert float(draws.std(0)[:-1].min()) > 0  # the rollouts are random, the check can fail
    # S = Σ_v p(v)^a ζ̂(v) estimates the depth-(H+1) mass of the prefix itself.
    s_hat = (draws * (alpha * logp[0]).exp()).sum(-1)
    s_exact = math.exp(exact_log_z(enumerate_sequences(model, prefix, max_new_tokens=h + 1), alpha))
    assert abs(float(s_hat.mean()) - s_exact) <= bound(1) * float(s_hat.std()) / math.sqrt(runs)


# ---- the weighted particles match pi_alpha ------------------------------------------------
@dataclass(frozen=True)
class Case:
    model: str  # "VxL:seed:sharpness"
    alpha: float = 3.0
    prompt: tuple[int, ...] = ()
    max_new_tokens: int | None = None
    stop: tuple[str, ...] = ()
    smc: dict = field(default_factory=dict)
    look: LookaheadConfig = field(default_factory=lambda: LookaheadConfig(k=2, m=2, h=2))
    n: int = 32

    def toy(self) -> ToyLM:
        name, seed, sharp = self.model.split(":")
        vocab, length = (int(x) for x in name.split("x"))
        return ToyLM.random(vocab, length, seed=int(seed), sharpness=float(sharp))

    def limit(self, model: ToyLM) -> int:
        return self.max_new_tokens or model.max_len - len(self.prompt)

    def rule(self) -> StopStrings | None:
        return StopStrings(list(self.stop)) if self.stop else None


RUNS = 120
CASES = {
    "all_candidates": Case(
        "4x5:11:1.0", smc=dict(ess_threshold=1.0), look=LookaheadConfig(8, 2, 2)
    ),
    "prompt": Case("4x5:1:1.0", prompt=(1,), smc=dict(ess_threshold=1.0)),
    "truncation": Case("4x6:2:0.8", max_new_tokens=3, smc=dict(ess_threshold=1.0)),
    "block_size_2": Case("3x6:5:1.0", smc=dict(block_size=2, ess_threshold=1.0)),
    # The rollouts do not read text: behind "b" they see a small mass where the stop rule
    # ends the sequence (mass 1), so the twist undervalues "b". Still exact, but noisy unless
    # a larger defensive share of Power-SMC's proposal (epsilon = 0.5) and N = 128.
    "stop_string": Case(
        "4x5:7:1.0",
        stop=("b",),
        smc=dict(ess_threshold=1.0),
        n=128,
        look=LookaheadConfig(k=2, m=2, h=2, epsilon=0.5),
    ),
    "linear_ramp_longer_than_sequences": Case(
        "4x5:3:1.0", alpha=4.0, smc=dict(schedule="linear", ramp_tokens=12, ess_threshold=1.0)
    ),
    "adaptive_ramp_longer_than_sequences": Case(
        "4x5:3:1.0",
        alpha=4.0,
        smc=dict(schedule="adaptive", ramp_tokens=12, target_ess=0.9, ess_threshold=0.5),
    ),
    # The rollouts value the future at the final alpha while alpha_t ramps (any ζ̂ > 0).
    "linear_ramp_final_future": Case(
        "4x5:3:1.0",
        alpha=4.0,
        smc=dict(schedule="linear", ramp_tokens=12, ess_threshold=1.0),
        look=LookaheadConfig(k=2, m=2, h=2, future="final"),
    ),
    "adaptive_ramp_final_future": Case(
        "4x5:3:1.0",
        alpha=4.0,
        smc=dict(schedule="adaptive", ramp_tokens=12, target_ess=0.9, ess_threshold=0.5),
        look=LookaheadConfig(k=8, m=1, h=2, future="final"),
    ),
    "ess_triggered_chopthin": Case("4x5:8:1.0", smc=dict(resampling="chopthin", ess_threshold=0.5)),
}


def lookahead_runs(case: Case, runs: int = RUNS, n: int | None = None):
    model, n = case.toy(), n or case.n
    table = enumerate_sequences(model, case.prompt, case.limit(model), stop=case.rule())
    estimates, z_hat = [], []
    for seed in range(runs):
        config = SMCConfig(
            alpha=case.alpha, n_particles=n, max_new_tokens=case.limit(model), seed=seed, **case.smc
        )
        sampler = LookaheadSMC(model, config, case.look, stop=case.rule(), track_text=False)
        result = sampler.run(case.prompt)
        estimates.append(result_distribution(table, result))
        z_hat.append(math.exp(result.log_z))
    target = power_distribution(table, case.alpha)
    return table, target, torch.stack(estimates), torch.tensor(z_hat, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(CASES))
def test_lookahead_matches_the_exact_target(name, single_thread):
    case = CASES[name]
    table, target, estimates, z_hat = lookahead_runs(case)
    z, worst = worst_z(estimates, target, case.n)
    assert z <= bound(len(table.sequences)), (
        f"{name}: z = {z:.1f} on {table.completions[worst]} "
        f"(estimate {float(estimates.mean(0)[worst]):.4f}, exact {float(target[worst]):.4f})"
    )
    exact_z = math.exp(exact_log_z(table, case.alpha))
    se = float(z_hat.std()) / math.sqrt(RUNS)
    assert abs(float(z_hat.mean()) - exact_z) <= bound(1) * se, (
        f"{name}: mean Ẑ/Z = {float(z_hat.mean()) / exact_z:.4f} ± {se / exact_z:.4f}"
    )


def test_normalising_constant_is_unbiased_at_small_n(single_thread):
    """E[Ẑ] = Z at N = 4, where a biased twist or second stage shows most clearly."""
    case = Case("4x5:9:1.0", alpha=4.0, smc=dict(ess_threshold=1.0))
    table, _, _, z_hat = lookahead_runs(case, runs=400, n=4)
    exact_z = math.exp(exact_log_z(table, case.alpha))
    se = float(z_hat.std()) / math.sqrt(400)
    assert abs(float(z_hat.mean()) - exact_z) <= bound(1) * se


# ---- the pivotal table ----------------------------------------------------------------------
def test_lookahead_finds_the_rare_branch_power_smc_misses(single_thread):
    """Rare-branch mass under pi_4 at N = 32 on the arena's ``toy-pivotal:0``
    (``ToyLM.pivotal``): look-ahead within its error bar, Power-SMC many of its own
    standard errors off, and the two errors' intervals apart."""
    model, alpha, n, runs = ToyLM.pivotal(0), 4.0, 32, 80
    table = enumerate_sequences(model)
    rare = torch.tensor(
        [seq[:1] == (model.pivot_token,) for seq in table.sequences], dtype=torch.float64
    )
    exact = float(power_distribution(table, alpha) @ rare)
    config = dict(alpha=alpha, n_particles=n, max_new_tokens=model.max_len)
    look, plain = [], []
    for seed in range(runs):
        cfg = SMCConfig(seed=seed, **config)
        result = LookaheadSMC(model, cfg, LookaheadConfig(k=8, m=2, h=2), track_text=False).run([])
        look.append(float(result_distribution(table, result) @ rare))
        base = PowerSMC(model, cfg, track_text=False).run([])
        plain.append(float(result_distribution(table, base) @ rare))
    look_t, plain_t = torch.tensor(look), torch.tensor(plain)
    se_look = float(look_t.std()) / math.sqrt(runs)
    se_plain = float(plain_t.std()) / math.sqrt(runs)
    err_look, err_plain = abs(float(look_t.mean()) - exact), abs(float(plain_t.mean()) - exact)
    assert exact > 0.6
    assert err_look <= bound(1) * se_look + math.sqrt(exact * (1 - exact) / (n * runs))
    # Power-SMC's error is many of its own standard errors, and its interval lies above
    # look-ahead's.
    assert err_plain > bound(1) * se_plain
    assert err_plain - bound(1) * se_plain > err_look + bound(1) * se_look, (err_plain, err_look)
