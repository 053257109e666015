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
- Under a stop rule the samplers target the power of the stopped law, not pi_alpha cut at
  the stop string (``stopped_law_targets``).
- SMC's weighted particle set converges to pi_alpha (TV ~ N^(-1/2)) for every schedule;
  exp(log Ẑ) is unbiased for Z_alpha = sum_y p(y)^alpha.

Modules, one job each: ``exact_laws`` (power vs temperature), ``proposal`` (the optimal
proposal and the Rényi identity), ``monte_carlo`` (samplers against the exact target),
``stopped`` (the target under a stop rule), ``diagnostics`` (real-model Rényi and ESS
diagnostics), ``pivotal`` (the pivotal-decision toy family), ``arena`` (every registered
sampler against the exact target at token forwards). Every public name is re-exported here: ``from powersmc_core.theory import X``.
"""

from powersmc_core.theory.arena import ArenaResult, ArenaSettings, run_arena
from powersmc_core.theory.diagnostics import (
    next_token_path,
    next_token_rows,
    renyi_diagnostics,
    resampling_counts,
)
from powersmc_core.theory.exact_laws import PowerComparison, power_vs_temperature, tv_curves
from powersmc_core.theory.monte_carlo import (
    SMCEstimate,
    ZhatCheck,
    empirical_tv_floor,
    ess_traces,
    fit_loglog_slope,
    mh_vs_smc,
    smc_estimate,
    tv_vs_n,
    zhat_unbiasedness,
)
from powersmc_core.theory.pivotal import PivotalTable, pivotal_table, rare_branch_mass
from powersmc_core.theory.proposal import (
    RenyiIdentity,
    WeightVariance,
    incremental_weight_variance,
    renyi_identity,
    renyi_identity_from_records,
)
from powersmc_core.theory.stopped import StoppedLawTargets, stopped_law_targets

__all__ = [
    "ArenaResult",
    "ArenaSettings",
    "PivotalTable",
    "PowerComparison",
    "RenyiIdentity",
    "SMCEstimate",
    "StoppedLawTargets",
    "WeightVariance",
    "ZhatCheck",
    "empirical_tv_floor",
    "ess_traces",
    "fit_loglog_slope",
    "incremental_weight_variance",
    "mh_vs_smc",
    "next_token_path",
    "next_token_rows",
    "pivotal_table",
    "power_vs_temperature",
    "rare_branch_mass",
    "renyi_diagnostics",
    "renyi_identity",
    "renyi_identity_from_records",
    "resampling_counts",
    "run_arena",
    "smc_estimate",
    "stopped_law_targets",
    "tv_curves",
    "tv_vs_n",
    "zhat_unbiasedness",
]
