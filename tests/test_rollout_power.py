"""Rollout power sampling (``samplers/rollout_power.py``), an APPROXIMATE method, against
enumeration.

- With the exact Z_alpha(s+v) as the estimator's input (a test-only oracle), the next-token
  law it samples from is pi_alpha's exact conditional (1e-9): the decomposition is right.
- With many rollouts of full depth the sampled law converges to pi_alpha (per-sequence
  bounds of 5 binomial standard errors).
- On a pivotal table the plain ratio of estimates is visibly biased at small M and the
  jackknife removes most of it (means over independent rows, SE-derived bounds).
- Token forwards follow the documented count; the rollouts are batched (the number of
  ``advance`` calls does not grow with N); parameters are validated with clear messages.
"""

from __future__ import annotations

import math

import pytest
import torch

from powersmc_core.engine.config import SMCConfig
from powersmc_core.models.toy import ToyLM, _n_prefixes
from powersmc_core.samplers.registry import (
    METHODS,
    make_sampler,
    token_forwards,
    unavailable,
)
from powersmc_core.samplers.rollout_power import (
    RolloutPowerSampler,
    mean_conditional,
    next_token_law,
)
from powersmc_core.theory.exact import (
    empirical_distribution,
    enumerate_sequences,
    exact_log_z,
    power_distribution,
    total_variation,
)

ALPHA = 4.0


def no_early_eos(vocab: int = 4, max_len: int = 5, seed: int = 0) -> ToyLM:
    """A random table whose EOS is impossible except where max_len forces it."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(_n_prefixes(vocab - 1, max_len), vocab, generator=generator)
    logits[:, -1] = -torch.inf
    return ToyLM(logits.to(torch.float64), max_len, [*"abc"[: vocab - 1], "<eos>"], "no-eos")


def exact_conditional(table, prefix: list[int], vocab: int) -> torch.Tensor:
    """pi_alpha(v | prefix) over every token v, from the enumerated table (prefix after the
    prompt; a completion extends it when its emitted tokens, EOS included, start with it)."""
    pi = power_distribution(table, ALPHA)
    mass = torch.zeros(vocab, dtype=torch.float64)
    k = len(prefix)
    for emitted, weight in zip(table.emitted, pi.tolist(), strict=True):
        if len(emitted) > k and list(emitted[:k]) == prefix:
            mass[emitted[k]] += weight
    return mass / mass.sum()


class OracleRollouts(RolloutPowerSampler):
    """The estimator's input made exact: every 'rollout' of a live candidate v returns
    Z_alpha(s + v), computed by enumeration (test-only)."""

    def rollout_log_weights(self, run, candidates, cand_state, cand_logp, live, depth):
        n, k = candidates.shape
        out = torch.zeros(n, k, self.rollouts, dtype=torch.float64)
        remaining = self.max_new_tokens - (run.step + 1)
        assert depth == remaining  # full depth: H covers the rest of the sequence
        for i, prefix in enumerate(run.prefixes):
            for j in range(k):
                if live[i, j]:
                    table = enumerate_sequences(
                        self.model, [*prefix, int(candidates[i, j])], remaining
                    )
                    out[i, j] = exact_log_z(table, self.alpha)
        return out


# ---- the decomposition: exact zeta gives pi_alpha's exact next-token conditional ---------------
@pytest.mark.parametrize(
    ("model", "prompt", "max_new"),
    [
        (ToyLM.random(vocab_size=4, max_len=4, seed=3), [], 3),
        (ToyLM.random(vocab_size=3, max_len=5, seed=7), [1], 2),  # prompt, length cut
        (ToyLM.pivotal(1), [], 3),
        (ToyLM.trap(), [], 4),
    ],
)
def test_exact_zeta_gives_the_exact_next_token_conditional(model, prompt, max_new):
    table = enumerate_sequences(model, prompt, max_new)
    sampler = OracleRollouts(
        model, alpha=ALPHA, n_samples=6, candidates=8, rollouts=3, depth=8, max_new_tokens=max_new
    )
    run = sampler.stream(prompt)
    checked = 0
    for _ in run:
        law = run.law
        for i in range(sampler.n_samples):
            prefix = run.tokens[i][:-1]  # the prefix the step's candidates extended
            if len(run.tokens[i]) < run.step:  # finished before this step
                continue
            exact = exact_conditional(table, prefix, model.vocab_size)
            got = torch.zeros(model.vocab_size, dtype=torch.float64)
            got[law.candidates[i]] = law.probs[i]
            assert torch.allclose(got, exact, atol=1e-9, rtol=0), (prefix, got, exact)
            assert torch.allclose(law.plain[i], law.probs[i], atol=1e-12)  # constant weights
            checked += 1
    assert checked >= 6


# ---- Monte Carlo: many full-depth rollouts converge to pi_alpha --------------------------------
@pytest.mark.parametrize(
    ("model", "max_new"),
    [(ToyLM.random(vocab_size=4, max_len=3, seed=11), 3), (ToyLM.pivotal(1), 3)],
)
def test_many_full_depth_rollouts_sample_pi_alpha(model, max_new):
    n = 3000
    table = enumerate_sequences(model, [], max_new)
    exact = power_distribution(table, ALPHA)
    sampler = RolloutPowerSampler(
        model, alpha=ALPHA, n_samples=n, rollouts=64, depth=max_new, max_new_tokens=max_new, seed=5
    )
    result = sampler.run([])
    assert math.isnan(result.log_z) and result.extras["approximate"] is True
    empirical = empirical_distribution(table, result.completions, result.finished)
    # Each cell: 5 binomial standard errors (plus 3/N for cells of tiny mass).
    bound = 5 * (exact * (1 - exact) / n).sqrt() + 3 / n
    assert ((empirical - exact).abs() <= bound).all(), (empirical, exact)
    assert total_variation(empirical, exact) <= 0.5 * float(bound.sum())


# ---- bias: the plain ratio vs the jackknife ------------------------------------------------------
def test_the_jackknife_removes_the_plain_ratios_bias():
    """Step 1 on ``toy-pivotal:2`` (V = 6, L = 5), M = 4 rollouts of full depth: each of R
    rows estimates pi_alpha(r) from its own rollouts, so the row mean estimates
    E[pi_hat(r)] with SE std/sqrt(R). Measured: plain bias ≈ +0.092 (23 SE), jackknife
    ≈ +0.026 (5 SE)."""
    model, rows = ToyLM.pivotal(2), 4000
    length = model.max_len
    table = enumerate_sequences(model, [], length)
    rare = model.pivot_token
    exact = float(exact_conditional(table, [], model.vocab_size)[rare])
    sampler = RolloutPowerSampler(
        model,
        alpha=ALPHA,
        n_samples=rows,
        rollouts=4,
        depth=length - 1,
        max_new_tokens=length,
        seed=2,
    )
    run = sampler.stream([])
    next(run)
    column = (run.law.candidates == rare).to(torch.long).argmax(1, keepdim=True)
    plain = run.law.plain.gather(1, column).squeeze(1)
    jack = run.law.probs.gather(1, column).squeeze(1)
    se_plain = float(plain.std()) / math.sqrt(rows)
    se_jack = float(jack.std()) / math.sqrt(rows)
    bias_plain = float(plain.mean()) - exact
    bias_jack = float(jack.mean()) - exact
    assert abs(bias_plain) > 6 * se_plain  # the plain ratio is visibly biased
    # the jackknife's bias is smaller: the two 4-SE intervals of |bias| do not overlap
    assert abs(bias_jack) + 4 * se_jack < abs(bias_plain) - 4 * se_plain


def test_next_token_law_jackknife_formula():
    """pi_JK = M·pi_hat − (M−1)·mean_j pi_hat^(−j) on a hand-sized case (no clipping)."""
    log_a = torch.tensor([[0.0, -0.5, -torch.inf]], dtype=torch.float64)
    w = torch.tensor([[[1.0, 2.0, 4.0], [3.0, 1.0, 1.0], [1.0, 1.0, 1.0]]], dtype=torch.float64)
    jack, plain = next_token_law(log_a, w.log(), jackknife=True)
    a = log_a.exp()[0]

    def law(weights):
        score = a * weights.mean(-1)
        return score / score.sum()

    expected_plain = law(w[0])
    loo = torch.stack([law(w[0][:, [m for m in range(3) if m != j]]) for j in range(3)])
    expected = 3 * expected_plain - 2 * loo.mean(0)
    assert torch.allclose(plain[0], expected_plain, atol=1e-12)
    assert (expected >= 0).all()
    assert torch.allclose(jack[0], expected / expected.sum(), atol=1e-12)
    assert float(jack[0, 2]) == 0.0  # an impossible candidate keeps no mass
    same, _ = next_token_law(log_a, w.log(), jackknife=False)
    assert torch.equal(same, plain)


# ---- compute accounting and batching -----------------------------------------------------------
class CountingModel:
    """A ToyLM wrapper that counts ``advance`` calls and the largest batch."""

    def __init__(self, model: ToyLM) -> None:
        self.inner = model
        self.advances = 0
        self.widest = 0
        for name in ("eos_token_id", "eos_token_ids", "vocab_size", "device", "name", "max_len"):
            setattr(self, name, getattr(model, name))

    def start(self, prompt, n):
        return self.inner.start(prompt, n)

    def advance(self, state, tokens, active):
        self.advances += 1
        self.widest = max(self.widest, tokens.shape[0])
        return self.inner.advance(state, tokens, active)

    def reorder(self, state, ancestors):
        return self.inner.reorder(state, ancestors)

    def decode_batch(self, sequences):
        return self.inner.decode_batch(sequences)

    def next_token_logprobs(self, prefix):
        return self.inner.next_token_logprobs(prefix)


@pytest.mark.parametrize("n", [1, 5])
def test_token_forwards_and_one_batched_advance_per_rollout_step(n):
    """No EOS before max_new_tokens = 3; K = 2, M = 3, H = 2. Per sample, step t < T:
    1 + K + K·M·H_t with H_t = min(H, T − t): 1 + 2 + 12 = 15, then 1 + 2 + 6 = 9, then 1
    at the last step: 25 per sample. The model is advanced 1 + (H_t − 1) + 1 times per step
    (candidates, rollout tokens, the samples' own token) before the last: 3 + 2 = 5 calls
    whatever N."""
    model = CountingModel(no_early_eos())
    sampler = RolloutPowerSampler(
        model, alpha=ALPHA, n_samples=n, candidates=2, rollouts=3, depth=2, max_new_tokens=3
    )
    run = sampler.stream([])
    records = list(run)
    result = run.result()
    assert [r.step for r in records] == [1, 2, 3] and records[-1].done
    assert token_forwards(result) == n * 25
    assert model.advances == 5
    assert model.widest == n * 2 * 3  # the N·K·M rollout rows, one batch
    assert all(len(c) == 3 for c in result.completions) and not any(result.finished)
    record = records[0]
    assert math.isnan(record.log_z) and record.ess == n and not record.resampled
    assert record.log_weights == (-math.log(n),) * n


def test_depth_zero_is_token_level_power_over_the_top_k_and_costs_one_forward_per_token():
    model = no_early_eos()
    sampler = RolloutPowerSampler(
        model, alpha=ALPHA, n_samples=4, candidates=8, rollouts=3, depth=0, max_new_tokens=3
    )
    run = sampler.stream([])
    next(run)
    expected = torch.softmax(ALPHA * model.next_token_logprobs([]), -1)
    got = torch.zeros(model.vocab_size, dtype=torch.float64)
    got[run.law.candidates[0]] = run.law.probs[0]
    assert torch.allclose(got, expected, atol=1e-12)
    for _ in run:
        pass
    assert token_forwards(run.result()) == 4 * 3


def test_one_candidate_is_greedy_decoding():
    """K = 1 drops every token but the most likely one: the samples are the greedy path."""
    model = ToyLM.random(vocab_size=5, max_len=5, seed=2)
    greedy = make_sampler("greedy", model, SMCConfig(max_new_tokens=4)).run([])
    result = RolloutPowerSampler(
        model, n_samples=3, candidates=1, rollouts=2, depth=2, max_new_tokens=4
    ).run([])
    assert result.completions == [greedy.completions[0]] * 3


def test_the_registry_builds_it_and_a_seed_repeats_it():
    model = ToyLM.pivotal(1)
    config = SMCConfig(alpha=ALPHA, n_particles=6, max_new_tokens=3, seed=4)
    assert "rollout" in METHODS and not METHODS["rollout"].batches
    first = make_sampler("rollout", model, config).run([])
    again = make_sampler("rollout", model, config).run([])
    assert first.completions == again.completions and first.method == "rollout"
    assert len(first.completions) == 6 and first.weights == pytest.approx([1 / 6] * 6, abs=1e-15)
    assert math.isnan(first.log_z)
    with pytest.raises(ValueError, match="ROLLOUT streams one record per ROLLOUT step"):
        make_sampler("rollout", model, config, stream_every=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidates": 0}, r"candidates \(K\) must be an integer >= 1, got 0"),
        ({"rollouts": 0}, r"rollouts \(M\) must be an integer >= 1, got 0"),
        ({"depth": -1}, r"depth \(H\) must be an integer >= 0, got -1"),
        ({"depth": 2.5}, r"depth \(H\) must be an integer >= 0, got 2.5"),
        ({"n_samples": 0}, "n_samples must be an integer >= 1"),
        ({"max_new_tokens": True}, "max_new_tokens must be an integer >= 1"),
        ({"alpha": 0.0}, "alpha must be a finite number > 0"),
        ({"alpha": math.inf}, "alpha must be a finite number > 0"),
        ({"rollout_temperature": 0}, "rollout_temperature must be a finite number > 0"),
        ({"rollouts": 1}, r"jackknife .* needs rollouts \(M\) >= 2, got 1"),
    ],
)
def test_parameters_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RolloutPowerSampler(ToyLM.trap(), **kwargs)
    RolloutPowerSampler(ToyLM.trap(), rollouts=1, jackknife=False)  # the plain ratio


# ---- a real backend: the samples' cache survives the rollouts' fan-out -------------------------
@pytest.mark.parametrize("mode", [{}, {"copy_on_write": True}])
def test_on_an_hf_model_every_sample_keeps_its_own_cache(mode):
    """The HF backend reorders and advances its cache in place; after every step each
    sample's next-token log-probs must still be those of a full forward of its prefix
    (a sample advanced from a cache the rollouts consumed would fail this)."""
    pytest.importorskip("transformers")
    from test_hf_backend import PROMPT, make_model, make_tokenizer

    from powersmc_core.models.hf.model import HFModel

    model = HFModel(make_model("llama", eos_boost=3.0), make_tokenizer(), "tiny", **mode)
    sampler = RolloutPowerSampler(
        model, alpha=ALPHA, n_samples=3, candidates=3, rollouts=2, depth=2, max_new_tokens=4
    )
    run = sampler.stream(PROMPT)
    checked = 0
    for record in run:
        if record.done:
            break
        for i, prefix in enumerate(run.prefixes):
            if not run.finished[i]:
                full = model.next_token_logprobs(prefix).float()
                assert torch.allclose(run.logp[i].float(), full, atol=1e-4), (i, prefix)
                checked += 1
    assert checked > 0
    result = run.result()
    assert token_forwards(result) > 0 and math.isnan(result.log_z)


def test_llamacpp_is_refused_above_256_rows_with_a_reason():
    class Fixed:  # stands for llama.cpp: at most 256 sequences per context
        name, backend, vocab_size = "fixed", "llamacpp", 1000

    with pytest.raises(ValueError, match=r"N·K·M = 512 rollout rows; llama\.cpp holds at most 256"):
        RolloutPowerSampler(Fixed(), n_samples=8, candidates=8, rollouts=8)
    assert RolloutPowerSampler(Fixed(), n_samples=4, candidates=8, rollouts=8).rollouts == 8

    class Static:  # the transformer backend with a static KV cache (exactly N rows)
        name = "static"
        static_cache = True

    assert "static KV cache" in (unavailable("rollout", Static()) or "")
    assert unavailable("rollout", ToyLM.trap()) is None and unavailable("smc", Fixed()) is None


def test_a_stop_rule_ends_the_samples():
    """A stop string ends a sample on the token that completes it (rollouts ignore it)."""
    from powersmc_core.engine.stopping import StopStrings

    model = no_early_eos()  # tokens a, b, c; EOS only where max_len forces it
    stop = StopStrings(["b"])
    result = RolloutPowerSampler(
        model, alpha=1.0, n_samples=40, rollouts=2, depth=2, max_new_tokens=4, stop=stop, seed=3
    ).run([])
    stopped = [c for c, f in zip(result.completions, result.finished, strict=True) if f and c]
    assert any(c[-1] == 1 for c in stopped)  # some sample stopped on "b"
    for completion in result.completions:
        assert 1 not in completion[:-1]  # nothing continues past a "b"


def test_mean_conditional_averages_independent_estimates():
    """Depth 0: every estimate is softmax(alpha·log p), so the mean is it and the SE is 0;
    full depth on the pivotal table: within 5 SE of pi_alpha's conditional at M = 16."""
    model = ToyLM.pivotal(1)
    mean, se = mean_conditional(model, [], 3, 50, alpha=ALPHA, depth=0)
    assert torch.allclose(mean, torch.softmax(ALPHA * model.next_token_logprobs([]), -1))
    assert float(se.max()) < 1e-12
    mean, se = mean_conditional(model, [], 3, 2000, alpha=ALPHA, rollouts=16, depth=3)
    exact = exact_conditional(enumerate_sequences(model, [], 3), [], model.vocab_size)
    assert ((mean - exact).abs() <= 5 * se + 1e-12).all(), (mean, exact, se)
