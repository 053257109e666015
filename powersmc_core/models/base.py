"""The one narrow protocol every model backend implements.

The sampler only ever calls ``start``, ``advance`` and ``reorder``; whether the
state behind them is a row index into a toy table or a transformer KV cache is
the backend's business. Log-probabilities come back as (n, V) tensors on the
model's device; rows of finished particles may hold anything (they are ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["LanguageModel", "ModelState", "start_run"]

ModelState = Any


@runtime_checkable
class LanguageModel(Protocol):
    """start / advance / reorder over a batch of n rows (particles)."""

    eos_token_id: int
    eos_token_ids: tuple[int, ...]
    vocab_size: int
    device: torch.device
    name: str

    def start(self, prompt: Sequence[int], n: int) -> tuple[ModelState, torch.Tensor]:
        """Prefill the prompt once and fan it out to n rows; return (state, logp (n, V))."""
        ...

    def advance(
        self, state: ModelState, tokens: torch.Tensor, active: torch.Tensor
    ) -> tuple[ModelState, torch.Tensor]:
        """Append tokens (n,) to the active rows (n,) bool; return (state, logp (n, V))."""
        ...

    def reorder(self, state: ModelState, ancestors: torch.Tensor) -> ModelState:
        """Row i of the new state is row ancestors[i] of the old one (no recomputation)."""
        ...

    def decode_batch(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        """Token ids -> text, one string per sequence (used for incremental streaming)."""
        ...

    def next_token_logprobs(self, prefix: Sequence[int]) -> torch.Tensor:
        """log p(. | prefix) as a 1-D tensor over the vocabulary (slow path for checks)."""
        ...


def start_run(
    model: LanguageModel, prompt: Sequence[int], n: int, new_tokens: int
) -> tuple[ModelState, torch.Tensor]:
    """``model.start(prompt, n)``, told the run's length where the backend reserves cache
    cells for it up front (llama.cpp: prompt + new_tokens + 1 per row, not a fixed 256).

    Read from the class, so a wrapper that delegates attributes keeps the plain ``start``.
    """
    if getattr(type(model), "sizes_cache_to_run", False):
        return model.start(prompt, n, new_tokens=new_tokens)  # type: ignore[call-arg]
    return model.start(prompt, n)
