"""Greedy decoding: the registry's ``greedy``, a run object like every sampler's, and the
same result as the one-row argmax loop it replaced (kept here as the reference)."""

from __future__ import annotations

import copy
import dataclasses
import math
import string

import pytest
import torch

from powersmc_core import SMCConfig, StepRecord, ToyLM, make_stop_rule
from powersmc_core.engine.records import SMCResult
from powersmc_core.engine.text import ParticleTexts
from powersmc_core.samplers.greedy import GreedyDecoding, GreedyRun
from powersmc_core.samplers.registry import DESCRIPTIONS, METHODS, make_sampler


def argmax_loop(model, prompt, max_new_tokens, stop=None) -> SMCResult:
    """The evaluation's former ``GreedyDecoding.run``, verbatim but for the timing."""
    eos = set(model.eos_token_ids)
    stop = copy.deepcopy(stop)
    if stop is not None:
        stop.reset(1)
    texts = ParticleTexts(model.decode_batch, 1)
    state, logp = model.start(list(prompt), 1)
    tokens: list[int] = []
    log_p, finished, forwards = 0.0, False, 0
    for t in range(1, max_new_tokens + 1):
        token = int(torch.argmax(logp[0]))
        log_p += float(logp[0, token])
        forwards += 1
        if token in eos:
            finished = True
            break
        tokens.append(token)
        pieces = texts.push([token], [True])
        if stop is not None and stop.update(pieces)[0]:
            finished = True
            break
        if t < max_new_tokens:
            feed = torch.tensor([token], device=model.device)
            live = torch.ones(1, dtype=torch.bool, device=model.device)
            state, logp = model.advance(state, feed, live)
    return SMCResult(
        completions=[tokens],
        weights=[1.0],
        chosen=0,
        log_p=[log_p],
        log_z=math.nan,
        n_resamples=0,
        ess_trace=[],
        finished=[finished],
        n_steps=forwards,
        elapsed=0.0,
        texts=[model.decode_batch([tokens])[0]],
        method="greedy",
        extras={"token_forwards": forwards},
    )


def same(a: SMCResult, b: SMCResult) -> bool:
    """Field by field, elapsed aside; NaN log Ẑ equals NaN."""
    a, b = dataclasses.replace(a, elapsed=0.0), dataclasses.replace(b, elapsed=0.0)
    both_nan = math.isnan(a.log_z) and math.isnan(b.log_z)
    if both_nan:
        a, b = dataclasses.replace(a, log_z=0.0), dataclasses.replace(b, log_z=0.0)
    return a == b


CASES = [
    pytest.param(ToyLM.trap(), [], 5, None, id="trap"),
    pytest.param(ToyLM.trap(), [1], 5, None, id="trap-prompt-B"),
    pytest.param(ToyLM.random(5, 7, seed=3, sharpness=0.7), [], 7, None, id="random"),
    pytest.param(ToyLM.random(5, 7, seed=3, sharpness=0.7), [2, 0], 3, None, id="truncated"),
    pytest.param(ToyLM.random(6, 6, seed=11, sharpness=2.0), [], 6, None, id="sharp"),
    pytest.param(ToyLM.trap(), [], 5, ["A"], id="stop-string"),
]


@pytest.mark.parametrize(("model", "prompt", "max_new_tokens", "stop"), CASES)
def test_same_result_as_the_argmax_loop(model, prompt, max_new_tokens, stop):
    rule = make_stop_rule(stop or ())
    expected = argmax_loop(model, prompt, max_new_tokens, rule)
    result = GreedyDecoding(model, max_new_tokens=max_new_tokens, stop=rule).run(prompt)
    assert same(result, expected), (result, expected)


def test_greedy_follows_the_locally_likely_token_not_the_likely_sequence():
    """On the trap the most likely first token is A (0.6) and the most likely sequence
    B x (0.36): greedy reads A, then x of three equal endings (ties to the lowest id)."""
    result = GreedyDecoding(ToyLM.trap(), max_new_tokens=5).run([])
    assert result.texts == ["A x"] and result.finished == [True]
    assert result.log_p[0] == pytest.approx(math.log(0.6 * (1 / 3) * 1.0))
    assert result.weights == [1.0] and math.isnan(result.log_z)


def test_ties_go_to_the_lowest_token_id():
    flat = torch.zeros(1 + 3 + 9, 4, dtype=torch.float64)  # every row uniform over a, b, c, eos
    model = ToyLM(flat, 3, [*string.ascii_lowercase[:3], "<eos>"], "flat")
    result = GreedyDecoding(model, max_new_tokens=5).run([])
    assert result.completions == [[0, 0]]  # "a a", then the forced EOS at max_len


def test_stream_is_a_run_of_frozen_one_row_step_records():
    model = ToyLM.random(5, 7, seed=3, sharpness=0.7)
    sampler = GreedyDecoding(model, max_new_tokens=7)
    run = sampler.stream([])
    assert isinstance(run, GreedyRun)
    records = list(run)
    assert records and all(isinstance(r, StepRecord) for r in records)
    assert all(r.n_particles == 1 and r.tau == 0.0 for r in records)
    assert records[-1].done and not any(r.done for r in records[:-1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        records[0].ess = 0.0
    result = run.result()
    assert same(result, sampler.run([]))
    tokens = [r.tokens[0] for r in records if r.tokens[0] != model.eos_token_id]
    assert result.completions == [tokens]
    assert result.log_p == [pytest.approx(records[-1].log_p[0])]
    assert result.n_steps == len(records)


def test_records_are_the_same_for_every_stream_every():
    model = ToyLM.random(5, 7, seed=3, sharpness=0.7)

    def records(every: int) -> list[StepRecord]:
        run = GreedyDecoding(model, max_new_tokens=7, stream_every=every).stream([0])
        return [dataclasses.replace(r, elapsed=0.0) for r in run]

    assert records(3) == records(1)


class NaNModel(ToyLM):
    def start(self, prompt, n):
        state, logp = super().start(prompt, n)
        return state, torch.full_like(logp, math.nan)


def test_nan_logits_give_a_clear_error():
    base = ToyLM.random(4, 5, seed=1, sharpness=0.1)
    model = NaNModel(base._table, base.max_len, base.token_names, "nan-model")
    with pytest.raises(FloatingPointError, match="NaN log-probabilities"):  # not token 0
        GreedyDecoding(model, max_new_tokens=4).run([])


def test_bad_length_says_what_to_do():
    with pytest.raises(ValueError, match="max_new_tokens"):
        GreedyDecoding(ToyLM.trap(), max_new_tokens=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        GreedyDecoding(ToyLM.trap(), max_new_tokens=2.5)


def test_the_registry_builds_greedy_from_the_config_length():
    assert "greedy" in METHODS and set(DESCRIPTIONS) == set(METHODS)
    model = ToyLM.random(5, 7, seed=3, sharpness=0.7)
    config = SMCConfig(alpha=4.0, n_particles=16, max_new_tokens=4, seed=9)
    sampler = make_sampler("greedy", model, config, n_particles=5)
    assert isinstance(sampler, GreedyDecoding) and sampler.method == "greedy"
    assert same(sampler.run([]), argmax_loop(model, [], 4))
