"""Targets: the incremental weight G_t that makes the particles properly weighted.

``PowerTarget`` targets gamma_t(y_1:t) ∝ p(y_1:t)^alpha_t, ending at pi_alpha ∝ p^alpha:

    log G = alpha_t·log p(y_t) − log q(y_t) + (alpha_t − alpha_{t−1})·log p(y_<t)
            [+ (alpha − alpha_t)·log p(y)   on the step that ends the run]

A finished particle takes no token (no local term) but keeps the bridging factor, and
the catch-up lands on every particle at the end. ``UnweightedTarget`` gives G = 1: the
particles are plain samples of the proposal (temperature sampling, best-of-N, greedy).
Both are O(N) on the device.
"""

from __future__ import annotations

from typing import Protocol

import torch

from powersmc_core.engine.staging import Draw
from powersmc_core.engine.state import ParticleState

__all__ = ["PowerTarget", "Target", "UnweightedTarget"]


class Target(Protocol):
    def log_increment(
        self,
        before: ParticleState,
        after: ParticleState,
        draw: Draw,
        alpha_t: float,
        done: torch.Tensor,
    ) -> torch.Tensor:
        """log G_i, (N,): ``before`` holds y_<t and alpha_{t−1}, ``after`` y_1:t; ``done`` 0-d."""
        ...


class PowerTarget:
    """gamma_t ∝ p^alpha_t bridging to p^alpha (``alpha`` the final exponent)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def log_increment(
        self,
        before: ParticleState,
        after: ParticleState,
        draw: Draw,
        alpha_t: float,
        done: torch.Tensor,
    ) -> torch.Tensor:
        """alpha_t·log p(y_t) − log q(y_t) + (alpha_t − alpha_{t−1})·log p(y_<t) (+ catch-up)."""
        active = ~before.finished
        local = torch.where(active, alpha_t * draw.lp_token - draw.lq_token, 0.0)
        log_inc = local + (alpha_t - before.alpha) * before.log_p
        # The final catch-up (alpha - alpha_T)·log p(y) lands on the step that ends the run.
        return log_inc + (self.alpha - alpha_t) * torch.where(done, after.log_p, 0.0)


class UnweightedTarget:
    """G = 1: the proposal's own distribution is the target (weights stay uniform)."""

    def log_increment(
        self,
        before: ParticleState,
        after: ParticleState,
        draw: Draw,
        alpha_t: float,
        done: torch.Tensor,
    ) -> torch.Tensor:
        """log G_i = 0 for every particle."""
        return torch.zeros_like(before.log_w)
