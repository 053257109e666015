"""Forking a batch's model state: the rollout rows of look-ahead SMC and rollout sampling.

``fork(model, state, rows)`` is a NEW state whose row i is row rows[i] of ``state``; the
particles keep advancing ``state`` afterwards, so nothing done to the fork may touch it:

* toy: ``reorder`` already returns a fresh state (index tensors);
* torch/HF: ``reorder`` and ``advance`` rewrite one KV cache in place, so the fork is a
  deep copy of the state, reordered (a static cache, exactly N preallocated rows, is
  refused: the rollouts need N·K·M);
* llama.cpp: ``LlamaCppModel.fork``: a new context of ``capacity`` sequences sized for
  the rows' length + ``room`` cells, each distinct source row copied cell by cell
  (the cells its prefix uses). A context holds at most 256 sequences.

``fork_refusal(model, rows_needed, method)`` says, before a run, why a backend cannot
fork ``rows_needed`` rollout rows (None: it can).
"""

from __future__ import annotations

import copy

import torch

from powersmc_core.models.base import LanguageModel, ModelState
from powersmc_core.models.toy import ToyLM

__all__ = ["MAX_LLAMACPP_ROWS", "fork", "fork_refusal"]

# Sequences one llama.cpp context holds (llama.cpp's LLAMA_MAX_SEQ; 300 failed).
MAX_LLAMACPP_ROWS = 256


def _is_llamacpp(model: object) -> bool:
    module = type(model).__module__
    return module.startswith("powersmc_core.models.llamacpp") or (
        getattr(model, "backend", None) == "llamacpp"
    )


def fork_refusal(
    model: LanguageModel, rows_needed: int | None = None, method: str = "look-ahead SMC"
) -> str | None:
    """Why ``method`` cannot fork ``rows_needed`` rows (N·K·M) of this backend's state.

    None when it can. ``rows_needed`` None checks the backend alone (a static KV cache
    never can); llama.cpp can up to ``MAX_LLAMACPP_ROWS`` rows.
    """
    name = getattr(model, "name", type(model).__name__)
    if getattr(model, "static_cache", False):
        return (
            f"{name}: a static KV cache holds exactly N rows and {method}'s rollouts need "
            "N·K·M; load the model without static_cache"
        )
    if _is_llamacpp(model) and rows_needed is not None and rows_needed > MAX_LLAMACPP_ROWS:
        return (
            f"{method} needs N·K·M = {rows_needed} rollout rows; llama.cpp holds at most "
            f"{MAX_LLAMACPP_ROWS} sequences: lower N, K or M"
        )
    return None


def fork(
    model: LanguageModel,
    state: ModelState,
    rows: torch.Tensor,
    *,
    room: int = 0,
    capacity: int | None = None,
) -> ModelState:
    """A new, independent state whose row i is row rows[i] of ``state`` (left untouched).

    room: tokens the fork's rows will still grow by (llama.cpp sizes its cells to it);
    capacity: the most rows the fork will hold after later ``reorder``s (default
    len(rows); llama.cpp reserves that many sequences). Other backends grow as needed.
    """
    if isinstance(model, ToyLM):
        return model.reorder(state, rows)  # a fresh state of index tensors
    own_fork = getattr(model, "fork", None)
    if own_fork is not None:  # llama.cpp: a new context, cell-exact copies
        return own_fork(state, rows, room=room, capacity=capacity)
    if getattr(model, "static_cache", False):
        raise ValueError(fork_refusal(model, len(rows)))
    # HF: reorder and advance rewrite the cache in place; the copy keeps the particles'.
    return model.reorder(copy.deepcopy(state), rows)
