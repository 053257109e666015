"""The exact tools know what "complete" means, and the theory helpers use them correctly.

A completion is (tokens, ending): EOS, a stop rule, or the ``max_new_tokens`` limit. These
tests pin the enumeration against hand-computed laws, the matching of sampled completions
by ending, the stopped-law target, and the regressions measured in issue 14 (helpers that
ignored ``max_new_tokens``; a bias check blind to sequences no run visited).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from powersmc_core import MHPowerSampler, PowerSMC, SMCConfig, StopStrings, ToyLM
from powersmc_core.samplers.mh import accepts
from powersmc_core.theory import (
    SMCEstimate,
    smc_estimate,
    stopped_law_targets,
    zhat_unbiasedness,
)
from powersmc_core.theory.exact import (
    cut_distribution,
    enumerate_sequences,
    power_distribution,
    result_distribution,
    stop_position,
    weighted_distribution,
)

FAMILY_LEVEL = 1e-4


def bound(k: int) -> float:
    return float(norm.isf(FAMILY_LEVEL / (2 * k)))


# -- completions and their endings ------------------------------------------------------------
def test_truncation_keeps_cut_and_ended_sequences_apart():
    model = ToyLM.random(4, 6, seed=7, sharpness=1.0)
    table = enumerate_sequences(model, max_new_tokens=2)
    assert float(table.log_p.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    ended = {s for s, e in table.completions if e == "eos"}
    cut = {s for s, e in table.completions if e == "length"}
    assert all(len(s) == 2 for s in cut) and len(cut) == 9
    both = ended & cut
    assert both == set(), "two tokens ended by EOS would be 3 emitted tokens: not possible"
    # "a b" cut at the limit has the mass of every continuation of a b: p(a) p(b|a).
    row = table.index()[((0, 1), False)]
    p_ab = model.next_token_logprobs([])[0] + model.next_token_logprobs([0])[1]
    assert float(table.log_p[row]) == pytest.approx(float(p_ab), abs=1e-12)


def test_matching_uses_the_ending():
    """A truncated "a b" is not "a b <eos>": a run cut at 2 tokens cannot be scored on a table
    of complete sequences (the old silent mismatch); it raises, naming the ending."""
    model = ToyLM.random(3, 4, seed=1, sharpness=1.0)
    table = enumerate_sequences(model)  # the model's own length: every row ended by EOS
    assert ((0, 1), True) in table.index()
    with pytest.raises(KeyError, match="cut by length"):
        weighted_distribution(table, [[0, 1]], [1.0], finished=[False])
    result = PowerSMC(model, SMCConfig(alpha=2.0, n_particles=16, max_new_tokens=2)).run([])
    assert not all(result.finished), "this run is chosen to truncate some particles"
    with pytest.raises(KeyError, match="cut by length"):
        result_distribution(table, result)
    truncated = enumerate_sequences(model, max_new_tokens=2)
    assert float(result_distribution(truncated, result).sum()) == pytest.approx(1.0)
    est = weighted_distribution(table, [[0, 1]], [1.0], finished=[True])
    assert float(est[table.index()[((0, 1), True)]]) == 1.0


def test_sampled_completions_match_by_ending():
    """A run truncated below the model's length: every particle lands on its own row, and the
    cut rows get the weight of the particles that hit max_new_tokens."""
    model = ToyLM.random(4, 6, seed=7, sharpness=1.0)
    table = enumerate_sequences(model, max_new_tokens=3)
    result = PowerSMC(model, SMCConfig(alpha=3.0, n_particles=64, max_new_tokens=3)).run([])
    est = result_distribution(table, result)
    cut_rows = [i for i, e in enumerate(table.endings) if e == "length"]
    cut_weight = sum(w for w, f in zip(result.weights, result.finished, strict=True) if not f)
    assert float(est[cut_rows].sum()) == pytest.approx(cut_weight)
    assert float(est.sum()) == pytest.approx(1.0)


def test_enumeration_with_a_stop_string_on_the_trap():
    model, stop = ToyLM.trap(), StopStrings(["A"])
    table = enumerate_sequences(model, stop=stop)
    names = {(model.decode_batch([list(s)])[0], e): float(p) for s, e, p in
             zip(table.sequences, table.endings, table.log_p.exp(), strict=True)}  # fmt: skip
    assert names == pytest.approx({("A", "stop"): 0.6, ("B x", "eos"): 0.36,
                                   ("B y", "eos"): 0.02, ("B z", "eos"): 0.02})  # fmt: skip
    assert stop_position(model, [0, 2], stop) == 1 and stop_position(model, [1, 2], stop) is None


def test_stopped_law_target_on_the_trap_against_hand_computation():
    """Sampler's target: P_stop^4 with P_stop(A) = 0.6; the cut law: pi_4 of the full model
    (A x, A y, A z at 0.2 each) summed onto "A"."""
    targets = stopped_law_targets(ToyLM.trap(), 4.0, StopStrings(["A"]))
    z_stop = 0.6**4 + 0.36**4 + 2 * 0.02**4
    z_full = 3 * 0.2**4 + 0.36**4 + 2 * 0.02**4
    frame = targets.frame().set_index("sequence")
    assert frame.loc["A", "sampler_target"] == pytest.approx(0.6**4 / z_stop)
    assert frame.loc["A", "cut_target"] == pytest.approx(3 * 0.2**4 / z_full)
    a_diff = 0.6**4 / z_stop - 3 * 0.2**4 / z_full
    assert targets.tv == pytest.approx(a_diff)  # "A" carries the whole difference
    assert targets.tv == pytest.approx(0.663, abs=5e-4)
    assert targets.sampler_target.sum() == pytest.approx(1.0)
    assert targets.cut_target.sum() == pytest.approx(1.0)


def test_cut_distribution_without_stops_is_the_identity():
    model = ToyLM.random(4, 4, seed=2)
    full = enumerate_sequences(model)
    stop = StopStrings(["zzz"])  # never fires
    stopped = enumerate_sequences(model, stop=stop)
    pi = power_distribution(full, 3.0)
    assert torch.allclose(cut_distribution(model, full, pi, stopped, stop), pi)


# -- theory helpers follow the run's length limit -------------------------------------------
def test_smc_estimate_and_zhat_respect_max_new_tokens(single_thread):
    """Issue 14's measurement: with max_new_tokens = 3 the old helpers scored truncated
    completions against the untruncated table (bias z 14.4, Ẑ/Z 1.16)."""
    model = ToyLM.random(4, 6, seed=7, sharpness=1.0)
    cfg = SMCConfig(alpha=3.0, n_particles=32, max_new_tokens=3, seed=0, ess_threshold=1.0)
    est = smc_estimate(model, cfg, runs=40)
    assert np.abs(est.bias_z()).max() < bound(len(est.exact))
    check = zhat_unbiasedness(model, cfg, runs=80)
    assert abs(check.z_score) < bound(1)


def test_smc_estimate_with_a_stop_rule_targets_the_stopped_law(single_thread):
    model, stop = ToyLM.trap(), StopStrings(["A"])
    cfg = SMCConfig(alpha=4.0, n_particles=32, max_new_tokens=3, seed=0, ess_threshold=1.0)
    est = smc_estimate(model, cfg, runs=30, stop=stop)
    targets = stopped_law_targets(model, 4.0, stop)
    np.testing.assert_allclose(est.exact, targets.sampler_target)
    assert np.abs(est.bias_z()).max() < bound(len(est.exact))


def test_bias_z_counts_sequences_no_run_visited():
    """A sampler that never produces a sequence of positive pi must fail the check."""
    never = SMCEstimate(
        exact=np.array([0.5, 0.5]),
        estimate=np.array([1.0, 0.0]),
        estimate_stderr=np.array([0.0, 0.0]),  # every run identical: the old check saw nothing
        run_tv=np.full(10, 0.5),
        log_z=np.zeros(10),
        exact_log_z=0.0,
        n_resamples=np.zeros(10),
        token_forwards=np.zeros(10),
        n_particles=16,
    )
    z = never.bias_z()
    assert len(z) == 2 and np.abs(z).min() > bound(2)
    assert np.abs(z).min() == pytest.approx(0.5 / math.sqrt(0.25 / 160))


# -- the Metropolis test at u = 0 -------------------------------------------------------------
def test_metropolis_test_accepts_at_u_zero():
    assert accepts(0.0, -50.0)
    assert accepts(0.3, math.log(0.5)) and not accepts(0.7, math.log(0.5))
    assert accepts(0.999, 0.0)


def test_mh_survives_a_zero_uniform_draw(monkeypatch):
    """torch.rand can return exactly 0.0; math.log(0.0) used to raise inside the chain."""
    real = torch.rand

    def zero(*args, **kwargs):
        return torch.zeros_like(real(*args, **kwargs))

    monkeypatch.setattr(torch, "rand", zero)
    model = ToyLM.random(3, 4, seed=0)
    result = MHPowerSampler(model, alpha=3.0, max_new_tokens=3, block_size=1, mh_steps=3).run([])
    assert result.extras["acceptance_rate"] == 1.0  # u = 0 accepts every proposal
