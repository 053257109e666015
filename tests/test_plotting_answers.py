"""The answer-posterior bar chart: its bars are the posterior's rows, bounded, summing to 1."""

from __future__ import annotations

import math

import numpy as np
import pytest

from powersmc_core import PowerSMC, SMCConfig
from powersmc_core.answers.extract import NO_ANSWER, answer_posterior, decide, result_posterior
from powersmc_core.models.loading import load_model
from powersmc_core.plotting.answer_chart import answer_bars, answer_posterior_figure

TEXTS = ["\\boxed{7}", "\\boxed{3}", "no idea", "\\boxed{7}", "\\boxed{5}", "\\boxed{3}"]
LOG_W = np.log([0.1, 0.3, 0.2, 0.15, 0.05, 0.2])


def test_bars_equal_the_posterior_rows_when_all_fit():
    post = answer_posterior(TEXTS, LOG_W)
    bars = answer_bars(post, top=8)
    rows = post.rows()
    assert bars["answer"].tolist() == [r["answer"] for r in rows]
    np.testing.assert_allclose(bars["probability"], [r["probability"] for r in rows])
    assert bars["count"].tolist() == [r["count"] for r in rows]
    assert bars["answer"].iloc[-1] == NO_ANSWER and bars["kind"].iloc[-1] == "none"
    fig = answer_posterior_figure(post)
    (bar,) = fig.data
    np.testing.assert_allclose(bar.y, [r["probability"] for r in rows])
    assert list(fig.layout.yaxis.range) == [0, 1.08]  # fixed, never auto-scaled


def test_the_tail_is_summed_into_one_other_bar_and_no_answer_stays_last():
    # 30 distinct answers with weights 1..30 plus one unanswered particle.
    texts = [f"\\boxed{{{k}}}" for k in range(30)] + ["nothing"]
    weights = np.arange(1, 32, dtype=np.float64)
    post = answer_posterior(texts, np.log(weights))
    bars = answer_bars(post, top=5)
    assert len(bars) == 7
    assert bars["kind"].tolist() == ["answer"] * 5 + ["other", "none"]
    total = weights.sum()
    # The top five answers are the five heaviest answered particles (weights 30..26).
    np.testing.assert_allclose(bars["probability"][:5], np.arange(30, 25, -1) / total)
    np.testing.assert_allclose(bars["probability"].iloc[5], np.arange(1, 26).sum() / total)
    np.testing.assert_allclose(bars["probability"].iloc[6], 31 / total)
    assert bars["count"].tolist() == [1] * 5 + [25, 1]
    assert math.isclose(bars["probability"].sum(), 1.0)
    assert bars["answer"].iloc[5] == "(other: 25 answers)"


def test_decided_answer_is_red_and_the_others_are_not():
    post = answer_posterior(TEXTS, LOG_W)
    decided = decide(post, "weighted-vote")
    assert decided == "3"
    fig = answer_posterior_figure(post, decided=decided)
    colors = list(fig.data[0].marker.color)
    red = [a for a, c in zip(fig.data[0].x, colors, strict=True) if c == "#d62728"]
    assert red == ["3"]
    plain = answer_posterior_figure(post)
    assert "#d62728" not in list(plain.data[0].marker.color)


def test_long_answers_that_share_a_shortened_label_keep_separate_bars():
    texts = ["x" * 60 + "1", "x" * 60 + "2"]
    post = answer_posterior(texts, [0.0, 0.0], extractor="exact")
    fig = answer_posterior_figure(post)
    assert len(set(fig.data[0].x)) == 2


@pytest.mark.parametrize("top", [0, -1, 2.5, True])
def test_top_must_be_a_positive_integer(top):
    post = answer_posterior(TEXTS, LOG_W)
    with pytest.raises(ValueError, match="top must be an integer"):
        answer_bars(post, top=top)


def test_a_toy_run_gives_bars_matching_its_result_posterior():
    model = load_model("toy-trap")
    result = PowerSMC(model, SMCConfig(alpha=4.0, n_particles=16, seed=1)).run([])
    post = result_posterior(result, model.decode_batch, extractor="exact")
    bars = answer_bars(post, top=8)
    assert bars["answer"].tolist() == [r["answer"] for r in post.rows()]
    assert math.isclose(bars["probability"].sum(), 1.0)
