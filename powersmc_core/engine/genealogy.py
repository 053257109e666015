"""Lineages from step records: who descends from whom, and what each particle says.

Convention (see ``records``): arrays of record t are indexed by slots before
resampling at step t, and slot j at step t+1 continues slot ``ancestors[j]`` of
step t. Everything here is a backward walk over those ancestor arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from powersmc_core.engine.records import StepRecord

__all__ = ["distinct_sequences", "parents", "sequence_classes", "sequences_at", "surviving"]


def parents(records: Sequence[StepRecord]) -> np.ndarray:
    """(T, N) int array: row t-1 holds, for each slot at step t, its slot at step t-1.

    Row 0 is the identity (step 1 has no parent step).
    """
    n = records[0].n_particles
    out = np.empty((len(records), n), dtype=np.int64)
    out[0] = np.arange(n)
    for t in range(1, len(records)):
        out[t] = records[t - 1].ancestors
    return out


def surviving(records: Sequence[StepRecord], upto: int | None = None) -> np.ndarray:
    """(T', N) bool: slot i at step t has a descendant among the slots at step ``upto``."""
    upto = len(records) if upto is None else upto
    par = parents(records[:upto])
    alive = np.zeros(par.shape, dtype=bool)
    alive[-1] = True
    for t in range(upto - 1, 0, -1):
        alive[t - 1, par[t][alive[t]]] = True
    return alive


def sequences_at(records: Sequence[StepRecord], step: int) -> list[list[int]]:
    """Token ids of every slot at ``step`` (before its resampling), finished-padding dropped."""
    if not 1 <= step <= len(records):
        raise IndexError(f"step must be in [1, {len(records)}], got {step}")
    par = parents(records[:step])
    n = par.shape[1]
    slots = np.arange(n)
    columns = []
    for t in range(step - 1, -1, -1):
        columns.append(np.asarray(records[t].tokens)[slots])
        slots = par[t][slots]
    tokens = np.stack(columns[::-1], axis=1)  # (N, step)
    return [[int(tok) for tok in row if tok >= 0] for row in tokens]


def sequence_classes(records: Sequence[StepRecord]) -> np.ndarray:
    """(T, N) int: at each step, slots with equal labels hold equal token sequences.

    Label of slot j at step t = rank of the pair (label of its parent at t-1, token it
    appended at t) among that step's distinct pairs; a finished slot appends -1, so it
    keeps its own class. One ``np.unique`` per step: O(T·N log N), no loop over particles.
    """
    if not records:
        return np.empty((0, 0), dtype=np.int64)
    par = parents(records)
    tokens = np.array([r.tokens for r in records], dtype=np.int64).reshape(par.shape)
    out = np.empty(par.shape, dtype=np.int64)
    _, out[0] = np.unique(tokens[0], return_inverse=True)
    # One int64 key per pair: parent label (< N) times the token range plus the token.
    low = int(min(tokens.min(), -1))
    width = int(tokens.max()) - low + 1
    for t in range(1, len(records)):
        keys = out[t - 1][par[t]] * width + (tokens[t] - low)  # (N,)
        _, inverse = np.unique(keys, return_inverse=True)
        out[t] = inverse.reshape(-1)
    return out


def distinct_sequences(records: Sequence[StepRecord]) -> np.ndarray:
    """(T,) int: the number of distinct token sequences among the N slots at each step."""
    classes = sequence_classes(records)
    if classes.size == 0:
        return np.zeros(len(records), dtype=np.int64)
    # Labels are 0..k-1 per row (ranks from np.unique), so the count is the row max + 1.
    return classes.max(axis=1) + 1
