"""Proposals: how each particle draws its next token, y_t ~ q_t(. | y_<t), and log q_t(y_t).

- ``TemperedProposal``: q ∝ p^(1/tau), tau fixed or 1/alpha_t from the schedule (the
  locally optimal proposal for the power target gamma_t ∝ p^alpha_t).
  log q(y) = log p(y)/tau − log M,  M = sum_v p(v)^(1/tau).
- ``ArgmaxProposal``: the tau -> 0 limit, a point mass on argmax_v p(v) (ties to the
  lowest id); log q = 0. It scores nothing, so a run with it estimates no Ẑ.

Each draw is one O(N·V) pass over the (N, V) log-probs, vectorised over particles; no
value is read back to the host (a NaN row is reported through ``Draw.ok``). Room for
other proposals (look-ahead, twisted) is the ``Proposal`` protocol.
"""

from __future__ import annotations

from typing import Protocol

import torch

from powersmc_core.engine.staging import Draw
from powersmc_core.engine.tempering import draw_rows
from powersmc_core.models.device import weight_dtype

__all__ = ["ArgmaxProposal", "Proposal", "TemperedProposal"]


class Proposal(Protocol):
    """Draws y_t for every active row; ``point_mass`` proposals estimate no Ẑ or ESS."""

    point_mass: bool

    def temperature(self, alpha_t: float) -> float:
        """tau_t of q_t ∝ p^(1/tau_t) (0 for the argmax), recorded with each step."""
        ...

    def draw(
        self, logp: torch.Tensor, active: torch.Tensor, tau: float, generator: torch.Generator
    ) -> Draw:
        """y (N,) (-1 for finished rows), log p(y), log q(y), log M and a 0-d ``ok``."""
        ...


class TemperedProposal:
    """q_tau ∝ p^(1/tau); ``tau=None`` follows the schedule: tau_t = 1/alpha_t."""

    point_mass = False

    def __init__(self, tau: float | None = None) -> None:
        self.tau = tau

    def temperature(self, alpha_t: float) -> float:
        return 1.0 / alpha_t if self.tau is None else self.tau

    def draw(
        self, logp: torch.Tensor, active: torch.Tensor, tau: float, generator: torch.Generator
    ) -> Draw:
        """y ~ q_tau per row by inverse CDF; log q(y) = log p(y)/tau − log M.

        M = sum_v p(v)^(1/tau) is the total the draw's running sum ends on (shifted by the
        row maximum): no normalised q is built; ``logp`` is left as it is.
        """
        wdtype = weight_dtype(logp.device)
        # In place on one (N, V) buffer: each fresh CPU tensor of this size costs page faults.
        unnorm = logp * (1.0 / tau)  # log p / tau
        top = unnorm.amax(dim=-1, keepdim=True)  # (N, 1); NaN when the row holds a NaN
        unnorm.sub_(top).exp_()  # p^(1/tau) / max_v p(v)^(1/tau)
        # A NaN or a row with no possible token makes top or the mass non-finite; such a
        # row would break the draw, so every row is made uniform and ``ok`` reports it.
        ok = torch.isfinite(top).all()
        unnorm.masked_fill_(~ok, 1.0)
        tokens, mass = draw_rows(unnorm, generator)  # (N,) each
        log_mass = top.squeeze(-1).to(mass.dtype) + mass.log()  # (N,) log sum_v p^(1/tau)
        lp = logp.gather(1, tokens[:, None]).squeeze(1)
        lq_token = (lp * (1.0 / tau)).to(wdtype) - log_mass.to(wdtype)
        return Draw(torch.where(active, tokens, -1), lp.to(wdtype), lq_token, log_mass, ok)


class ArgmaxProposal:
    """The point mass on argmax_v p(v | y_<t): greedy decoding (log q = 0)."""

    point_mass = True

    def temperature(self, alpha_t: float) -> float:
        return 0.0  # the records say which limit of q_tau this is

    def draw(
        self, logp: torch.Tensor, active: torch.Tensor, tau: float, generator: torch.Generator
    ) -> Draw:
        """y = argmax_v log p(v) per row (-1 if finished); log q(y) = 0; nothing random."""
        # log sum_v p(v) is NaN when a row is: the same finiteness check as every draw.
        log_mass = torch.logsumexp(logp, dim=-1)  # (N,)
        ok = torch.isfinite(log_mass).all()
        tokens = torch.argmax(logp, dim=-1)  # (N,) the first maximum: ties to the lowest id
        lp_token = logp.gather(1, tokens[:, None]).squeeze(1).to(weight_dtype(logp.device))
        lq_token = torch.zeros_like(lp_token)
        return Draw(torch.where(active, tokens, -1), lp_token, lq_token, log_mass, ok)
