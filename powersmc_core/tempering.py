"""Token-level quantities of the power target, vectorised over particles.

For a next-token distribution p (rows of ``logp``, shape (N, V)):
- tempered proposal  q_tau(v) ∝ p(v)^(1/tau)
- Rényi entropy      H_a(p) = log sum_v p(v)^a / (1 - a)   (Shannon at a = 1)
- with tau = 1/a the incremental weight p(v)^a / q(v) = sum_u p(u)^a does not
  depend on the sampled v:  log G = (1 - a)·H_a(p).
"""

from __future__ import annotations

import torch

__all__ = ["log_power_mass", "renyi_entropy", "sample_rows", "tempered_logprobs"]


def sample_rows(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of (n, V) probabilities: argmax_v p(v) / E_v with E_v ~ Exp(1).

    The exponential race picks v with probability p(v). It is what ``torch.multinomial``
    runs for one sample (same draws from the same generator), without its host-side
    validity check (``.item()``), which would synchronise an accelerator every token.
    """
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax(dim=-1)


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
