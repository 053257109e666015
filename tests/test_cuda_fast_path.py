"""The GPU fast path: no host synchronisation inside batched SMC steps (CUDA only).

``torch.cuda.set_sync_debug_mode("error")`` turns every synchronising call (a
``.item()``, a device-to-host copy, ``nonzero``) into an exception, including those
inside PyTorch's C++ (``torch.multinomial`` checks its input with ``.item()``, which
is why the sampler draws tokens with ``sample_rows``). CPU machines skip this file;
the CPU test ``test_stream_every.py::test_a_batched_step_reads_nothing_back_to_the_host``
covers the Python side everywhere. Run by ``deploy/gpu_checks.sh`` on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from powersmc_core import PowerSMC, SMCConfig
from powersmc_core.bench import SuppressEOS
from powersmc_core.models.hf.model import HFModel
from powersmc_core.models.loading import random_init_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PROMPT = [1, 5, 9, 13, 17]


def fast_model(compile: bool) -> HFModel:
    base = random_init_model("tiny", device="cuda", dtype="float32")
    return HFModel(
        base.model, base.tokenizer, base.name, static_cache=True, max_cache_len=64, compile=compile
    )


@pytest.mark.parametrize("compile", [False, True], ids=["static", "static+cuda-graphs"])
def test_batched_steps_do_not_synchronise(compile):
    model = SuppressEOS(fast_model(compile))  # EOS banned: every step decodes all rows
    config = SMCConfig(alpha=4.0, n_particles=8, max_new_tokens=40, ess_threshold=0.9, seed=0)
    run = PowerSMC(model, config, stream_every=8).stream(PROMPT)
    first = [next(run) for _ in range(8)]  # warm-up block: compilation may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(8):
            run._decode_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    rest = list(run)
    assert [r.step for r in first + rest] == list(range(1, 41))
    assert any(r.resampled for r in first + rest)


def test_records_do_not_depend_on_stream_every_on_cuda():
    model = fast_model(compile=False)
    config = SMCConfig(alpha=4.0, n_particles=8, max_new_tokens=24, ess_threshold=0.9, seed=1)
    one = list(PowerSMC(model, config).stream(PROMPT))
    batched = list(PowerSMC(model, config, stream_every=6).stream(PROMPT))
    assert [r.tokens for r in batched] == [r.tokens for r in one]
    assert [r.ancestors for r in batched] == [r.ancestors for r in one]


def test_pooled_reorder_on_cuda_matches_a_full_forward():
    """On CUDA reorders gather the one pool tensor; cached rows must equal a full forward."""
    model = fast_model(compile=False)
    n, gen = 4, torch.Generator().manual_seed(0)
    state, _ = model.start(PROMPT, n)
    assert state.pool is not None and state.pool.is_cuda
    sequences = [list(PROMPT) for _ in range(n)]
    for step in range(6):
        if step in (2, 4):
            ancestors = torch.randint(0, n, (n,), generator=gen)
            state = model.reorder(state, ancestors.cuda())
            sequences = [list(sequences[a]) for a in ancestors.tolist()]
        tokens = torch.randint(6, model.vocab_size, (n,), generator=gen)
        for sequence, token in zip(sequences, tokens.tolist(), strict=True):
            sequence.append(token)
        state, logp = model.advance(state, tokens.cuda(), torch.ones(n, dtype=torch.bool))
        for row, sequence in enumerate(sequences):
            full = model.next_token_logprobs(sequence)
            torch.testing.assert_close(logp[row], full, atol=1e-3, rtol=0)
