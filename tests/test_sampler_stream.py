"""Behaviour of the streamed step records (not distributions: see test_sampler_exactness)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from powersmc_core import BestOfN, PowerSMC, SMCConfig, TemperatureSampling, ToyLM
from powersmc_core.engine.genealogy import sequences_at, surviving
from powersmc_core.models.toy import ToyState


def records_of(model, **kwargs):
    run = PowerSMC(model, SMCConfig(**kwargs)).stream([])
    return list(run), run.result()


@pytest.fixture
def model():
    return ToyLM.random(5, 7, seed=3, sharpness=0.7)


def test_issue_api_example():
    model = ToyLM.random(vocab_size=4, max_len=4, seed=0)
    sampler = PowerSMC(model, SMCConfig(alpha=4.0, n_particles=64, seed=0))
    steps = list(sampler.stream(prompt=[]))
    assert steps and steps[-1].done
    result = sampler.run(prompt=[])
    assert len(result.completions) == 64
    assert all(model.eos_token_id not in c for c in result.completions)
    assert sum(result.weights) == pytest.approx(1.0)
    assert 0 <= result.chosen < 64


def test_same_seed_identical_records_and_other_seed_differs(model, single_thread):
    a, _ = records_of(model, alpha=3.0, n_particles=16, seed=11, ess_threshold=0.9)
    b, _ = records_of(model, alpha=3.0, n_particles=16, seed=11, ess_threshold=0.9)
    c, _ = records_of(model, alpha=3.0, n_particles=16, seed=12, ess_threshold=0.9)
    strip = [dataclasses.replace(r, elapsed=0.0, renyi=()) for r in a]
    assert strip == [dataclasses.replace(r, elapsed=0.0, renyi=()) for r in b]
    assert [r.tokens for r in a] != [r.tokens for r in c]


def test_records_are_immutable(model):
    record = next(iter(PowerSMC(model, SMCConfig(n_particles=4)).stream([])))
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.ess = 0.0
    assert isinstance(record.tokens, tuple)


def test_record_fields_are_consistent(model, single_thread):
    n, kappa = 16, 0.7
    records, result = records_of(
        model, alpha=4.0, n_particles=n, seed=1, ess_threshold=kappa, block_size=2
    )
    assert [r.step for r in records] == list(range(1, len(records) + 1))
    assert any(r.resampled for r in records), "this configuration is chosen to resample"
    for r in records:
        assert len(r.tokens) == len(r.log_weights) == len(r.ancestors) == len(r.roots) == n
        assert sum(math.exp(w) for w in r.log_weights) == pytest.approx(1.0)
        w = torch.tensor(r.log_weights, dtype=torch.float64).exp()
        assert r.ess == pytest.approx(1 / float((w**2).sum()))
        assert 1 - 1e-9 <= r.ess <= n + 1e-9
        # resampling only at block boundaries, only below kappa·N, never on the last step
        assert r.resampled == (r.step % 2 == 0 and r.ess < kappa * n and not r.done)
        if not r.resampled:
            assert r.ancestors == tuple(range(n))
        assert r.n_unique_ancestors == len(set(r.ancestors))
        assert 1 <= r.n_lineages <= n
        assert r.tau == pytest.approx(1 / r.alpha)
    assert result.n_resamples == sum(r.resampled for r in records)
    assert result.ess_trace == [r.ess for r in records]
    assert records[-1].done and not any(r.done for r in records[:-1])


def test_lineage_bookkeeping_matches_genealogy(model, single_thread):
    records, result = records_of(model, alpha=4.0, n_particles=12, seed=4, ess_threshold=0.95)
    # roots of the next step are the current roots pulled through the ancestors
    for prev, nxt in itertools.pairwise(records):
        assert nxt.roots == tuple(prev.roots[a] for a in prev.ancestors)
        assert prev.n_lineages == len(set(nxt.roots))
    eos = model.eos_token_id
    rebuilt = [[t for t in seq if t != eos] for seq in sequences_at(records, len(records))]
    assert rebuilt == result.completions
    alive = surviving(records)
    assert alive[-1].all() and alive.shape == (len(records), 12)


def test_log_increment_is_the_renyi_term_of_the_tables_own_rows(model, single_thread):
    """With tau = 1/alpha, log G_i = log sum_v p(v|prefix_i)^alpha = (1 - alpha)·H_alpha: checked
    against the toy model's table at each particle's prefix (rebuilt from the genealogy), not
    against the sampler's own log-sum-exp, so wrong log-probabilities fed in would fail."""
    alpha = 3.0
    records, _ = records_of(model, alpha=alpha, n_particles=8, seed=2)
    checked = 0
    for step, r in enumerate(records[:-1], start=1):  # the last step may add a catch-up term
        for i, seq in enumerate(sequences_at(records, step)):
            if r.tokens[i] < 0:  # finished before this step: no token, no Rényi term
                assert math.isnan(r.renyi[i])
                continue
            row = model.next_token_logprobs(seq[:-1]).numpy()
            log_mass = float(np.log(np.exp(alpha * row).sum()))  # log sum_v p(v|prefix)^alpha
            assert r.log_increment[i] == pytest.approx(log_mass, abs=1e-9)
            assert r.renyi[i] == pytest.approx(log_mass / (1 - alpha), abs=1e-9)
            checked += 1
    assert checked > 8


def test_linear_bridging_catch_up_reaches_alpha_and_finished_particles_get_bridged(single_thread):
    model = ToyLM.random(4, 6, seed=2, sharpness=0.7)
    records, _ = records_of(
        model,
        alpha=4.0,
        n_particles=16,
        seed=0,
        schedule="linear",
        ramp_tokens=50,
        ess_threshold=0.0,
    )
    last = records[-1]
    assert last.alpha < 4.0 and last.alpha + last.catch_up == pytest.approx(4.0)
    assert all(r.catch_up == 0.0 for r in records[:-1])
    alphas = [1.0] + [r.alpha for r in records]
    for prev, r, a_prev in zip(records, records[1:], alphas[1:], strict=False):
        for i in range(16):
            if prev.finished[i]:  # already finished before this step: only the bridging factor
                delta = r.alpha - a_prev + (r.catch_up if r.done else 0.0)
                assert r.tokens[i] == -1
                assert r.log_increment[i] == pytest.approx(delta * prev.log_p[i], abs=1e-9)


def test_adaptive_schedule_is_monotone_bounded_and_respects_target(single_thread):
    model = ToyLM.random(6, 8, seed=1, sharpness=1.2)
    records, _ = records_of(
        model,
        alpha=8.0,
        n_particles=32,
        seed=0,
        schedule="adaptive",
        ramp_tokens=4,
        target_ess=0.99,
    )
    alphas = [r.alpha for r in records]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(alphas))
    assert all(1.0 <= a <= 8.0 for a in alphas)
    linear = [min(8.0, 1.0 + 7.0 * t / 4) for t in range(1, len(records) + 1)]
    assert all(a <= lin + 1e-9 for a, lin in zip(alphas, linear, strict=True))
    assert any(a < lin - 1e-3 for a, lin in zip(alphas, linear, strict=True)), "CESS never braked"


def test_fixed_proposal_temperature_is_used(model):
    records, _ = records_of(model, alpha=4.0, n_particles=4, proposal_temperature=0.5)
    assert all(r.tau == 0.5 for r in records)


def test_log_z_running_value_matches_result(model):
    records, result = records_of(model, alpha=2.0, n_particles=8, seed=5)
    assert records[-1].log_z == result.log_z
    assert math.isfinite(result.log_z) and result.log_z <= 0.0 + 1e-12


def test_result_midway_keeps_what_was_decoded(model):
    run = PowerSMC(model, SMCConfig(n_particles=6, seed=0, max_new_tokens=20)).stream([])
    first = next(run)
    partial = run.result()
    assert partial.n_steps == 1
    assert all(len(c) <= 1 for c in partial.completions)
    assert sum(partial.weights) == pytest.approx(1.0)
    assert first.texts is not None and len(first.texts) == 6


def test_texts_follow_the_particles(model):
    _records, result = records_of(model, alpha=2.0, n_particles=6, seed=1, ess_threshold=0.9)
    assert result.texts == model.decode_batch(result.completions)


def test_max_new_tokens_truncates(model):
    records, result = records_of(model, n_particles=8, max_new_tokens=2, seed=0)
    assert len(records) <= 2
    assert all(len(c) <= 2 for c in result.completions)


class NaNModel(ToyLM):
    def advance(self, state: ToyState, tokens, active):
        state, logp = super().advance(state, tokens, active)
        return state, torch.full_like(logp, math.nan)


def test_nan_logits_give_a_clear_error():
    base = ToyLM.random(4, 5, seed=1, sharpness=0.1)
    model = NaNModel(base._table, base.max_len, base.token_names, "nan-model")
    run = PowerSMC(model, SMCConfig(n_particles=4, seed=0)).stream([])
    with pytest.raises(FloatingPointError, match="NaN log-probabilities"):
        for _ in range(5):
            next(run)


def test_temperature_baseline_has_uniform_weights_and_no_resampling(model):
    result = TemperatureSampling(
        model, temperature=0.25, n_particles=8, max_new_tokens=6, seed=0
    ).run([])
    assert result.weights == pytest.approx([1 / 8] * 8)
    assert result.n_resamples == 0
    assert result.method == "lowtemp"


def test_best_of_n_returns_the_most_likely_sample(model):
    result = BestOfN(model, n_particles=12, max_new_tokens=6, seed=3).run([])
    assert result.log_p[result.chosen] == max(result.log_p)
    assert result.method == "bon"


# -- every sampler has its own run object ------------------------------------------------------
def test_mh_streams_records_and_its_run_returns_the_same_result(model, single_thread):
    from powersmc_core import MHPowerSampler, MHRecord
    from powersmc_core.samplers.mh import MHRun

    sampler = MHPowerSampler(model, alpha=3.0, max_new_tokens=5, block_size=2, mh_steps=3, seed=4)
    run = sampler.stream([1])
    assert isinstance(run, MHRun)
    records = list(run)
    assert all(isinstance(r, MHRecord) for r in records) and records[-1].done
    with pytest.raises(dataclasses.FrozenInstanceError):
        records[0].log_p = 0.0
    streamed, direct = run.result(), sampler.run([1])
    strip = {"elapsed": 0.0}
    assert dataclasses.replace(streamed, **strip) == dataclasses.replace(direct, **strip)
    assert streamed.completions[0] == [t for t in records[-1].tokens if t != model.eos_token_id]
    assert streamed.finished == [records[-1].finished]


def test_one_mh_sampler_serves_interleaved_runs(model, single_thread):
    """Chain state lives on the run, not the sampler: two runs interleaved step by step give
    what each gives alone."""
    from powersmc_core import MHPowerSampler

    sampler = MHPowerSampler(model, alpha=3.0, max_new_tokens=4, block_size=1, mh_steps=2, seed=1)
    alone = [r.tokens for r in sampler.stream([])]
    a, b = sampler.stream([]), sampler.stream([])
    interleaved = [(ra.tokens, rb.tokens) for ra, rb in zip(a, b, strict=True)]
    assert [x for x, _ in interleaved] == alone == [y for _, y in interleaved]


def test_best_of_n_run_object_makes_the_choice(model, single_thread):
    from powersmc_core.samplers.baselines import BestOfNRun

    sampler = BestOfN(model, n_particles=8, max_new_tokens=6, seed=3)
    run = sampler.stream([])
    assert isinstance(run, BestOfNRun)
    for _ in run:
        pass
    result = run.result()
    assert result.chosen == max(range(8), key=result.log_p.__getitem__)
    assert dataclasses.replace(result, elapsed=0.0) == dataclasses.replace(
        sampler.run([]), elapsed=0.0
    )
