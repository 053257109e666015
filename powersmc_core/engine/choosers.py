"""Choosers: which particle a run's ``result().chosen`` reports as its one answer.

- ``WeightedChoice``: i ~ Categorical(W), a draw from the weighted particle
  approximation of the target (SMC, temperature sampling; W uniform there).
- ``MaxLogP``: i = argmax_i log p(y_i | x) (best-of-N; ties to the lowest index).

The draw uses a generator of its own, derived from the seed, so calling ``result()``
twice, or mid-run, changes nothing.
"""

from __future__ import annotations

from typing import Protocol

import torch

__all__ = ["Chooser", "MaxLogP", "WeightedChoice"]

_SALT = 0x5DEECE66D


class Chooser(Protocol):
    def choose(self, weights: torch.Tensor, log_p: torch.Tensor, seed: int) -> int:
        """The chosen index, from normalised weights (N,) and log p(y_i|x) (N,)."""
        ...


class WeightedChoice:
    """i ~ Categorical(W_1..W_N)."""

    def choose(self, weights: torch.Tensor, log_p: torch.Tensor, seed: int) -> int:
        generator = torch.Generator().manual_seed(seed ^ _SALT)
        return int(torch.multinomial(weights.to(torch.float64).cpu(), 1, generator=generator))


class MaxLogP:
    """i = argmax_i log p(y_i | x), the first maximum."""

    def choose(self, weights: torch.Tensor, log_p: torch.Tensor, seed: int) -> int:
        values = log_p.tolist()
        return max(range(len(values)), key=values.__getitem__)
