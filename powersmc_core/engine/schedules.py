"""Exponent-bridging schedules: alpha_t for the intermediate targets p(y_1:t)^alpha_t.

Bridging changes only the path, never the final target: whatever alpha_T the
schedule reached when generation ends, a catch-up factor p(y)^(alpha - alpha_T)
is applied, so every schedule targets pi_alpha ∝ p^alpha.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.weights import conditional_ess

__all__ = ["AdaptiveSchedule", "ConstantSchedule", "LinearSchedule", "Schedule", "make_schedule"]

# log G_i(a): predictive log incremental weight of every particle if alpha_t = a.
LogIncrement = Callable[[float], torch.Tensor]


def linear_ramp(start: float, end: float, step: int, ramp_tokens: int) -> float:
    """start + (end - start)·min(1, step / ramp_tokens)."""
    return start + (end - start) * min(1.0, step / ramp_tokens)


class Schedule:
    """alpha_t for step t >= 1, given the previous exponent (and, if adaptive, the particles)."""

    adaptive = False

    def next_alpha(
        self, step: int, previous: float, log_weights: torch.Tensor, log_increment: LogIncrement
    ) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class ConstantSchedule(Schedule):
    """alpha_t = alpha from the first token (no bridging, the paper's default)."""

    alpha: float

    def next_alpha(self, step, previous, log_weights, log_increment) -> float:
        return self.alpha


@dataclass(frozen=True)
class LinearSchedule(Schedule):
    """alpha_t = alpha_start + (alpha - alpha_start)·min(1, t / ramp_tokens)."""

    alpha: float
    alpha_start: float
    ramp_tokens: int

    def next_alpha(self, step, previous, log_weights, log_increment) -> float:
        return linear_ramp(self.alpha_start, self.alpha, step, self.ramp_tokens)


@dataclass(frozen=True)
class AdaptiveSchedule(Schedule):
    """Largest alpha_t in [alpha_{t-1}, ramp(t)] whose conditional ESS stays >= target_ess.

    ramp(t) is the linear schedule's value: the fastest the exponent may rise. On a
    shared prompt every particle has the same first next-token distribution, so the
    CESS alone would allow jumping straight to alpha at t = 1; the ramp bounds the
    speed and the CESS brakes it where the particles disagree.

    The criterion uses the predictive incremental weight G_i(a) = sum_v p(v|prefix_i)^a ·
    p(prefix_i)^(a - alpha_{t-1}), which is E_q[p^a/q] for any proposal q and exactly the
    incremental weight for the optimal one, so it is known before the token is drawn.
    Solved by bisection (CESS is evaluated ``iterations`` times per step). If even
    alpha_{t-1} falls below the target, the exponent holds still for this step.
    """

    alpha: float
    alpha_start: float
    ramp_tokens: int
    target_ess: float
    iterations: int = 24

    adaptive = True

    def next_alpha(
        self, step: int, previous: float, log_weights: torch.Tensor, log_increment: LogIncrement
    ) -> float:
        def ok(a: float) -> bool:
            return conditional_ess(log_weights, log_increment(a)) >= self.target_ess

        ramp = linear_ramp(self.alpha_start, self.alpha, step, self.ramp_tokens)
        if self.alpha <= self.alpha_start:  # flattening (alpha < 1): no degeneracy to guard
            return ramp
        low, high = previous, max(previous, ramp)
        if high <= low or ok(high):
            return high
        if not ok(low):
            return low
        for _ in range(self.iterations):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if ok(middle) else (low, middle)
        return low


def make_schedule(config: SMCConfig) -> Schedule:
    if config.schedule == "constant":
        return ConstantSchedule(config.alpha)
    if config.schedule == "linear":
        return LinearSchedule(config.alpha, config.alpha_start, config.ramp_tokens)
    return AdaptiveSchedule(config.alpha, config.alpha_start, config.ramp_tokens, config.target_ess)
