"""Everything about importance weights lives here.

All weight arithmetic is done on log-weights in float64 with log-sum-exp, so a
particle set whose weights span hundreds of nats never under- or overflows.

- normalised weights:  W_i = exp(l_i - logsumexp(l))
- effective sample size: ESS = 1 / sum_i W_i**2, in [1, N]
- reweighting by incremental weights G_i: W'_i ∝ W_i G_i; log sum_i W_i G_i is a factor of Ẑ
- conditional ESS (Zhou, Johansen & Aston 2016) of incremental weights G_i
  under current weights W_i:  CESS = N * (sum W_i G_i)**2 / sum W_i G_i**2
"""

from __future__ import annotations

import torch

__all__ = [
    "conditional_ess",
    "ess",
    "ess_tensor",
    "normalise_log_weights",
    "reweight",
]


def normalise_log_weights(log_weights: torch.Tensor) -> torch.Tensor:
    """Return log W_i = l_i - logsumexp(l), shape (N,).

    All -inf (every particle impossible) is a sampler failure, not a valid set:
    it raises instead of silently producing NaNs.
    """
    total = torch.logsumexp(log_weights, dim=-1, keepdim=True)
    if not torch.isfinite(total).all():
        raise FloatingPointError(
            "every particle has zero or non-finite weight; the model produced "
            "impossible tokens or NaN log-probabilities"
        )
    return log_weights - total


def ess_tensor(log_weights: torch.Tensor) -> torch.Tensor:
    """ESS = 1 / sum_i W_i**2 = exp(2 logsumexp(l) - logsumexp(2 l)), a 0-d tensor on l's device.

    Stays on the device (no host synchronisation); ``ess`` is its float.
    """
    return torch.exp(2 * torch.logsumexp(log_weights, -1) - torch.logsumexp(2 * log_weights, -1))


def ess(log_weights: torch.Tensor) -> float:
    """ESS = 1 / sum_i W_i**2 as a Python float (float64 arithmetic)."""
    return float(ess_tensor(log_weights.to(torch.float64)))


def conditional_ess(log_weights: torch.Tensor, log_increments: torch.Tensor) -> float:
    """CESS / N in (0, 1]: how much a reweighting by G would degrade the current set.

    CESS = (sum W_i G_i)**2 / sum W_i G_i**2 (already divided by N).
    """
    lw = normalise_log_weights(log_weights.to(torch.float64))
    lg = log_increments.to(torch.float64)
    num = 2 * torch.logsumexp(lw + lg, -1)
    den = torch.logsumexp(lw + 2 * lg, -1)
    return float(torch.exp(num - den))


def reweight(
    log_weights_normalised: torch.Tensor, log_increments: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log W'_i, log sum_i W_i G_i) with W'_i ∝ W_i G_i, both on the device (no host sync).

    log sum_i W_i G_i is one factor of the normalising-constant estimate Ẑ and also the
    new weights' normaliser. A non-finite factor means no particle is possible; the
    caller decides when to look (the sampler checks at its next host read).
    """
    log_mean = torch.logsumexp(log_weights_normalised + log_increments, -1)
    return log_weights_normalised + log_increments - log_mean, log_mean
