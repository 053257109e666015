"""The paper's claims as computations: exact by enumeration, or Monte Carlo with error bars.

Shared by the notebooks under ``notebooks/`` and the app's Theory lab page, so both show
the same numbers. Everything here is a pure function of (model, settings, seed).

- Power is not temperature: pi_alpha(y) ∝ p(y)^alpha differs from token-level sampling at
  T = 1/alpha, q(y) = prod_t p(y_t|y_<t)^alpha / sum_v p(v|y_<t)^alpha (``power_vs_temperature``).
- Optimal proposal: among q_tau ∝ p(.|prefix)^(1/tau), the incremental weight
  w(v) = p(v)^alpha / q_tau(v) has relative variance Var_q[w]/E_q[w]^2 with
  log(1 + Var/E^2) = log sum p^(2alpha - s) + log sum p^s - 2 log sum p^alpha,  s = 1/tau,
  strictly convex in s with zero slope at s = alpha: the unique minimum is tau = 1/alpha
  (unless p is uniform on its support, where every tau gives the same proposal).
- At tau = 1/alpha, log w = log sum_v p(v)^alpha = (1 - alpha)·H_alpha(p), whatever v was drawn,
  so across particles Var(log w) = (alpha - 1)^2 Var(H_alpha).
- SMC's weighted particle set converges to pi_alpha (TV ~ N^(-1/2)) for every schedule;
  exp(log Ẑ) is unbiased for Z_alpha = sum_y p(y)^alpha.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from .baselines import MHPowerSampler, TemperatureSampling
from .config import SMCConfig
from .exact import (
    SequenceTable,
    TemperatureLaws,
    enumerate_sequences,
    exact_log_z,
    power_distribution,
    temperature_distribution,
    total_variation,
    weighted_distribution,
)
from .models.base import LanguageModel
from .records import StepRecord
from .sampler import PowerSMC
from .tempering import renyi_entropy, tempered_logprobs

__all__ = [
    "PowerComparison",
    "RenyiIdentity",
    "SMCEstimate",
    "WeightVariance",
    "ZhatCheck",
    "empirical_tv_floor",
    "ess_traces",
    "fit_loglog_slope",
    "incremental_weight_variance",
    "mh_vs_smc",
    "next_token_rows",
    "power_vs_temperature",
    "renyi_diagnostics",
    "renyi_identity",
    "renyi_identity_from_records",
    "resampling_counts",
    "smc_estimate",
    "tv_curves",
    "tv_vs_n",
    "zhat_unbiasedness",
]


# ---------------------------------------------------------------------------------------
# 1. Power distribution vs token-level temperature (exact, by enumeration)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerComparison:
    """p, exact pi_alpha and exact token-level temperature 1/alpha over every sequence."""

    alpha: float
    labels: list[str]  # decoded sequences (EOS excluded)
    p: np.ndarray  # (S,) p(y|x)
    pi_alpha: np.ndarray  # (S,) p(y)^alpha / Z_alpha
    token_temperature: np.ndarray  # (S,) prod_t softmax(alpha·log p(.|y_<t))[y_t]
    tv_power_vs_temperature: float
    tv_power_vs_p: float
    tv_temperature_vs_p: float
    log_z: float  # log Z_alpha = log sum_y p(y)^alpha

    def frame(self) -> pd.DataFrame:
        """One row per sequence, sorted by pi_alpha (largest first)."""
        df = pd.DataFrame(
            {
                "sequence": self.labels,
                "p": self.p,
                "pi_alpha": self.pi_alpha,
                "token_temperature": self.token_temperature,
            }
        )
        return df.sort_values("pi_alpha", ascending=False, ignore_index=True)


def _standard_error(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of the mean, sd(ddof=1)/sqrt(n); NaN below two values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return math.nan
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def _labels(model: LanguageModel, table: SequenceTable) -> list[str]:
    texts = model.decode_batch([list(s) for s in table.sequences])
    return [t if t else "(empty)" for t in texts]


def power_vs_temperature(
    model: LanguageModel,
    alpha: float,
    prompt: Sequence[int] = (),
    table: SequenceTable | None = None,
) -> PowerComparison:
    """Exact p, pi_alpha ∝ p^alpha and token-level temperature T = 1/alpha, with their TVs."""
    table = table if table is not None else enumerate_sequences(model, prompt)
    p = table.log_p.exp()
    pi = power_distribution(table, alpha)
    temp = temperature_distribution(table, 1.0 / alpha)
    return PowerComparison(
        alpha=float(alpha),
        labels=_labels(model, table),
        p=p.numpy(),
        pi_alpha=pi.numpy(),
        token_temperature=temp.numpy(),
        tv_power_vs_temperature=total_variation(pi, temp),
        tv_power_vs_p=total_variation(pi, p),
        tv_temperature_vs_p=total_variation(temp, p),
        log_z=exact_log_z(table, alpha),
    )


def tv_curves(
    model: LanguageModel,
    alphas: Iterable[float],
    prompt: Sequence[int] = (),
    table: SequenceTable | None = None,
) -> pd.DataFrame:
    """Exact TVs as alpha grows: columns alpha, tv_power_vs_temperature, tv_power_vs_p,
    tv_temperature_vs_p (temperature = 1/alpha). One enumeration serves every alpha."""
    table = table if table is not None else enumerate_sequences(model, prompt)
    steps = TemperatureLaws(table)
    p = table.log_p.exp()
    rows = []
    for alpha in alphas:
        pi = power_distribution(table, alpha)
        temp = steps.temperature(1.0 / alpha)
        rows.append(
            {
                "alpha": float(alpha),
                "tv_power_vs_temperature": total_variation(pi, temp),
                "tv_power_vs_p": total_variation(pi, p),
                "tv_temperature_vs_p": total_variation(temp, p),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# 2. The optimal prefix-only proposal and the Rényi identity (exact, per next-token row)
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# 3. Power-SMC against the exact target (Monte Carlo over independent seeded runs)
# ---------------------------------------------------------------------------------------
def _max_new_tokens(model: LanguageModel, prompt: Sequence[int], max_new_tokens: int | None) -> int:
    if max_new_tokens is not None:
        return max_new_tokens
    max_len = getattr(model, "max_len", None)
    if max_len is None:
        raise ValueError("max_new_tokens is required for a model without max_len")
    return max(1, max_len - len(prompt))


@dataclass(frozen=True)
class SMCEstimate:
    """Weighted particle estimates of pi_alpha from ``runs`` independent runs (seeds seed+r)."""

    exact: np.ndarray  # (S,) pi_alpha
    estimate: np.ndarray  # (S,) average over runs of sum_i W_i δ_{y_i}
    estimate_stderr: np.ndarray  # (S,) standard error of ``estimate`` (sd over runs / sqrt(runs))
    run_tv: np.ndarray  # (runs,) TV(single-run weighted estimate, pi_alpha)
    log_z: np.ndarray  # (runs,) log Ẑ of each run
    exact_log_z: float
    n_resamples: np.ndarray  # (runs,)
    token_forwards: np.ndarray  # (runs,)

    @property
    def tv(self) -> float:
        """TV of the run-averaged estimate (the law of the sample SMC returns) to pi_alpha."""
        return 0.5 * float(np.abs(self.estimate - self.exact).sum())

    def bias_z(self) -> np.ndarray:
        """(estimate - exact) / stderr per sequence, over sequences some run visited (s.e. > 0).

        Under consistency |z| stays O(1) for the Rao-Blackwellised average; a biased sampler
        (e.g. token-level temperature on the trap) gives |z| in the tens.
        """
        seen = self.estimate_stderr > 0
        return (self.estimate[seen] - self.exact[seen]) / self.estimate_stderr[seen]

    @property
    def mean_run_tv(self) -> float:
        return float(self.run_tv.mean())

    @property
    def stderr_run_tv(self) -> float:
        return _standard_error(self.run_tv)


def smc_estimate(
    model: LanguageModel,
    config: SMCConfig,
    runs: int,
    prompt: Sequence[int] = (),
    table: SequenceTable | None = None,
    method: str = "smc",
) -> SMCEstimate:
    """Run Power-SMC ``runs`` times (seeds config.seed + r) and score each weighted particle set.

    A single run's estimate sum_i W_i δ_{y_i} is consistent (TV -> 0 as N grows); its average
    over runs is the law of the sample SMC returns (the chosen particle is drawn ∝ W).
    method="lowtemp" scores the control instead: N token-level samples at T = 1/alpha with
    uniform weights, which converge to the wrong law.
    """
    if method not in ("smc", "lowtemp"):
        raise ValueError(f"method must be 'smc' or 'lowtemp', got {method!r}")
    table = table if table is not None else enumerate_sequences(model, prompt)
    exact = power_distribution(table, config.alpha)
    estimates = []
    run_tv, log_z, resamples, forwards = [], [], [], []
    for r in range(runs):
        cfg = replace(config, seed=config.seed + r)
        if method == "smc":
            sampler = PowerSMC(model, cfg, track_text=False)
        else:
            sampler = TemperatureSampling(
                model,
                1.0 / cfg.alpha,
                cfg.n_particles,
                cfg.max_new_tokens,
                cfg.seed,
                track_text=False,
            )
        result = sampler.run(prompt)
        est = weighted_distribution(table, result.completions, result.weights)
        estimates.append(est)
        run_tv.append(total_variation(est, exact))
        log_z.append(result.log_z)
        resamples.append(result.n_resamples)
        forwards.append(result.extras["token_forwards"])
    stacked = torch.stack(estimates).numpy()  # (runs, S)
    stderr = stacked.std(0, ddof=1) / math.sqrt(runs) if runs > 1 else np.zeros(stacked.shape[1])
    return SMCEstimate(
        exact=exact.numpy(),
        estimate=stacked.mean(0),
        estimate_stderr=stderr,
        run_tv=np.asarray(run_tv),
        log_z=np.asarray(log_z),
        exact_log_z=exact_log_z(table, config.alpha),
        n_resamples=np.asarray(resamples),
        token_forwards=np.asarray(forwards),
    )


def tv_vs_n(
    model: LanguageModel,
    alpha: float,
    n_values: Iterable[int],
    runs: int,
    schedule: str = "constant",
    prompt: Sequence[int] = (),
    seed: int = 0,
    table: SequenceTable | None = None,
    method: str = "smc",
    **config_kwargs,
) -> pd.DataFrame:
    """Mean TV(single-run weighted estimate, pi_alpha) over ``runs`` runs for each N.

    Columns: method, schedule, n_particles, mean_tv, stderr (sample std / sqrt(runs)),
    tv_of_mean, max_abs_bias_z (see ``SMCEstimate.bias_z``). method="lowtemp" is the control.
    Consistency at the Monte-Carlo rate shows as a slope of about -1/2 on log-log axes.
    """
    table = table if table is not None else enumerate_sequences(model, prompt)
    max_new = _max_new_tokens(model, prompt, config_kwargs.pop("max_new_tokens", None))
    rows = []
    for n in n_values:
        cfg = SMCConfig(
            alpha=alpha,
            n_particles=int(n),
            schedule=schedule,
            max_new_tokens=max_new,
            seed=seed,
            **config_kwargs,
        )
        est = smc_estimate(model, cfg, runs, prompt, table, method=method)
        rows.append(
            {
                "method": method,
                "schedule": schedule,
                "n_particles": int(n),
                "mean_tv": est.mean_run_tv,
                "stderr": est.stderr_run_tv,
                "tv_of_mean": est.tv,
                "max_abs_bias_z": float(np.abs(est.bias_z()).max()),
            }
        )
    return pd.DataFrame(rows)


def fit_loglog_slope(
    x: Sequence[float], y: Sequence[float], yerr: Sequence[float] | None = None
) -> tuple[float, float, float]:
    """Fit log y = a + b·log x; returns (b, a, standard error of b).

    With ``yerr`` (standard errors of y) the fit is weighted by 1/sd(log y)^2, sd(log y) ≈ yerr/y,
    and the slope's error follows from those known variances; without, from the residuals.
    """
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    design = np.stack([np.ones_like(lx), lx], 1)
    if yerr is not None:
        sd = np.asarray(yerr, dtype=float) / np.asarray(y, dtype=float)
        weights = 1.0 / sd**2
        normal = design.T @ (weights[:, None] * design)
        coef = np.linalg.solve(normal, design.T @ (weights * ly))
        cov = np.linalg.inv(normal)
    else:
        coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
        resid = ly - design @ coef
        sigma2 = float(resid @ resid) / max(1, len(lx) - 2)
        cov = sigma2 * np.linalg.inv(design.T @ design)
    return float(coef[1]), float(coef[0]), float(math.sqrt(cov[1, 1]))


def ess_traces(
    model: LanguageModel,
    alpha: float,
    schedules: Iterable[str] = ("constant", "linear", "adaptive"),
    runs: int = 20,
    prompt: Sequence[int] = (),
    seed: int = 0,
    **config_kwargs,
) -> pd.DataFrame:
    """ESS/N before resampling at every step of ``runs`` runs per schedule (records' ESS).

    Long format: schedule, run, step, ess_fraction, alpha_t, resampled.
    """
    max_new = _max_new_tokens(model, prompt, config_kwargs.pop("max_new_tokens", None))
    rows = []
    for schedule in schedules:
        for r in range(runs):
            cfg = SMCConfig(
                alpha=alpha,
                schedule=schedule,
                max_new_tokens=max_new,
                seed=seed + r,
                **config_kwargs,
            )
            for rec in PowerSMC(model, cfg, track_text=False).stream(prompt):
                rows.append(
                    {
                        "schedule": schedule,
                        "run": r,
                        "step": rec.step,
                        "ess_fraction": rec.ess / rec.n_particles,
                        "alpha_t": rec.alpha,
                        "resampled": rec.resampled,
                    }
                )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ZhatCheck:
    """exp(log Ẑ) over independent runs against the exact Z_alpha = sum_y p(y)^alpha."""

    z_hat: np.ndarray  # (runs,) exp(log Ẑ)
    exact_z: float

    @property
    def ratio(self) -> float:
        """mean Ẑ / Z (1 for an unbiased estimator)."""
        return float(self.z_hat.mean() / self.exact_z)

    @property
    def ratio_stderr(self) -> float:
        return _standard_error(self.z_hat) / self.exact_z

    @property
    def z_score(self) -> float:
        """(mean Ẑ - Z) / standard error: |z| beyond 4 or so would reject unbiasedness."""
        return (self.ratio - 1.0) / self.ratio_stderr

    @property
    def mean_log_ratio(self) -> float:
        """mean log Ẑ - log Z: negative (Jensen) even though Ẑ itself is unbiased."""
        return float(np.log(self.z_hat).mean() - math.log(self.exact_z))

    @property
    def log_ratio_stderr(self) -> float:
        return _standard_error(np.log(self.z_hat))


def zhat_unbiasedness(
    model: LanguageModel,
    config: SMCConfig,
    runs: int,
    prompt: Sequence[int] = (),
    table: SequenceTable | None = None,
) -> ZhatCheck:
    """Ẑ = prod_t sum_i W_i G_i from ``runs`` runs (seeds config.seed + r); E[Ẑ] = Z_alpha.

    Exact for fixed resampling times (kappa = 0 or 1) and a fixed schedule; ESS-triggered
    resampling and the adaptive schedule add an O(1/N) bias that is far below the error bar here.
    """
    table = table if table is not None else enumerate_sequences(model, prompt)
    z_hat = []
    for r in range(runs):
        result = PowerSMC(model, replace(config, seed=config.seed + r), track_text=False).run(
            prompt
        )
        z_hat.append(math.exp(result.log_z))
    return ZhatCheck(z_hat=np.asarray(z_hat), exact_z=math.exp(exact_log_z(table, config.alpha)))


def empirical_tv_floor(
    pi: np.ndarray | torch.Tensor, n_samples: int, reps: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Mean and sd of TV(histogram of n_samples exact draws from pi, pi): the Monte-Carlo floor
    any sampler's histogram TV sits on even when its law is exactly pi."""
    pi = np.asarray(pi, dtype=np.float64)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_samples, pi / pi.sum(), size=reps)  # (reps, S)
    tvs = 0.5 * np.abs(counts / n_samples - pi[None]).sum(1)
    return float(tvs.mean()), float(tvs.std(ddof=1))


def mh_vs_smc(
    model: LanguageModel,
    alpha: float,
    mh_steps: Iterable[int] = (0, 1, 2, 4, 8),
    n_particles: Iterable[int] = (1, 2, 4, 8, 16),
    runs: int = 300,
    prompt: Sequence[int] = (),
    seed: int = 0,
    max_new_tokens: int | None = None,
    table: SequenceTable | None = None,
) -> pd.DataFrame:
    """Cost vs accuracy of the one sample each method returns, over ``runs`` seeded runs.

    MH power sampling (K MH steps per block) and Power-SMC (N particles, the returned sample
    drawn ∝ W). Columns: method, budget (K or N), token_forwards (mean per returned sample),
    tv (TV of the histogram of the returned samples to pi_alpha), tv_floor and tv_floor_sd
    (the same statistic for ``runs`` exact draws), stderr_forwards.
    """
    table = table if table is not None else enumerate_sequences(model, prompt)
    max_new = _max_new_tokens(model, prompt, max_new_tokens)
    exact = power_distribution(table, alpha)
    floor, floor_sd = empirical_tv_floor(exact.numpy(), runs, seed=seed)

    def score(method: str, budget: int, samples: list[list[int]], forwards: list[int]) -> dict:
        hist = weighted_distribution(table, samples, [1.0 / len(samples)] * len(samples))
        return {
            "method": method,
            "budget": budget,
            "token_forwards": float(np.mean(forwards)),
            "stderr_forwards": _standard_error(forwards),
            "tv": total_variation(hist, exact),
            "tv_floor": floor,
            "tv_floor_sd": floor_sd,
        }

    rows = []
    for k in mh_steps:
        samples, forwards = [], []
        for r in range(runs):
            mh = MHPowerSampler(
                model, alpha=alpha, max_new_tokens=max_new, mh_steps=int(k), seed=seed + r
            )
            result = mh.run(prompt)
            samples.append(result.completions[0])
            forwards.append(result.extras["token_forwards"])
        rows.append(score("mh", int(k), samples, forwards))
    for n in n_particles:
        samples, forwards = [], []
        for r in range(runs):
            cfg = SMCConfig(alpha=alpha, n_particles=int(n), max_new_tokens=max_new, seed=seed + r)
            result = PowerSMC(model, cfg, track_text=False).run(prompt)
            samples.append(result.chosen_completion)
            forwards.append(result.extras["token_forwards"])
        rows.append(score("smc", int(n), samples, forwards))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# 4. Diagnostics on a real model: Rényi entropies along completions and ESS drops
# ---------------------------------------------------------------------------------------
def next_token_rows(
    model: LanguageModel, prompt: Sequence[int], n_tokens: int, seed: int = 0
) -> torch.Tensor:
    """Next-token log-prob rows (n, V), float64, along one continuation sampled at T = 1.

    Real next-token distributions for the optimal-proposal sweep; stops early at EOS.
    """
    generator = torch.Generator().manual_seed(seed)
    state, logp = model.start(list(prompt), 1)
    rows = []
    one = torch.ones(1, dtype=torch.bool, device=model.device)
    eos = set(model.eos_token_ids)
    for _ in range(n_tokens):
        row = logp[0].to(torch.float64).cpu()
        rows.append(row)
        token = int(torch.multinomial(row.exp(), 1, generator=generator))
        if token in eos:
            break
        state, logp = model.advance(state, torch.tensor([token], device=model.device), one)
    return torch.stack(rows)


def renyi_diagnostics(records: Sequence[StepRecord]) -> pd.DataFrame:
    """Per step: the spread of H_alpha_t(p(.|prefix_i)) across particles and the ESS drop.

    Columns: step, alpha_t, n_active, ess_fraction, resampled, renyi_mean, renyi_std,
    renyi_wstd (std of H under the weights W_{t-1} the step started from), log_inc_wstd,
    ess_drop = log(ESS_t / ESS_{t-1}^+) (ESS^+ after resampling: N if it happened).
    With tau = 1/alpha and no bridging step log G_i = (1 - alpha)·H_alpha,i, so the ESS drop is
    governed by (alpha - 1)^2 Var_W(H_alpha): -log(ESS_t/ESS_{t-1}) ≈ that for small spreads.
    """
    rows = []
    ess_post = None
    for rec in records:
        n = rec.n_particles
        renyi = np.asarray(rec.renyi, dtype=np.float64)
        inc = np.asarray(rec.log_increment, dtype=np.float64)
        active = ~np.isnan(renyi)
        # W_{t-1} ∝ exp(log W_t - log G_t): the record holds both.
        prior = np.asarray(rec.log_weights, dtype=np.float64) - inc
        prior = np.exp(prior - prior.max())
        prior /= prior.sum()
        wa = prior[active] / prior[active].sum() if active.any() else prior[active]
        h = renyi[active]
        before = n if ess_post is None else ess_post
        rows.append(
            {
                "step": rec.step,
                "alpha_t": rec.alpha,
                "n_active": int(active.sum()),
                "ess_fraction": rec.ess / n,
                "resampled": rec.resampled,
                "renyi_mean": float(h.mean()) if h.size else math.nan,
                "renyi_std": float(h.std()) if h.size else math.nan,
                "renyi_wstd": float(np.sqrt(wa @ (h - wa @ h) ** 2)) if h.size else math.nan,
                "log_inc_wstd": float(np.sqrt(prior @ (inc - prior @ inc) ** 2)),
                "ess_drop": math.log(rec.ess / before),
            }
        )
        ess_post = float(n) if rec.resampled else rec.ess
    return pd.DataFrame(rows)


def resampling_counts(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    alpha: float,
    schedules: Iterable[str] = ("constant", "linear", "adaptive"),
    seeds: Iterable[int] = (0,),
    **config_kwargs,
) -> pd.DataFrame:
    """How many times each bridging schedule resamples, per prompt and seed.

    Columns: schedule, prompt, seed, n_resamples, n_steps, min_ess_fraction, mean_renyi_std.
    """
    rows = []
    for schedule in schedules:
        for p_index, prompt in enumerate(prompts):
            for seed in seeds:
                cfg = SMCConfig(alpha=alpha, schedule=schedule, seed=seed, **config_kwargs)
                records = list(PowerSMC(model, cfg, track_text=False).stream(prompt))
                diag = renyi_diagnostics(records)
                rows.append(
                    {
                        "schedule": schedule,
                        "prompt": p_index,
                        "seed": seed,
                        "n_resamples": int(diag["resampled"].sum()),
                        "n_steps": len(records),
                        "min_ess_fraction": float(diag["ess_fraction"].min()),
                        "mean_renyi_std": float(diag["renyi_std"].mean()),
                    }
                )
    return pd.DataFrame(rows)
