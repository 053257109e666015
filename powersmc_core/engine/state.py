"""The particle system as one immutable value: what a step reads and what it returns.

A step never mutates a ``ParticleState``; it builds the next one with ``replace`` (the
token history is the one exception: column t is written in place, since no earlier state
is read again). Shapes: N particles, T decoded columns (grown by doubling), V tokens.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from powersmc_core.models.base import LanguageModel, start_run

__all__ = ["ParticleState"]


@dataclass(frozen=True)
class ParticleState:
    """Particles i = 1..N after t tokens: y_1:t, log W_i, log p(y_1:t), ancestry, model state.

    ``alpha`` is alpha_t (the exponent reached), ``live`` is False once the run has ended
    (steps decoded past the end change nothing), ``log_z`` is log Ẑ_t and ``forwards``
    counts particle-tokens forwarded (all three stay on the device as 0-d tensors, alpha
    excepted).
    """

    history: torch.Tensor  # (N, T) token ids, -1 where none
    log_w: torch.Tensor  # (N,) normalised log-weights
    log_p: torch.Tensor  # (N,) log p(y_1:t | x)
    finished: torch.Tensor  # (N,) bool: EOS or a stop rule reached
    roots: torch.Tensor  # (N,) the time-0 ancestor of each slot
    model_state: Any  # the backend's cache, one row per particle
    logp: torch.Tensor  # (N, V) next-token log-probs log p(. | x, y_1:t)
    alpha: float
    live: torch.Tensor  # 0-d bool
    log_z: torch.Tensor  # 0-d
    forwards: torch.Tensor  # 0-d long
    twist: torch.Tensor | None = None  # (N, V) log ζ̂ for the next token (look-ahead only)

    @classmethod
    def start(
        cls,
        model: LanguageModel,
        prompt: Sequence[int],
        n: int,
        alpha: float,
        dtype: torch.dtype,
        width: int,
        new_tokens: int,
    ) -> ParticleState:
        """N copies of the prompt, uniform weights 1/N, log p = 0, each particle its own root.

        ``width`` is the history's first width (it doubles when full); ``new_tokens`` the
        run's length (a backend may size its cache to it).
        """
        device = model.device
        model_state, logp = start_run(model, prompt, n, new_tokens)
        return cls(
            history=torch.full((n, width), -1, dtype=torch.long, device=device),
            log_w=torch.full((n,), -math.log(n), dtype=dtype, device=device),
            log_p=torch.zeros(n, dtype=dtype, device=device),
            finished=torch.zeros(n, dtype=torch.bool, device=device),
            roots=torch.arange(n, device=device),
            model_state=model_state,
            logp=logp,
            alpha=alpha,
            live=torch.ones((), dtype=torch.bool, device=device),
            log_z=torch.zeros((), dtype=dtype, device=device),
            forwards=torch.zeros((), dtype=torch.long, device=device),
        )

    def replace(self, **changes: Any) -> ParticleState:
        return dataclasses.replace(self, **changes)

    @property
    def n(self) -> int:
        return self.log_w.shape[0]

    def reorder(
        self,
        model: LanguageModel,
        ancestors: torch.Tensor,
        resampled: torch.Tensor,
        log_w: torch.Tensor,
        log_mass: torch.Tensor,
    ) -> ParticleState:
        """Slot j becomes a copy of slot ancestors[j]; where ``resampled``, the scheme's weights.

        There log W = ``log_w`` (the normalised post-resampling weights, 1/N for the
        equal-weight schemes) and log Ẑ += ``log_mass`` (log of their unnormalised sum,
        0 for those schemes). ancestors may be the identity (batched steps decide on the
        device): then this is a copy and the weights and log Ẑ are kept.
        """
        return self.replace(
            model_state=model.reorder(self.model_state, ancestors),
            logp=self.logp[ancestors],
            log_p=self.log_p[ancestors],
            finished=self.finished[ancestors],
            roots=self.roots[ancestors],
            history=self.history[ancestors],
            log_w=torch.where(resampled, log_w, self.log_w),
            log_z=self.log_z + torch.where(resampled, log_mass, 0.0),
            twist=None if self.twist is None else self.twist[ancestors],
        )
