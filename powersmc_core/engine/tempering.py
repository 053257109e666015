"""Token-level quantities of the power target, vectorised over particles.

For a next-token distribution p (rows of ``logp``, shape (N, V)):
- tempered proposal  q_tau(v) ∝ p(v)^(1/tau)
- Rényi entropy      H_a(p) = log sum_v p(v)^a / (1 - a)   (Shannon at a = 1)
- with tau = 1/a the incremental weight p(v)^a / q(v) = sum_u p(u)^a does not
  depend on the sampled v:  log G = (1 - a)·H_a(p).
"""

from __future__ import annotations

import torch

from powersmc_core.models.device import weight_dtype

__all__ = ["draw_rows", "log_power_mass", "renyi_entropy", "sample_rows", "tempered_logprobs"]


def draw_rows(probs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw per row of (n, V) unnormalised probabilities, and each row's total mass.

    Inverse CDF: v = min{v : C(v) > U·C(V)}, C the running sum, U ~ Uniform[0, 1); the
    total C(V) comes for free. One uniform per row: an order of magnitude cheaper on CPU
    than the exponential race of ``torch.multinomial`` (V random numbers per row), and no
    host-side check (``.item()``), which would synchronise an accelerator every token.
    """
    # float64 running sums (where the device has it): over 49k float32 terms the rounding
    # would shift mass.
    wide = weight_dtype(probs.device)
    cdf = probs.to(wide).cumsum(dim=-1)  # (n, V)
    total = cdf[:, -1:]  # (n, 1)
    u = torch.rand(total.shape, dtype=wide, device=probs.device, generator=generator)
    drawn = torch.searchsorted(cdf, u * total, right=True)  # first v with C(v) > U·C(V)
    # U·C(V) can round up to C(V) itself; the last token with mass is then the answer.
    last = torch.searchsorted(cdf, total.contiguous(), right=False)
    return torch.minimum(drawn, last).squeeze(-1), total.squeeze(-1)


def sample_rows(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of (n, V) unnormalised probabilities (``draw_rows`` without the mass)."""
    return draw_rows(probs, generator)[0]


def tempered_logprobs(logp: torch.Tensor, tau: float) -> torch.Tensor:
    """log q_tau(v) = log_softmax(log p(v) / tau), shape as ``logp``."""
    return torch.log_softmax(logp / tau, dim=-1)


def log_power_mass(logp: torch.Tensor, a: float) -> torch.Tensor:
    """log sum_v p(v)^a, shape (N,): the optimal proposal's log incremental weight."""
    return torch.logsumexp(a * logp, dim=-1)


def renyi_entropy(logp: torch.Tensor, a: float) -> torch.Tensor:
    """H_a(p) in nats, shape (N,); a = 1 gives the Shannon entropy (its limit)."""
    if abs(a - 1.0) < 1e-12:
        p = logp.exp()
        # 0·log 0 = 0: impossible tokens contribute nothing (not NaN).
        return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)
    return log_power_mass(logp, a) / (1.0 - a)
