import math

import pytest
import torch

from powersmc_core import ToyLM
from powersmc_core.theory.exact import (
    enumerate_sequences,
    exact_log_z,
    power_distribution,
    temperature_distribution,
    total_variation,
    weighted_distribution,
)


def test_public_api_of_the_issue():
    model = ToyLM.random(vocab_size=4, max_len=4, seed=0)
    assert isinstance(model.eos_token_id, int) and 0 <= model.eos_token_id < 4
    logp = model.next_token_logprobs([2, 0])
    assert logp.ndim == 1 and logp.shape[0] == 4
    assert float(torch.logsumexp(logp, 0)) == pytest.approx(0.0, abs=1e-12)


def test_same_seed_same_model_different_seed_different_model():
    a, b = ToyLM.random(5, 4, seed=3), ToyLM.random(5, 4, seed=3)
    assert torch.equal(a.next_token_logprobs([1]), b.next_token_logprobs([1]))
    assert not torch.equal(
        a.next_token_logprobs([1]), ToyLM.random(5, 4, seed=4).next_token_logprobs([1])
    )


def test_eos_forced_at_max_len_and_names():
    model = ToyLM.random(4, 3, seed=1)
    last = model.next_token_logprobs([0, 1])
    assert float(last[model.eos_token_id]) == 0.0
    assert model.token_names[model.eos_token_id] == "<eos>"
    assert model.decode_batch([[0, 1]]) == ["a b"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 1}, "vocab_size"),
        ({"vocab_size": 9}, "vocab_size"),
        ({"max_len": 9}, "max_len"),
    ],
)
def test_random_validates_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ToyLM.random(**kwargs)


def test_prompt_validation():
    model = ToyLM.random(4, 3, seed=0)
    with pytest.raises(ValueError, match="shorter than max_len"):
        model.start([0, 0, 0], 2)
    with pytest.raises(ValueError, match="non-EOS"):
        model.start([model.eos_token_id], 2)


def test_batched_advance_matches_per_prefix_table(single_thread):
    model = ToyLM.random(5, 5, seed=2)
    state, logp = model.start([1], 3)
    assert torch.equal(logp[0], model.next_token_logprobs([1]))
    tokens = torch.tensor([0, 3, model.eos_token_id])
    active = torch.tensor([True, True, True])
    state, logp = model.advance(state, tokens, active)
    assert torch.equal(logp[0], model.next_token_logprobs([1, 0]))
    assert torch.equal(logp[1], model.next_token_logprobs([1, 3]))
    state = model.reorder(state, torch.tensor([1, 1, 0]))
    state, logp = model.advance(state, torch.tensor([2, 0, 1]), torch.tensor([True, False, True]))
    assert torch.equal(logp[0], model.next_token_logprobs([1, 3, 2]))
    assert torch.equal(logp[1], model.next_token_logprobs([1, 3]))  # inactive row unchanged
    assert torch.equal(logp[2], model.next_token_logprobs([1, 0, 1]))


def test_enumeration_is_a_distribution():
    model = ToyLM.random(4, 4, seed=5)
    table = enumerate_sequences(model)
    assert len(table.sequences) == 1 + 3 + 9 + 27
    assert float(table.log_p.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    assert len(set(table.sequences)) == len(table.sequences)
    assert total_variation(power_distribution(table, 1.0), table.log_p.exp()) < 1e-12
    assert total_variation(temperature_distribution(table, 1.0), table.log_p.exp()) < 1e-12
    assert float(temperature_distribution(table, 0.3).sum()) == pytest.approx(1.0)
    assert exact_log_z(table, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_enumeration_respects_max_new_tokens_and_prompt():
    model = ToyLM.random(4, 5, seed=5)
    table = enumerate_sequences(model, prompt=[1], max_new_tokens=2)
    assert max(len(s) for s in table.sequences) == 2
    assert float(table.log_p.exp().sum()) == pytest.approx(1.0, abs=1e-12)


def test_trap_model_power_and_temperature_disagree():
    """The teaching example: p^alpha prefers the confident path B x, low temperature prefers A."""
    model = ToyLM.trap()
    table = enumerate_sequences(model)
    names = [" ".join(model.token_names[t] for t in s) for s in table.sequences]
    p = dict(zip(names, table.log_p.exp().tolist(), strict=True))
    assert p["A x"] == pytest.approx(0.2) and p["B x"] == pytest.approx(0.36)
    pi = dict(zip(names, power_distribution(table, 4.0).tolist(), strict=True))
    temp = dict(zip(names, temperature_distribution(table, 0.25).tolist(), strict=True))
    assert max(pi, key=pi.get) == "B x" and pi["B x"] > 0.7
    first_a_temp = sum(v for k, v in temp.items() if k.startswith("A"))
    first_a_pi = sum(v for k, v in pi.items() if k.startswith("A"))
    assert first_a_temp > 0.8 and first_a_pi < 0.25
    z = 3 * 0.2**4 + 0.36**4 + 2 * 0.02**4
    assert exact_log_z(table, 4.0) == pytest.approx(math.log(z))


def test_weighted_distribution_rejects_unknown_completion():
    table = enumerate_sequences(ToyLM.trap())
    with pytest.raises(KeyError, match="not a complete sequence"):
        weighted_distribution(table, [[0, 0, 0]], [1.0])
