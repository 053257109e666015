"""The shared backend suite (``backend_protocol.py``) on the toy and the torch (HF) backends.

The llama.cpp backend runs the same suite in ``test_llamacpp_backend.py``.
Tolerances: the toy's cached rows are its table rows, so 0; the torch backend on a
tiny random Llama (``random:tiny``, float32) sums the same products in another order
with and without a cache, ~1e-6 measured here, so 1e-4 as in test_hf_backend.py.
"""

from __future__ import annotations

import pytest
from backend_protocol import BackendProtocolTests, ProtocolCase, drive

from powersmc_core.models import ToyLM


class TestToyProtocol(BackendProtocolTests):
    @pytest.fixture
    def case(self) -> ProtocolCase:
        model = ToyLM.random(vocab_size=5, max_len=8, seed=0)
        return ProtocolCase(model, prompt=[0], tokens=(0, model.eos_token_id), atol=0.0)


class TestTorchProtocol(BackendProtocolTests):
    @pytest.fixture
    def case(self) -> ProtocolCase:
        pytest.importorskip("transformers", reason="the torch backend needs transformers")
        from powersmc_core.models import random_init_model

        model = random_init_model("tiny", device="cpu", dtype="float32", seed=0)
        return ProtocolCase(model, prompt=[1, 7, 8, 9, 10], tokens=(3, 500), atol=1e-4, steps=8)


class _ForgetfulReorder:
    """A backend with one line of the protocol missing: reorder ignores the ancestors."""

    def __init__(self, inner: ToyLM) -> None:
        self.inner = inner
        for attr in ("eos_token_id", "eos_token_ids", "vocab_size", "device", "name"):
            setattr(self, attr, getattr(inner, attr))

    def start(self, prompt, n):
        return self.inner.start(prompt, n)

    def advance(self, state, tokens, active):
        return self.inner.advance(state, tokens, active)

    def reorder(self, state, ancestors):
        return state

    def decode_batch(self, sequences):
        return self.inner.decode_batch(sequences)

    def next_token_logprobs(self, prefix):
        return self.inner.next_token_logprobs(prefix)


def test_suite_catches_a_reorder_that_does_nothing():
    toy = ToyLM.random(vocab_size=5, max_len=8, seed=0)
    case = ProtocolCase(_ForgetfulReorder(toy), prompt=[0], tokens=(0, toy.eos_token_id), atol=0.0)
    with pytest.raises(AssertionError, match="cached - fresh"):
        drive(case, seed=0)


def test_a_walk_checks_rows_at_every_step():
    toy = ToyLM.random(vocab_size=5, max_len=8, seed=0)
    case = ProtocolCase(toy, prompt=[0], tokens=(0, toy.eos_token_id), atol=0.0)
    result = drive(case, seed=0)
    assert result.checked_rows >= case.n + case.steps  # at least one live row per step
    assert result.max_error == 0.0
