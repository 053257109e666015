"""The optimal prefix-only proposal and the Rényi identity (exact, per next-token row).

- Among q_tau ∝ p(.|prefix)^(1/tau), the incremental weight w(v) = p(v)^alpha / q_tau(v) has
  relative variance Var_q[w]/E_q[w]^2 with
  log(1 + Var/E^2) = log sum p^(2alpha - s) + log sum p^s - 2 log sum p^alpha,  s = 1/tau,
  strictly convex in s with zero slope at s = alpha: the unique minimum is tau = 1/alpha
  (unless p is uniform on its support, where every tau gives the same proposal).
- At tau = 1/alpha, log w = log sum_v p(v)^alpha = (1 - alpha)·H_alpha(p), whatever v was drawn,
  so across particles Var(log w) = (alpha - 1)^2 Var(H_alpha).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from powersmc_core.engine.records import StepRecord
from powersmc_core.engine.tempering import renyi_entropy, tempered_logprobs

__all__ = [
    "RenyiIdentity",
    "WeightVariance",
    "incremental_weight_variance",
    "renyi_identity",
    "renyi_identity_from_records",
]


@dataclass(frozen=True)
class WeightVariance:
    """Moments of w(v) = p(v)^alpha / q_tau(v), v ~ q_tau ∝ p^(1/tau), for rows × taus."""

    alpha: float
    taus: np.ndarray  # (K,)
    log_relative_variance: np.ndarray  # (R, K) log(Var_q[w] / E_q[w]^2); -inf where Var = 0
    log_weight_variance: np.ndarray  # (R, K) Var_q[log w] = (alpha - 1/tau)^2 Var_q[log p]
    grid_argmin: np.ndarray  # (R,) tau on the grid with the smallest relative variance
    tau_star: np.ndarray  # (R,) continuous minimiser (bisection in s = 1/tau); NaN if uniform
    uniform: np.ndarray  # (R,) bool: p uniform on its support (every tau is then optimal)

    @property
    def relative_variance(self) -> np.ndarray:
        """(R, K) Var_q[w] / E_q[w]^2 = chi^2(pi_loc || q_tau), pi_loc = p^alpha / sum p^alpha."""
        with np.errstate(over="ignore"):
            return np.exp(self.log_relative_variance)


def _as_rows(logp: torch.Tensor | np.ndarray) -> torch.Tensor:
    rows = torch.as_tensor(logp, dtype=torch.float64)
    return rows[None] if rows.ndim == 1 else rows


def _centred(logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p - max log p with impossible tokens set to 0, finite mask), both (R, V).

    Centring costs nothing (every quantity below is shift-invariant in log p) and keeps the
    top token's terms at 0, so confident rows do not lose their tails to rounding.
    """
    finite = torch.isfinite(logp)
    top = torch.where(finite, logp, -math.inf).max(-1, keepdim=True).values
    return torch.where(finite, logp - top, 0.0), finite


def _log_abs_expm1(x: torch.Tensor) -> torch.Tensor:
    """log|e^x - 1| without overflow or cancellation (-inf at x = 0)."""
    positive = x + torch.log(-torch.expm1(-x.clamp_min(0.0)))
    negative = torch.log(-torch.expm1(x.clamp_max(0.0)))
    return torch.where(x > 0, positive, negative)


def _moments(
    lp: torch.Tensor, finite: torch.Tensor, alpha: float, s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log chi^2(pi_loc || q_s), Var_{q_s}[log w]), each (R, K) for lp (R, V) and s (K,).

    q_s ∝ p^s, pi_loc ∝ p^alpha. chi^2 = sum_v q(v)·(pi(v)/q(v) - 1)^2 with
    log pi/q = (alpha - s)·log p - log sum p^alpha + log sum p^s: a sum of non-negative terms
    (no 1 + x - 1 cancellation), so relative variances far below float epsilon stay resolved.
    log w = (alpha - s)·log p + const under q, so Var_q[log w] = (alpha - s)^2 Var_q[log p].
    """
    neg = torch.tensor(-math.inf, dtype=torch.float64)
    lp3, fin3 = lp[:, None, :], finite[:, None, :]  # (R, 1, V)
    s3 = s[None, :, None]  # (1, K, 1)
    log_q = torch.log_softmax(torch.where(fin3, s3 * lp3, neg), -1)  # (R, K, V)
    log_pi = torch.log_softmax(torch.where(finite, alpha * lp, neg), -1)[:, None, :]
    ratio = torch.where(fin3, log_pi - log_q, 0.0)
    log_chi2 = torch.logsumexp(torch.where(fin3, log_q + 2 * _log_abs_expm1(ratio), neg), -1)
    q = log_q.exp()
    mean = (q * lp3).sum(-1, keepdim=True)
    var_logp = (q * (lp3 - mean) ** 2).sum(-1).clamp_min(0.0)
    return log_chi2, (alpha - s)[None, :] ** 2 * var_logp


def incremental_weight_variance(
    logp: torch.Tensor | np.ndarray,
    alpha: float,
    taus: Sequence[float] | np.ndarray,
    refine: bool = True,
) -> WeightVariance:
    """Exact Var_q[w]/E_q[w]^2 and Var_q[log w] of w = p^alpha/q_tau for each row and tau.

    logp: (V,) or (R, V) next-token log-probs. E_q[w] = sum_v p(v)^alpha for every tau, so the
    relative variance ranks proposals. With s = 1/tau,
        log(1 + Var/E^2) = log sum p^(2alpha - s) + log sum p^s - 2 log sum p^alpha,
    a sum of log-sum-exps of functions linear in s: convex, strictly unless log p is constant
    on the support, with derivative E_{p^s}[log p] - E_{p^(2alpha-s)}[log p] = 0 at s = alpha.
    Hence tau = 1/alpha is the unique minimiser, where w is constant and Var = 0.
    """
    rows = _as_rows(logp)
    grid = torch.as_tensor(np.asarray(taus, dtype=np.float64))
    lp, finite = _centred(rows)
    # Rows in chunks so the (rows, K, V) tensors stay ~4M entries even for V = 49k.
    chunk = max(1, 2**22 // max(1, grid.numel() * rows.shape[1]))
    log_chi2, log_var = [], []
    for start in range(0, rows.shape[0], chunk):
        part, fin = lp[start : start + chunk], finite[start : start + chunk]
        chi2_part, var_part = _moments(part, fin, alpha, 1.0 / grid)
        log_chi2.append(chi2_part)
        log_var.append(var_part)
    log_rel = torch.cat(log_chi2)  # (R, K)
    support = rows.masked_fill(~finite, math.nan).numpy()
    uniform = (np.nanmax(support, 1) - np.nanmin(support, 1)) <= 1e-12
    grid_np = grid.numpy()
    tau_star = np.full(rows.shape[0], math.nan)
    if refine:
        tau_star = _minimiser(lp, finite, alpha, grid_np, uniform)
    return WeightVariance(
        alpha=float(alpha),
        taus=grid_np,
        log_relative_variance=log_rel.numpy(),
        log_weight_variance=torch.cat(log_var).numpy(),
        grid_argmin=grid_np[log_rel.argmin(1).numpy()],
        tau_star=tau_star,
        uniform=uniform,
    )


def _minimiser(
    lp: torch.Tensor,
    finite: torch.Tensor,
    alpha: float,
    grid: np.ndarray,
    uniform: np.ndarray,
    iterations: int = 64,
) -> np.ndarray:
    """Minimiser tau of the relative variance over the grid's range, per row, by bisection in s.

    log(1 + chi^2) is convex in s = 1/tau with slope sum_v (r_s(v) - r_(2alpha-s)(v))·log p(v),
    r_a ∝ p^a, which increases with s: bisect on its sign (nothing assumes where it vanishes).
    The difference r_s - r_b is formed as r_s·(1 - r_b/r_s) from log-ratios, and log p is
    centred at its maximum, so confident rows keep the slope's sign above rounding.
    """
    neg = torch.tensor(-math.inf, dtype=torch.float64)

    def slope(s: torch.Tensor) -> torch.Tensor:  # s: (R,)
        log_rs = torch.log_softmax(torch.where(finite, s[:, None] * lp, neg), -1)
        log_rb = torch.log_softmax(torch.where(finite, (2 * alpha - s)[:, None] * lp, neg), -1)
        diff = -log_rs.exp() * torch.expm1(torch.where(finite, log_rb - log_rs, 0.0))
        return (torch.where(finite, diff, 0.0) * lp).sum(-1)

    n = lp.shape[0]
    low = torch.full((n,), 1.0 / float(grid.max()), dtype=torch.float64)
    high = torch.full((n,), 1.0 / float(grid.min()), dtype=torch.float64)
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        rising = slope(middle) > 0
        high = torch.where(rising, middle, high)
        low = torch.where(rising, low, middle)
    out = (1.0 / (0.5 * (low + high))).numpy()
    out[uniform] = math.nan
    return out


@dataclass(frozen=True)
class RenyiIdentity:
    """log w at tau = 1/alpha for sampled tokens vs (1 - alpha)·H_alpha of the same row."""

    alpha: float
    log_weight: np.ndarray  # (R, D) alpha·log p(v) - log q(v) for D draws per row
    renyi_term: np.ndarray  # (R,) (1 - alpha)·H_alpha(p)
    max_abs_error: float  # max |log w - (1 - alpha) H_alpha| over rows and draws
    variance_log_weight: float  # across rows (one draw each): Var_i log w_i
    variance_predicted: float  # (alpha - 1)^2 Var_i H_alpha(p_i)


def renyi_identity(
    logp: torch.Tensor | np.ndarray, alpha: float, draws: int = 8, seed: int = 0
) -> RenyiIdentity:
    """Draw tokens from q = softmax(alpha·log p) per row and compare log w with (1-alpha)·H_alpha.

    log w(v) = alpha·log p(v) - [alpha·log p(v) - log sum_u p(u)^alpha] = log sum_u p(u)^alpha
             = (1 - alpha)·H_alpha(p): the same for every v, hence Var_i log w_i =
    (alpha - 1)^2 Var_i H_alpha(p_i) across particles whose prefixes differ.
    """
    rows = _as_rows(logp)
    logq = tempered_logprobs(rows, 1.0 / alpha)  # (R, V)
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.multinomial(logq.exp(), draws, replacement=True, generator=generator)  # (R, D)
    log_w = alpha * rows.gather(1, tokens) - logq.gather(1, tokens)
    term = (1.0 - alpha) * renyi_entropy(rows, alpha)  # (R,)
    error = float((log_w - term[:, None]).abs().max())
    first = log_w[:, 0]
    ddof = 1 if rows.shape[0] > 1 else 0
    return RenyiIdentity(
        alpha=float(alpha),
        log_weight=log_w.numpy(),
        renyi_term=term.numpy(),
        max_abs_error=error,
        variance_log_weight=float(first.var(correction=ddof)),
        variance_predicted=float(
            (alpha - 1.0) ** 2 * renyi_entropy(rows, alpha).var(correction=ddof)
        ),
    )


def renyi_identity_from_records(records: Sequence[StepRecord]) -> pd.DataFrame:
    """Per step of a run with tau_t = 1/alpha_t and no bridging step (alpha_t = alpha_{t-1}):
    compare the recorded log increments with (1 - alpha_t)·H_alpha_t of each particle's prefix.

    Columns: step, alpha, n_active, var_log_increment, predicted_variance
    ((alpha - 1)^2 Var_i H_alpha), max_abs_error. Steps whose exponent moved or that carry a
    catch-up factor are skipped (their increments also hold (Δalpha)·log p(prefix)).
    """
    rows = []
    previous = None
    for rec in records:
        # At t = 1 the bridging term is (alpha_1 - alpha_start)·log p(empty prefix) = 0.
        moved = previous is not None and rec.alpha != previous
        previous = rec.alpha
        if moved or rec.catch_up != 0.0 or abs(rec.tau * rec.alpha - 1.0) > 1e-12:
            continue
        renyi = np.asarray(rec.renyi, dtype=np.float64)
        active = ~np.isnan(renyi)
        if active.sum() < 2:
            continue
        inc = np.asarray(rec.log_increment, dtype=np.float64)[active]
        term = (1.0 - rec.alpha) * renyi[active]
        rows.append(
            {
                "step": rec.step,
                "alpha": rec.alpha,
                "n_active": int(active.sum()),
                "var_log_increment": float(inc.var(ddof=1)),
                "predicted_variance": float((rec.alpha - 1.0) ** 2 * renyi[active].var(ddof=1)),
                "max_abs_error": float(np.abs(inc - term).max()),
            }
        )
    return pd.DataFrame(rows)
