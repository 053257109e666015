"""llama.cpp backend: the GGUF file itself, run by llama.cpp, behind the same protocol.

The torch backend dequantises the embedded Q4_1 GGUF to float32 (≈ 540 MB) and pays a
float32 forward per step; llama.cpp runs the quantised weights directly (≈ 100 MB),
2–3× faster per token on CPU (issue 15). The protocol maps onto llama.cpp's KV
*sequences*:

* ``start(prompt, n)``: a fresh llama context per run (``Context``), the prompt
  decoded once into one sequence, then copied to the other n − 1 sequences (a copy of
  the prompt's cells, never a recomputation).
* ``advance``: one ``llama_decode`` of one token per active row (row i at position
  ``length`` in its own sequence), logits requested for every row; the (A, V) logits
  buffer is viewed as a tensor without a copy and log-softmaxed. Finished rows are
  removed from the cache (``llama_memory_seq_rm``) and never decoded again.
* ``reorder``: slots map to sequence ids (``LlamaState.seqs``). The first slot that
  takes an old row keeps its sequence id, so a permutation (cycles included) costs
  nothing and needs no spare sequence; every further copy gets a free id and one
  cell-exact copy (``Context.copy``: the cells the row uses, ≈ its length, read once
  per source row); rows nobody continues are removed. n live slots never need more
  than n ids.
* ``fork(state, rows, room, capacity)``: a NEW context whose row i is row rows[i] of
  ``state`` (which stays as it was), sized for length + room + 1 cells per row and
  ``capacity`` sequences; the look-ahead and rollout samplers advance their rollouts
  there. Each distinct source row is read once and written to its destinations.

Copies go through ``llama_state_seq_get_data``/``set_data`` rather than
``llama_memory_seq_cp``: with one stream per sequence, seq_cp copies the destination's
whole stream buffer (every cell the context reserves per row: 2.3 ms at 512 cells,
10 ms at 2048) whatever the prefix, and cannot cross contexts.

Each sequence has its own KV stream (``kv_unified=False``). The unified cache, where
a copy only tags shared cells, returned rows 0.3–0.8 nats away from a fresh decode
after a resampling (seq_rm then seq_cp) in llama-cpp-python 0.3.36; the per-sequence
streams agree with a fresh decode exactly (0.0 measured).

Capacity: every row gets prompt + ``max_new_tokens`` + 1 cells (a constructor
argument; ``start`` cannot know the run's length), rounded up by llama.cpp to a
multiple of 256 (``CELL_PAD``); a fork's rows get length + room + 1. A context holds
at most 256 sequences (``MAX_SEQUENCES``). A longer run doubles the cells
and re-decodes the live rows from the token history the state keeps (rare; the
history is a few KB).

Text: tokenisation, chat template, ``decode_batch`` and EOS ids are the torch
backend's own (``HFModel``'s methods over the same saved tokenizer), so prompt ids,
texts and stopping are identical on both backends; only the log-probabilities differ
(Q4_1 arithmetic instead of float32; mean KL ≈ 0.003 nats, tests/test_llamacpp_backend.py).

Sharing: the llama model (weights, mmapped) is loaded once per file per process and
shared by every ``LlamaCppModel``; every run owns one context, freed when its state
is dropped. Concurrent runs in threads are safe (contexts share nothing mutable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from powersmc_core.models.errors import ModelLoadError
from powersmc_core.models.gguf_cache import (
    EMBEDDED_SLUG,
    embedded_gguf_path,
    gguf_cache_slug,
    llamacpp_gguf_path,
    prepare_gguf_cache,
)
from powersmc_core.models.instances import shared
from powersmc_core.models.llamacpp.context import MAX_SEQUENCES, Context, weights
from powersmc_core.models.llamacpp.runtime import default_threads
from powersmc_core.models.names import parse_model_name
from powersmc_core.models.text_io import TokenizerText, collect_eos_token_ids

__all__ = ["DEFAULT_NEW_TOKENS", "LlamaCppModel", "LlamaState", "load_llamacpp_model"]

# Cells reserved per row at start(); a longer run doubles the context once in a while.
DEFAULT_NEW_TOKENS = 256


# ---- state ------------------------------------------------------------------------------
@dataclass
class LlamaState:
    """A run's llama context and, per slot, its sequence id (-1: finished, dropped).

    length: positions held by every live row (prompt + generated). history: (n, cap)
    int32, the generated tokens of each slot (first ``length - len(prompt)`` columns),
    kept only to rebuild a larger context when a run outgrows its cells.
    """

    context: Context
    seqs: np.ndarray
    length: int
    prompt: tuple[int, ...]
    history: np.ndarray


# ---- backend ----------------------------------------------------------------------------
class LlamaCppModel(TokenizerText):
    """LanguageModel protocol over a GGUF file run by llama.cpp (CPU).

    Text handling (``TokenizerText``) is the one the torch backend uses, over the same
    tokenizer: identical ids and texts.
    """

    backend = "llamacpp"
    # start() takes the run's length (``models.base.start_run``): cells are reserved per row.
    sizes_cache_to_run = True

    def __init__(
        self,
        gguf_path: Path,
        tokenizer: Any,
        config: Any,
        generation_config: Any,
        name: str,
        *,
        threads: int | None = None,
        max_new_tokens: int = DEFAULT_NEW_TOKENS,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.weights = weights(Path(gguf_path))
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.max_new_tokens = max_new_tokens
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.vocab_size = self.weights.vocab_size
        self.generation_config = generation_config
        self.eos_token_ids = collect_eos_token_ids(tokenizer, generation_config)
        self.eos_token_id = self.eos_token_ids[0]
        self.backend_reason = "llama.cpp backend"

    # ---- protocol ------------------------------------------------------------------
    def start(
        self, prompt: Sequence[int], n: int, *, new_tokens: int | None = None
    ) -> tuple[LlamaState, torch.Tensor]:
        """Decode the prompt once into sequence 0, then copy it to sequences 1..n-1.

        Each row gets prompt + ``new_tokens`` + 1 cells (the run's length; default the
        model's ``max_new_tokens``); llama.cpp pads a stream to a multiple of 256 cells.
        """
        ids = self._check_prompt(prompt, n)
        room = self.max_new_tokens if new_tokens is None else int(new_tokens)
        if room < 1:
            raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
        context = Context(self.weights, len(ids) + room + 1, n, self.threads)
        seqs = np.arange(n, dtype=np.int32)
        logits = self._fill(context, ids, seqs, np.zeros((n, 0), dtype=np.int32))
        state = LlamaState(context, seqs, len(ids), tuple(ids), np.zeros((n, 64), np.int32))
        return state, _log_softmax(logits).expand(n, -1)  # (n, V) view of one row

    def advance(
        self, state: LlamaState, tokens: torch.Tensor, active: torch.Tensor
    ) -> tuple[LlamaState, torch.Tensor]:
        """One batched decode of one token per active row; returns (state, logp (n, V))."""
        feed = tokens.detach().to("cpu", torch.int32).numpy()
        live = active.detach().to("cpu", torch.bool).numpy()
        seqs = state.seqs
        if (seqs[live] < 0).any():
            raise ValueError(
                "advance got active=True for a finished particle; finished rows are dropped "
                "from the cache and cannot be continued"
            )
        n = seqs.size
        for seq in seqs[~live & (seqs >= 0)]:  # rows that just finished: free their cells
            state.context.remove(seq)
        seqs = np.where(live, seqs, -1).astype(np.int32)
        slots = np.flatnonzero(live)
        history = _record(state.history, state.length - len(state.prompt), feed, slots)
        state = LlamaState(state.context, seqs, state.length, state.prompt, history)
        if slots.size == 0:
            return LlamaState(state.context, seqs, state.length + 1, state.prompt, history), (
                self._empty(n)
            )
        # The batch goes in increasing sequence id: llama.cpp decoded a batch whose ids were
        # out of order (as they are after resampling) ~1.4x slower (163 vs 114 ms at N = 8).
        order = np.argsort(seqs[slots], kind="stable")
        batch = slots[order]
        if state.context.decode(feed[batch], state.length, seqs[batch], True) == 1:
            state = self._grow(state)  # no room: a larger context now holds everything
            state.context.decode(feed[batch], state.length, seqs[batch], True)
        logp = _log_softmax(state.context.logits(slots.size))  # (A, V), rows in batch order
        if (order != np.arange(order.size)).any():
            logp = logp[torch.from_numpy(np.argsort(order))]  # back to slot order
        if slots.size < n:
            full = self._empty(n)
            full[torch.from_numpy(slots)] = logp
            logp = full
        return LlamaState(state.context, seqs, state.length + 1, state.prompt, history), logp

    def reorder(self, state: LlamaState, ancestors: torch.Tensor) -> LlamaState:
        """Slot i continues slot ancestors[i]: first taker keeps the sequence, others copy it."""
        picks = ancestors.detach().to("cpu", torch.long).numpy()
        old = state.seqs
        seqs = old[picks].copy()
        live = np.flatnonzero(seqs >= 0)
        _, first = np.unique(seqs[live], return_index=True)
        kept = seqs[live[first]]
        copies = np.setdiff1d(live, live[first], assume_unique=True)
        if copies.size or kept.size < np.count_nonzero(old >= 0):
            context = state.context
            for seq in np.setdiff1d(old[old >= 0], kept):  # rows nobody continues
                context.remove(seq)
            free = np.setdiff1d(np.arange(context.n_seq, dtype=np.int32), kept)
            if free.size < copies.size:
                raise ValueError(
                    f"reorder needs {kept.size + copies.size} sequences, the context holds "
                    f"{context.n_seq}: fork the state with a larger capacity"
                )
            dests = free[: copies.size]
            sources = seqs[copies]
            for source in np.unique(sources):  # each source row read once
                context.copy(int(source), dests[sources == source])
            seqs[copies] = dests
        return LlamaState(state.context, seqs, state.length, state.prompt, state.history[picks])

    def fork(
        self, state: LlamaState, rows: torch.Tensor, room: int = 0, capacity: int | None = None
    ) -> LlamaState:
        """A new state in a new context whose row i is row rows[i] of ``state`` (untouched).

        Each row gets state.length + room + 1 cells and the context ``capacity`` sequences
        (default len(rows); more when the fork will be reordered into more rows). Each
        distinct live source row is read once and written to its destinations: the work is
        (destinations) x (the source's cells), independent of either context's size.
        """
        picks = rows.detach().to("cpu", torch.long).numpy()
        n = picks.size
        capacity = n if capacity is None else int(capacity)
        if n < 1 or capacity < n:
            raise ValueError(f"fork needs 1 <= len(rows) = {n} <= capacity = {capacity}")
        if capacity > MAX_SEQUENCES:
            raise ValueError(
                f"fork needs {capacity} rows; llama.cpp holds at most {MAX_SEQUENCES} sequences "
                "in a context: lower the number of rows"
            )
        if room < 0:
            raise ValueError(f"room must be >= 0, got {room}")
        context = Context(self.weights, state.length + room + 1, capacity, self.threads)
        sources = state.seqs[picks]
        seqs = np.where(sources >= 0, np.arange(n, dtype=np.int32), -1).astype(np.int32)
        for source in np.unique(sources[sources >= 0]):
            snapshot = state.context.read(int(source))
            for dest in seqs[sources == source]:
                context.write(snapshot, int(dest))
        return LlamaState(context, seqs, state.length, state.prompt, state.history[picks])

    def next_token_logprobs(self, prefix: Sequence[int]) -> torch.Tensor:
        """log p(. | prefix) from a fresh context (slow path for checks)."""
        ids = self._check_prompt(prefix, 1)
        context = Context(self.weights, len(ids) + 1, 1, self.threads)
        seqs = np.zeros(1, dtype=np.int32)
        return _log_softmax(self._fill(context, ids, seqs, np.zeros((1, 0), np.int32)))[0]

    # ---- helpers -------------------------------------------------------------------
    def _check_prompt(self, prompt: Sequence[int], n: int) -> list[int]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError("prompt is empty: the model needs at least one token to condition on")
        if min(ids) < 0 or max(ids) >= self.vocab_size:
            raise ValueError(f"prompt token ids must be in [0, {self.vocab_size})")
        return ids

    def _fill(
        self, context: Context, prompt: Sequence[int], seqs: np.ndarray, generated: np.ndarray
    ) -> torch.Tensor:
        """Decode the prompt into seqs[0], copy it to the other seqs, then each row's
        generated tokens (rows, G) after it; returns the prompt's last logits (1, V)."""
        prompt_ids = np.asarray(prompt, dtype=np.int32)
        for begin in range(0, prompt_ids.size, context.capacity):
            chunk = prompt_ids[begin : begin + context.capacity]
            last = np.zeros(chunk.size, dtype=np.int8)
            last[-1] = begin + chunk.size == prompt_ids.size
            positions = np.arange(begin, begin + chunk.size, dtype=np.int32)
            if context.decode(chunk, positions, np.full(chunk.size, seqs[0]), last) != 0:
                raise ModelLoadError(f"llama.cpp context too small for {prompt_ids.size} tokens")
        logits = context.logits(1).clone()  # the regrowth decodes below overwrite the buffer
        if seqs.size > 1:
            context.copy(int(seqs[0]), seqs[1:])
        rows, steps = generated.shape
        if steps:
            tokens = generated.reshape(-1)
            positions = np.tile(np.arange(prompt_ids.size, prompt_ids.size + steps), rows)
            row_seqs = np.repeat(seqs, steps)
            for begin in range(0, tokens.size, context.capacity):
                end = begin + context.capacity
                if (
                    context.decode(
                        tokens[begin:end], positions[begin:end], row_seqs[begin:end], False
                    )
                    != 0
                ):
                    raise ModelLoadError("llama.cpp context too small while regrowing")
        return logits

    def _grow(self, state: LlamaState) -> LlamaState:
        """A context with twice the cells per row, refilled from the prompt and live histories."""
        old = state.context
        live = np.flatnonzero(state.seqs >= 0)
        steps = state.length - len(state.prompt)
        context = Context(self.weights, 2 * old.per_seq, old.n_seq, self.threads)
        self._fill(context, state.prompt, state.seqs[live], state.history[live, :steps])
        return LlamaState(context, state.seqs, state.length, state.prompt, state.history)

    def _empty(self, n: int) -> torch.Tensor:
        # Rows of finished particles: ignored by the sampler; zeros as in the torch backend.
        return torch.zeros(n, self.vocab_size, dtype=torch.float32)

    def __repr__(self) -> str:
        return f"LlamaCppModel({self.name}, threads={self.threads}, path={self.weights.path})"


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1)


def _record(history: np.ndarray, column: int, feed: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """history with feed[slots] written at ``column`` (doubling the columns when full)."""
    if column >= history.shape[1]:
        history = np.concatenate([history, np.zeros_like(history)], axis=1)
    history[slots, column] = feed[slots]
    return history


# ---- loading ----------------------------------------------------------------------------
def load_llamacpp_model(
    name: str,
    *,
    threads: int | None = None,
    max_new_tokens: int = DEFAULT_NEW_TOKENS,
    reason: str | None = None,
) -> LlamaCppModel:
    """The shared ``LlamaCppModel`` for a GGUF model name (``smollm2`` or a ``.gguf`` path).

    The tokenizer and EOS ids come from the torch backend's cache folder
    (``prepare_gguf_cache``: converted once if absent), so both backends agree on text.
    """
    spec = parse_model_name(name)
    if spec.kind not in ("embedded", "gguf"):
        raise ModelLoadError(
            f"the llama.cpp backend runs GGUF models only, not {name!r}: use --backend torch"
        )
    resolved_threads = default_threads() if threads is None else threads
    key = ("llamacpp", spec.name, resolved_threads, max_new_tokens)
    model = shared(key, lambda: _build(spec, resolved_threads, max_new_tokens))
    if reason is not None:
        model.backend_reason = reason
    return model  # type: ignore[return-value]


def _build(spec: Any, threads: int, max_new_tokens: int) -> LlamaCppModel:
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    if spec.kind == "embedded":
        path, slug, short = embedded_gguf_path(), EMBEDDED_SLUG, spec.name
    else:
        path = Path(spec.path or spec.name)
        slug = gguf_cache_slug(path)  # the torch backend's cache folder for this file
        short = path.stem
    folder = prepare_gguf_cache(path, slug).folder
    if spec.kind == "embedded":
        path = llamacpp_gguf_path(path)  # $POWERSMC_LLAMACPP_QUANT: a requantised copy
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    generation = GenerationConfig.from_pretrained(str(folder), local_files_only=True)
    return LlamaCppModel(
        path, tokenizer, config, generation, short, threads=threads, max_new_tokens=max_new_tokens
    )
