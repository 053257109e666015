"""Power-SMC (and MH) against the exact target: Monte Carlo over independent seeded runs.

SMC's weighted particle set converges to pi_alpha (TV ~ N^(-1/2)) for every schedule;
exp(log Ẑ) is unbiased for Z_alpha = sum_y P(y)^alpha. The target is over *complete*
continuations as the sampler defines them (EOS, ``config.max_new_tokens`` or a stop rule):
every helper here enumerates with the run's own length limit and stop rule, and matches
sampled completions to the table by tokens and ending.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.run import PowerSMC
from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel
from powersmc_core.samplers.baselines import MHPowerSampler, TemperatureSampling
from powersmc_core.theory.common import max_new_tokens as _max_new_tokens
from powersmc_core.theory.common import standard_error as _standard_error
from powersmc_core.theory.exact import (
    SequenceTable,
    enumerate_sequences,
    exact_log_z,
    power_distribution,
    result_distribution,
    total_variation,
    weighted_distribution,
)

__all__ = [
    "SMCEstimate",
    "ZhatCheck",
    "empirical_tv_floor",
    "ess_traces",
    "fit_loglog_slope",
    "mh_vs_smc",
    "smc_estimate",
    "tv_vs_n",
    "zhat_unbiasedness",
]


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
    n_particles: int = 1  # N per run: sets the error-bar floor of sequences no run visited

    @property
    def tv(self) -> float:
        """TV of the run-averaged estimate (the law of the sample SMC returns) to pi_alpha."""
        return 0.5 * float(np.abs(self.estimate - self.exact).sum())

    def bias_z(self) -> np.ndarray:
        """(estimate - exact) / se per sequence, over *every* sequence of the table, (S,).

        se^2 = stderr^2 + pi(1 - pi)/(N·runs): the second term is the spread of N·runs exact
        draws, so a sequence no run visited (stderr 0) still has an honest error bar and a
        sampler that never produces a sequence of positive pi_alpha fails (|z| grows as
        sqrt(N·runs·pi)). Under consistency |z| stays O(1); token-level temperature on the
        trap gives |z| in the tens. se = 0 only where pi is 0 or 1 and every run agreed.
        """
        runs = len(self.run_tv)
        floor = self.exact * (1.0 - self.exact) / (max(1, self.n_particles) * max(1, runs))
        se = np.sqrt(self.estimate_stderr**2 + floor)
        diff = self.estimate - self.exact
        with np.errstate(divide="ignore", invalid="ignore"):
            z = diff / se
        return np.where(se > 0, z, np.where(np.abs(diff) > 1e-12, np.inf * np.sign(diff), 0.0))

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
    stop: StopRule | None = None,
) -> SMCEstimate:
    """Run Power-SMC ``runs`` times (seeds config.seed + r) and score each weighted particle set.

    A single run's estimate sum_i W_i δ_{y_i} is consistent (TV -> 0 as N grows); its average
    over runs is the law of the sample SMC returns (the chosen particle is drawn ∝ W).
    method="lowtemp" scores the control instead: N token-level samples at T = 1/alpha with
    uniform weights, which converge to the wrong law.

    The target is pi_alpha over the completions of ``config.max_new_tokens`` tokens and
    ``stop`` (the power of the stopped law when a stop rule is given); a ``table`` passed in
    must have been enumerated with the same limit and rule.
    """
    if method not in ("smc", "lowtemp"):
        raise ValueError(f"method must be 'smc' or 'lowtemp', got {method!r}")
    table = _table(model, prompt, config.max_new_tokens, stop, table)
    exact = power_distribution(table, config.alpha)
    estimates = []
    run_tv, log_z, resamples, forwards = [], [], [], []
    for r in range(runs):
        cfg = replace(config, seed=config.seed + r)
        if method == "smc":
            sampler = PowerSMC(model, cfg, stop=stop, track_text=False)
        else:
            sampler = TemperatureSampling(
                model,
                1.0 / cfg.alpha,
                cfg.n_particles,
                cfg.max_new_tokens,
                cfg.seed,
                stop=stop,
                track_text=False,
            )
        result = sampler.run(prompt)
        est = result_distribution(table, result)
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
        n_particles=config.n_particles,
    )


def _table(
    model: LanguageModel,
    prompt: Sequence[int],
    max_new_tokens: int,
    stop: StopRule | None,
    table: SequenceTable | None,
) -> SequenceTable:
    """The given table, or the enumeration with the run's own length limit and stop rule."""
    if table is not None:
        return table
    return enumerate_sequences(model, prompt, max_new_tokens=max_new_tokens, stop=stop)


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
    stop: StopRule | None = None,
    **config_kwargs,
) -> pd.DataFrame:
    """Mean TV(single-run weighted estimate, pi_alpha) over ``runs`` runs for each N.

    Columns: method, schedule, n_particles, mean_tv, stderr (sample std / sqrt(runs)),
    tv_of_mean, max_abs_bias_z (see ``SMCEstimate.bias_z``). method="lowtemp" is the control.
    Consistency at the Monte-Carlo rate shows as a slope of about -1/2 on log-log axes.
    """
    max_new = _max_new_tokens(model, prompt, config_kwargs.pop("max_new_tokens", None))
    table = _table(model, prompt, max_new, stop, table)
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
        est = smc_estimate(model, cfg, runs, prompt, table, method=method, stop=stop)
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
    stop: StopRule | None = None,
) -> ZhatCheck:
    """Ẑ = prod_t sum_i W_i G_i from ``runs`` runs (seeds config.seed + r); E[Ẑ] = Z_alpha.

    Z_alpha = sum_y P(y)^alpha over the completions of ``config.max_new_tokens`` and ``stop``.
    Exact for fixed resampling times (kappa = 0 or 1) and a fixed schedule; ESS-triggered
    resampling and the adaptive schedule add an O(1/N) bias that is far below the error bar here.
    """
    table = _table(model, prompt, config.max_new_tokens, stop, table)
    z_hat = []
    for r in range(runs):
        cfg = replace(config, seed=config.seed + r)
        result = PowerSMC(model, cfg, stop=stop, track_text=False).run(prompt)
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
    max_new = _max_new_tokens(model, prompt, max_new_tokens)
    table = _table(model, prompt, max_new, None, table)
    exact = power_distribution(table, alpha)
    floor, floor_sd = empirical_tv_floor(exact.numpy(), runs, seed=seed)

    def score(method: str, budget: int, samples: list, ended: list, forwards: list) -> dict:
        hist = weighted_distribution(table, samples, [1.0 / len(samples)] * len(samples), ended)
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
        samples, ended, forwards = [], [], []
        for r in range(runs):
            mh = MHPowerSampler(
                model, alpha=alpha, max_new_tokens=max_new, mh_steps=int(k), seed=seed + r
            )
            result = mh.run(prompt)
            samples.append(result.completions[0])
            ended.append(result.finished[0])
            forwards.append(result.extras["token_forwards"])
        rows.append(score("mh", int(k), samples, ended, forwards))
    for n in n_particles:
        samples, ended, forwards = [], [], []
        for r in range(runs):
            cfg = SMCConfig(alpha=alpha, n_particles=int(n), max_new_tokens=max_new, seed=seed + r)
            result = PowerSMC(model, cfg, track_text=False).run(prompt)
            samples.append(result.chosen_completion)
            ended.append(result.finished[result.chosen])
            forwards.append(result.extras["token_forwards"])
        rows.append(score("smc", int(n), samples, ended, forwards))
    return pd.DataFrame(rows)
