"""Weighted answer posterior: hand-made particle sets, decision rules, and exactness of
the SMC answer posterior against the enumerated push-forward of pi_alpha."""

from __future__ import annotations

import functools
import math
import statistics

import pytest
import torch

from powersmc_core import PowerSMC, SMCConfig, ToyLM
from powersmc_core.answers.extract import (
    NO_ANSWER,
    RULES,
    answer_posterior,
    decide,
    result_posterior,
)
from powersmc_core.answers.grading import is_equivalent
from powersmc_core.theory.exact import enumerate_sequences, exact_log_z, power_distribution


def test_posterior_sums_weights_of_equivalent_answers_and_keeps_no_answer_bucket():
    texts = [r"so \boxed{1/2}", "it is 0.5", "no idea", r"\boxed{3}", r"\boxed{\frac12}"]
    weights = [0.1, 0.2, 0.3, 0.15, 0.25]
    post = answer_posterior(texts, [math.log(w) for w in weights], "auto", chosen=3)
    assert post.keys == ("1/2", "3", None)  # by mass, the bucket last
    assert post.labels == ("1/2", "3", NO_ANSWER)  # first spelling of each group
    assert post.probabilities == pytest.approx((0.55, 0.15, 0.3))
    assert post.counts == (3, 1, 1)
    assert post.no_answer == pytest.approx(0.3)
    assert post.probability("0.50") == pytest.approx(0.55)
    assert post.probability(None) == pytest.approx(0.3)
    assert post.probability("7") == 0.0
    assert sum(post.probabilities) == pytest.approx(1.0)
    assert post.rows()[0] == {
        "answer": "1/2",
        "probability": post.probabilities[0],
        "share": 0.6,  # 3 of 5 particles: the vote share, weights ignored
        "count": 3,
        "kind": "answer",
    }


def test_log_weights_need_not_be_normalised_and_may_be_huge():
    texts = ["5", "6", "6"]
    post = answer_posterior(texts, [1000.0, 999.0, 999.0], "last_number")
    w5 = 1 / (1 + 2 * math.exp(-1))
    assert post.probability("5") == pytest.approx(w5)
    assert post.probability("6") == pytest.approx(1 - w5)


def test_decision_rules_differ_where_they_should():
    # "7" carries most weight on one particle; "8" has the most particles.
    texts = ["7", "8", "8", "8", "none"]
    log_w = [math.log(w) for w in (0.6, 0.1, 0.1, 0.1, 0.1)]
    post = answer_posterior(texts, log_w, "last_number", chosen=1)
    assert decide(post, "weighted-vote") == "7"
    assert decide(post, "majority-vote") == "8"
    assert decide(post, "chosen") == "8"
    assert set(RULES) == {"chosen", "weighted-vote", "majority-vote"}


def test_votes_ignore_the_no_answer_bucket_unless_nobody_answered():
    post = answer_posterior(["x", "y", "4"], [0.0, 0.0, -3.0], "last_number", chosen=0)
    assert post.no_answer > 0.9
    assert decide(post, "weighted-vote") == "4"
    assert decide(post, "majority-vote") == "4"
    assert decide(post, "chosen") is None
    nobody = answer_posterior(["x", "y"], [0.0, 0.0], "last_number")
    assert decide(nobody, "weighted-vote") is None
    assert nobody.rows() == [
        {"answer": NO_ANSWER, "probability": 1.0, "share": 1.0, "count": 2, "kind": "none"}
    ]


def test_ties_break_on_the_other_statistic_then_first_seen():
    # weighted tie between "1" (one particle) and "2" (two): the count decides.
    post = answer_posterior(["1", "2", "2"], [math.log(0.5), math.log(0.25), math.log(0.25)])
    assert decide(post, "weighted-vote") == "2"
    # majority tie (one each): the mass decides; full tie: the first seen.
    post = answer_posterior(["1", "2"], [math.log(0.3), math.log(0.7)])
    assert decide(post, "majority-vote") == "2"
    post = answer_posterior(["9", "3"], [0.0, 0.0])
    assert decide(post, "weighted-vote") == "9"
    assert decide(post, "majority-vote") == "9"


def test_bad_inputs_say_what_to_do():
    with pytest.raises(ValueError, match="one log-weight per particle"):
        answer_posterior(["1", "2"], [0.0])
    with pytest.raises(ValueError, match="at least one particle"):
        answer_posterior([], [])
    with pytest.raises(ValueError, match="choose one of"):
        answer_posterior(["1"], [0.0], "nonsense")
    with pytest.raises(ValueError, match="chosen must index"):
        answer_posterior(["1"], [0.0], chosen=1)
    post = answer_posterior(["1"], [0.0])
    with pytest.raises(ValueError, match="unknown answer rule"):
        decide(post, "vote")
    with pytest.raises(ValueError, match=r"chosen=result\.chosen"):
        decide(post, "chosen")


def test_a_5000_digit_boxed_answer_is_graded_without_parsing_it():
    digits = "7" * 5000
    texts = [rf"\boxed{{{digits}}}", rf"\boxed{{{digits}}}", r"\boxed{7}"]
    post = answer_posterior(texts, [0.0, 0.0, 0.0], "boxed", chosen=0)
    assert decide(post, "weighted-vote") == digits
    assert post.probability(digits) == pytest.approx(2 / 3)
    assert is_equivalent(digits, digits)
    assert not is_equivalent(digits, "7" * 4999)


def test_result_posterior_reads_a_sampler_result():
    model = ToyLM.trap()
    result = PowerSMC(model, SMCConfig(alpha=4.0, n_particles=8, max_new_tokens=4, seed=1)).run([])
    post = result_posterior(result, model.decode_batch, "exact")
    texts = model.decode_batch(result.completions)
    for answer in set(texts):
        mass = sum(w for t, w in zip(texts, result.weights, strict=True) if t == answer)
        assert post.probability(answer) == pytest.approx(mass)
    assert decide(post, "chosen") == texts[result.chosen]


# ---- exactness against enumeration ------------------------------------------------------
# The answer is the last token's name; the empty sequence has no answer (its own bucket).
MODEL_SEED, ALPHA, N, RUNS = 1, 2.0, 8, 200


def _last_token(text: str) -> str | None:
    return text.split()[-1] if text.strip() else None


def _pushforward(model: ToyLM, alpha: float) -> tuple[dict[str | None, float], float]:
    """pi_alpha(a(Y) = a) for every answer a, and log Z_alpha, by enumeration."""
    table = enumerate_sequences(model)  # every sequence ends in EOS within max_len
    law: dict[str | None, float] = {}
    for text, p in zip(
        model.decode_batch(table.sequences), power_distribution(table, alpha).tolist(), strict=True
    ):
        law[_last_token(text)] = law.get(_last_token(text), 0.0) + p
    return law, exact_log_z(table, alpha)


@functools.cache
def _z_scores(ess_threshold: float) -> dict[str, dict[str | None, float]]:
    """z of mean_r Ẑ_r·P̂_r(a) against Z·pi_alpha(a), per answer a, over RUNS seeded runs,
    for the weighted posterior and for the same particles with their weights dropped.

    Ẑ·P̂(a) is an unbiased estimate of Z·pi_alpha(a) at any N (SMC's unnormalised
    measure is unbiased), so the only tolerance needed is its Monte-Carlo standard error
    sd/sqrt(RUNS), whose size the number of particles N sets.
    """
    model = ToyLM.random(4, 4, seed=MODEL_SEED, sharpness=1.0)
    law, log_z = _pushforward(model, ALPHA)
    samples = {how: {a: [] for a in law} for how in ("weighted", "ignored")}
    for seed in range(RUNS):
        config = SMCConfig(
            alpha=ALPHA, n_particles=N, max_new_tokens=4, seed=seed, ess_threshold=ess_threshold
        )
        result = PowerSMC(model, config).run([])
        texts = model.decode_batch(result.completions)
        z_hat = math.exp(result.log_z - log_z)  # Ẑ / Z
        for how, log_w in (
            ("weighted", [math.log(w) for w in result.weights]),
            ("ignored", [0.0] * N),  # the mutation: a majority vote over the particles
        ):
            post = answer_posterior(texts, log_w, _last_token)
            for answer in law:
                samples[how][answer].append(z_hat * post.probability(answer) / law[answer])
    # Each sample estimates 1 (ratio to the exact value); z = (mean - 1) / standard error.
    return {
        how: {
            a: (statistics.fmean(x) - 1) / (statistics.stdev(x) / math.sqrt(RUNS))
            for a, x in by_answer.items()
        }
        for how, by_answer in samples.items()
    }


# Two-sided, family-wise 1e-3 over the answers of the two configurations (Bonferroni).
Z_CRIT = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - 1e-3 / (2 * 2 * 4))))


@pytest.mark.parametrize("ess_threshold", [0.0, 0.5], ids=["no-resampling", "resampling"])
def test_weighted_answer_posterior_matches_enumerated_pushforward(ess_threshold):
    z = _z_scores(ess_threshold)["weighted"]
    assert set(z) == {None, "a", "b", "c"}  # the no-answer bucket is checked too
    assert max(abs(v) for v in z.values()) < Z_CRIT, z


@pytest.mark.parametrize("ess_threshold", [0.0, 0.5], ids=["no-resampling", "resampling"])
def test_the_check_fails_when_weights_are_ignored(ess_threshold):
    # Majority vote over the particles (weights dropped) estimates another law: caught.
    z = _z_scores(ess_threshold)["ignored"]
    assert max(abs(v) for v in z.values()) > Z_CRIT, z
