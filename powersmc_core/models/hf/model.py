"""Hugging Face transformer backend: one batched one-token forward per SMC step.

The prompt is prefilled once at batch 1; its KV cache is then fanned out to the N
particles. Every step feeds one token per row through the model with the cache,
so a step costs one forward of (rows, 1) tokens attending over the cached prefix:
O(rows · (params + layers · L · d)) for prefix length L. Resampling never recomputes
a prefix: rows of the cache are gathered (``index_select``) instead.

Three cache strategies share one state type (``HFState``: cache + slot→row map):

* plain (default): ``reorder`` gathers the cache rows eagerly; ``advance`` forwards
  the rows of active particles only. Finished particles never grow again, so their
  rows are dropped from the cache the step they finish (one gather, then every
  later step is cheaper; measured below).
* ``copy_on_write=True``: ``reorder`` only permutes the slot→row map (no tensor
  work). ``advance`` forwards one row per distinct (cache row, token) pair, so the
  U distinct survivors of a resampling step cost U rows, not N; outputs are
  expanded back to the N slots by the inverse index, and duplicated cache rows are
  only materialised once their particles' tokens differ.
* ``static_cache=True``: a preallocated ``StaticCache`` of ``max_cache_len``
  positions and a fixed batch of N rows; ``reorder`` copies rows in place, so every
  cache tensor keeps its address across steps (what CUDA graphs need). All layers'
  keys and values are views of one pool tensor, so on accelerators a reorder is 2
  kernels for the whole model (``reorder_pool``). With
  ``compile=True`` the one-token forward is wrapped in ``torch.compile`` (mode
  "reduce-overhead" on CUDA). Finished rows are kept and fed EOS (fixed shapes).

Measured (``docs/measurements/measure_hf_backend.py``: SmolLM2-135M, float32, 1 CPU thread, ~53
cached tokens; CPU-time medians, ratios to a plain step of 168 ms at N=8, 242 ms at N=16):
a step is mostly a fixed cost (reading the weights) plus ~9 ms per row, so

* dropping finished rows pays back at once: with half the particles finished a step
  costs x0.79 (N=8) / x0.81 (N=16), and the step that drops them costs no more than
  a full one (the gather is a reorder's cost, 6-15 ms). Hence always compact;
* copy-on-write after a resampling with N/4 distinct ancestors: x0.54 / x0.62, and
  no measurable overhead otherwise (x1.01 / x0.94, noise); reorder 0.08 ms vs 6-15 ms;
* the static cache is x1.25 / x1.31 slower in eager CPU mode (it attends over all
  max_cache_len preallocated positions and keeps finished rows): use it for CUDA
  graphs only.

Rows never interact inside a transformer forward, so whatever an inactive row holds
cannot change an active row's output. Log-probabilities are returned in float32;
NaN logits are passed through untouched (the sampler raises on them).

A state is consumed by ``advance``/``reorder``: the cache is updated in place, so
keep only the state they return.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, StaticCache
from transformers.cache_utils import Cache

from powersmc_core.models.hf.setup import (
    GENERATION_MARGIN,
    STATIC_HEADROOM,
    cache_keyword,
    collect_eos_token_ids,
    pick_device,
    pick_dtype,
)
from powersmc_core.models.hf.static import (
    cache_rows,
    is_identity,
    reorder_layers,
    reorder_pool,
    to_static,
)
from powersmc_core.models.text_io import TokenizerText

__all__ = [
    "GENERATION_MARGIN",
    "HFModel",
    "HFState",
    "cache_keyword",
    "collect_eos_token_ids",
    "pick_device",
    "pick_dtype",
    "reorder_layers",
    "reorder_pool",
]


# ---- state -----------------------------------------------------------------------------
@dataclass
class HFState:
    """KV cache shared by the particles, and which cache row each particle (slot) reads.

    rows: (N,) long; rows[i] = cache row holding slot i's prefix, -1 once the slot is
    finished and its row dropped. length: tokens held per row (prompt + generated).
    pool: static cache only, when its layers are alike: every layer's keys and values
    as views of this one (layers, 2, N, heads, max_cache_len, head_dim) tensor, so an
    accelerator's reorder is one gather for the whole model.
    """

    cache: Cache
    rows: torch.Tensor
    length: int
    pool: torch.Tensor | None = None


# ---- backend ---------------------------------------------------------------------------
class HFModel(TokenizerText):
    """LanguageModel protocol over any ``AutoModelForCausalLM`` and its tokenizer."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        *,
        copy_on_write: bool = False,
        static_cache: bool = False,
        max_cache_len: int | None = None,
        compile: bool = False,
    ) -> None:
        if copy_on_write and static_cache:
            raise ValueError(
                "copy_on_write and static_cache exclude each other: a static cache keeps a "
                "fixed batch of N rows, copy-on-write forwards a varying number"
            )
        if compile and not static_cache:
            raise ValueError("compile=True needs static_cache=True (fixed shapes and addresses)")
        if max_cache_len is not None and max_cache_len < 2:
            raise ValueError(f"max_cache_len must be >= 2, got {max_cache_len}")
        self.model = model.eval()  # dropout off: log-probs must be deterministic
        self.tokenizer = tokenizer
        self.name = name
        self.copy_on_write = copy_on_write
        self.static_cache = static_cache
        self.max_cache_len = max_cache_len
        self.config = model.config
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.eos_token_ids = collect_eos_token_ids(
            tokenizer, getattr(model, "generation_config", None)
        )
        self.eos_token_id = self.eos_token_ids[0]
        output = model.get_output_embeddings()
        self.vocab_size = int(
            output.weight.shape[0] if output is not None else model.config.vocab_size
        )
        self._cache_kw = cache_keyword(model.forward)
        self._keep_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._eos = torch.tensor(self.eos_token_id, device=self.device)
        self._step: Callable[[torch.Tensor, Cache], torch.Tensor] = self._one_token_logits
        self._compiled_cuda = False
        if compile:
            # CUDA graphs replay the step; cache tensors are static addresses (reorder
            # copies in place), so only the (N, 1) token ids change between replays.
            self._compiled_cuda = self.device.type == "cuda"
            mode = "reduce-overhead" if self._compiled_cuda else "default"
            # dynamic=False: baseline (1 row) and SMC (N rows) each get a graph specialised
            # to their shape, rather than one shape-generic graph after the second size.
            self._step = torch.compile(self._one_token_logits, mode=mode, dynamic=False)

    # ---- forward -------------------------------------------------------------------
    def _logits(self, input_ids: torch.Tensor, cache: Cache | None) -> torch.Tensor:
        """Last-position logits (rows, V) of one forward over input_ids (rows, T)."""
        kwargs: dict[str, Any] = {"use_cache": cache is not None}
        if cache is not None:
            kwargs[self._cache_kw] = cache
        if self._keep_logits:
            kwargs["logits_to_keep"] = 1  # the prefill needs only the last position's logits
        return self.model(input_ids=input_ids, **kwargs).logits[:, -1, :]

    def _one_token_logits(self, input_ids: torch.Tensor, cache: Cache) -> torch.Tensor:
        """The per-step forward (rows, 1) -> (rows, V); the function ``compile=True`` wraps."""
        return self._logits(input_ids, cache)

    @staticmethod
    def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits.float(), dim=-1)

    def _check_prompt(self, prompt: Sequence[int], n: int) -> torch.Tensor:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        ids = torch.tensor([int(t) for t in prompt], dtype=torch.long)
        if ids.numel() == 0:
            raise ValueError("prompt is empty: the model needs at least one token to condition on")
        if int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size:
            raise ValueError(f"prompt token ids must be in [0, {self.vocab_size})")
        return ids.to(self.device)[None, :]  # (1, P)

    # ---- protocol ------------------------------------------------------------------
    @torch.no_grad()
    def start(self, prompt: Sequence[int], n: int) -> tuple[HFState, torch.Tensor]:
        """Prefill the prompt once at batch 1, then fan its cache out to n rows."""
        ids = self._check_prompt(prompt, n)  # (1, P)
        length = ids.shape[1]
        cache = DynamicCache(config=self.config)
        logp = self._log_softmax(self._logits(ids, cache))  # (1, V)
        slots = torch.arange(n, device=self.device)
        if self.static_cache:
            cache, pool = self._to_static(cache, n, length, self._static_len(length))
            return HFState(cache, slots, length, pool), logp.expand(n, -1)
        if self.copy_on_write:
            slots = torch.zeros(n, dtype=torch.long, device=self.device)  # all read row 0
        else:
            cache.batch_repeat_interleave(n)
        return HFState(cache, slots, length), logp.expand(n, -1)  # (n, V) view

    @torch.no_grad()
    def advance(
        self, state: HFState, tokens: torch.Tensor, active: torch.Tensor
    ) -> tuple[HFState, torch.Tensor]:
        """One batched forward of one token per active row; returns (state, logp (n, V))."""
        tokens = tokens.to(self.device, torch.long)
        active = active.to(self.device, torch.bool)
        if self.static_cache:
            return self._advance_static(state, tokens, active)
        rows = state.rows
        if bool((rows[active] < 0).any()):
            raise ValueError(
                "advance got active=True for a finished particle; finished rows are dropped "
                "from the cache and cannot be continued"
            )
        n = rows.numel()
        slots = torch.nonzero(active).flatten()  # (A,)
        if slots.numel() == 0:
            return HFState(state.cache, torch.full_like(rows, -1), state.length), self._empty(n)
        if self.copy_on_write:
            # One cache row per distinct (row, token): identical prefixes fed identical tokens.
            key = rows[slots] * self.vocab_size + tokens[slots]
            unique, inverse = torch.unique(key, return_inverse=True)  # (U,), (A,)
            source, feed = unique // self.vocab_size, unique % self.vocab_size
        else:
            source, feed, inverse = rows[slots], tokens[slots], None
        if not is_identity(source, cache_rows(state.cache)):
            state.cache.batch_select_indices(source)  # drop finished rows / copy shared ones
        logp = self._log_softmax(self._step(feed[:, None], state.cache))  # (U or A, V)
        if inverse is not None:
            logp = logp[inverse]  # (A, V)
            new_rows = torch.full_like(rows, -1)
            new_rows[slots] = inverse
        else:
            new_rows = torch.full_like(rows, -1)
            new_rows[slots] = torch.arange(slots.numel(), device=self.device)
        if slots.numel() < n:
            full = self._empty(n)
            full[slots] = logp
            logp = full
        return HFState(state.cache, new_rows, state.length + 1), logp

    @torch.no_grad()
    def reorder(self, state: HFState, ancestors: torch.Tensor) -> HFState:
        """Slot i continues slot ancestors[i]: gather cache rows (copy-on-write: remap only)."""
        ancestors = ancestors.to(self.device)
        if self.static_cache:
            self._reorder_static(state, ancestors)
            return state
        rows = state.rows[ancestors]
        if self.copy_on_write:
            return HFState(state.cache, rows, state.length)
        live = rows >= 0
        source = rows[live]
        if not is_identity(source, cache_rows(state.cache)):
            state.cache.reorder_cache(source)  # index_select on every layer's keys and values
        new_rows = torch.full_like(rows, -1)
        new_rows[live] = torch.arange(source.numel(), device=self.device)
        return HFState(state.cache, new_rows, state.length)

    @torch.no_grad()
    def next_token_logprobs(self, prefix: Sequence[int]) -> torch.Tensor:
        """log p(. | prefix) from a full forward without cache (slow path for checks)."""
        ids = self._check_prompt(prefix, 1)
        return self._log_softmax(self._logits(ids, None))[0]

    def _empty(self, n: int) -> torch.Tensor:
        # Rows of finished particles: ignored by the sampler; zeros rather than NaN so a
        # NaN anywhere in the output always comes from the model.
        return torch.zeros(n, self.vocab_size, dtype=torch.float32, device=self.device)

    # ---- static cache --------------------------------------------------------------
    def _static_len(self, prompt_len: int) -> int:
        if self.max_cache_len is not None:
            if prompt_len >= self.max_cache_len:
                raise ValueError(
                    f"prompt has {prompt_len} tokens but max_cache_len is {self.max_cache_len}"
                )
            return self.max_cache_len
        return -(-(prompt_len + STATIC_HEADROOM) // STATIC_HEADROOM) * STATIC_HEADROOM

    def _to_static(
        self, source: Cache, n: int, length: int, max_len: int
    ) -> tuple[StaticCache, torch.Tensor | None]:
        return to_static(self.config, self.name, source, n, length, max_len)

    def _advance_static(
        self, state: HFState, tokens: torch.Tensor, active: torch.Tensor
    ) -> tuple[HFState, torch.Tensor]:
        cache = state.cache
        n = state.rows.numel()
        if state.length >= cache.get_max_length():
            # Reallocation moves the tensors (a compiled graph re-records once); explicit
            # max_cache_len avoids it.
            if self.max_cache_len is not None:
                raise ValueError(
                    f"static cache is full: max_cache_len={self.max_cache_len} positions "
                    "(prompt + generated); pass a larger max_cache_len"
                )
            cache, pool = self._to_static(cache, n, state.length, 2 * cache.get_max_length())
            state = HFState(cache, state.rows, state.length, pool)
        # Fixed (n, 1) shape: finished rows are fed EOS, and their outputs are ignored.
        feed = torch.where(active, tokens, self._eos)[:, None]
        if self._compiled_cuda:
            torch.compiler.cudagraph_mark_step_begin()
        logp = self._log_softmax(self._step(feed, cache))  # (n, V), a fresh tensor
        return HFState(cache, state.rows, state.length + 1, state.pool), logp

    def _reorder_static(self, state: HFState, ancestors: torch.Tensor) -> None:
        """In-place row gather: every cache tensor keeps its address (CUDA graphs replay).

        The sampler's batched steps (stream_every > 1) pass identity ancestors when no
        resampling is due: skipping that copy needs a host read, so only the CPU (where
        reads are free) checks; an accelerator copies without waiting.
        """
        if ancestors.device.type == "cpu":
            if not is_identity(ancestors, ancestors.numel()):
                reorder_layers(state.cache, ancestors, state.length)
        elif state.pool is not None:
            reorder_pool(state.pool, ancestors, state.length)
        else:
            reorder_layers(state.cache, ancestors, state.length)

    def __repr__(self) -> str:
        mode = "copy-on-write" if self.copy_on_write else "static" if self.static_cache else "plain"
        return f"HFModel({self.name}, {mode}, device={self.device}, dtype={self.dtype})"
