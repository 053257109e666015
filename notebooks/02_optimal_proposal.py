# %% [markdown]
# # 2. The optimal prefix-only proposal is temperature 1/α
#
# **Claim.** Extending a particle by one token drawn from $q_\tau \propto p(\cdot\mid\text{prefix})^{1/\tau}$
# gives it the incremental importance weight $w(v) = p(v)^\alpha / q_\tau(v)$. Among these proposals,
# $\tau = 1/\alpha$ *uniquely* minimises the variance of $w$ (it is 0 there: $w$ is constant), and
# then $\log w$ is the prefix-conditioned Rényi entropy:
#
# $$
# \log\!\Big(1+\frac{\operatorname{Var}_{q_\tau}[w]}{\mathbb E_{q_\tau}[w]^2}\Big)
# = \log\sum_v p_v^{\,2\alpha-s} + \log\sum_v p_v^{\,s} - 2\log\sum_v p_v^{\,\alpha},\quad s=\tfrac1\tau,
# \qquad
# \log w\big|_{\tau=1/\alpha} = (1-\alpha)\,H_\alpha\big(p(\cdot\mid\text{prefix})\big).
# $$
#
# *Why unique.* $\mathbb E_{q_\tau}[w] = \sum_v p_v^\alpha$ for every τ, so the relative variance ranks
# proposals. The right-hand side is a sum of log-sum-exps of functions linear in s, hence convex in s;
# its slope $\mathbb E_{p^s}[\log p] - \mathbb E_{p^{2\alpha-s}}[\log p]$ vanishes at s = α, and the
# convexity is strict unless p is uniform on its support (then every τ gives the same proposal).
# Consequently, across particles, $\operatorname{Var}_i \log w_i = (\alpha-1)^2\operatorname{Var}_i H_\alpha$.
#
# We sweep τ on a grid for many next-token distributions — random, every row of toy models, and
# real rows of the embedded SmolLM2-135M on a few prompts — and locate the minimum.

# %%
import math
import os

import numpy as np
import pandas as pd
import plotly.io as pio
import torch

# Toy tensors are tiny: one thread avoids thread start-up and contention costs.
torch.set_num_threads(1)

from powersmc_core import PowerSMC, SMCConfig, ToyLM
from powersmc_core.plotting.theory import (
    renyi_identity_figure,
    renyi_variance_figure,
    tau_star_figure,
    weight_variance_figure,
)
from powersmc_core.theory import (
    incremental_weight_variance,
    next_token_rows,
    renyi_identity,
    renyi_identity_from_records,
)
from powersmc_core.theory.exact import enumerate_sequences

# Interactive figures are stored as Plotly JSON; the committed copies also carry a PNG so
# code hosts that do not run JavaScript still show them (set by build_notebooks.py).
pio.renderers.default = (
    "plotly_mimetype+png" if os.environ.get("POWERSMC_NOTEBOOK_PNG") else "plotly_mimetype"
)
pd.set_option("display.precision", 4)

# Toy tensors are tiny: one thread avoids thread start-up and contention costs.
torch.set_num_threads(1)

# %% [markdown]
# ## Three families of next-token distributions


# %%
def pad(rows, width):
    """Right-pad log-prob rows with impossible tokens (log p = -inf) to a common vocabulary."""
    return torch.nn.functional.pad(rows, (0, width - rows.shape[1]), value=-math.inf)


gen = torch.Generator().manual_seed(0)
# Random: logits ~ scale·N(0, 1) over V tokens, from flat to peaked (padded to V = 200).
random_rows = torch.cat(
    [
        pad(
            torch.log_softmax(scale * torch.randn(20, v, generator=gen, dtype=torch.float64), -1),
            200,
        )
        for scale, v in [(0.5, 10), (1.5, 50), (3.0, 200)]
    ]
)
# Toy: the next-token distribution of every reachable prefix of three toy models (rows where
# EOS is forced are point masses: uniform on their support).
toy_rows = torch.cat(
    [
        pad(
            torch.unique(
                torch.stack([d for dists in enumerate_sequences(m).step_logprobs for d in dists]),
                dim=0,
            ),
            6,
        )
        for m in (ToyLM.trap(), ToyLM.random(5, 5, seed=2), ToyLM.random(4, 5, seed=5))
    ]
)
print(random_rows.shape, toy_rows.shape)

# %% [markdown]
# The real rows come from the embedded SmolLM2-135M-Instruct: next-token distributions along a
# short continuation (8 tokens, sampled at T = 1 with a fixed seed) of three reasoning prompts.

# %%
import warnings

# Before transformers imports tqdm.auto, which warns once at import time without ipywidgets.
warnings.filterwarnings("ignore", message="IProgress not found")
from transformers.utils import logging as hf_logging

from powersmc_core.models.loading import load_model

hf_logging.disable_progress_bar()  # keep weight-loading bars out of the saved outputs
lm = load_model("smollm2")
prompts = [
    "What is 17 + 25? Think step by step.",
    "A train travels 60 km in 1.5 hours. What is its average speed?",
    "Name a prime number larger than 20 and explain why it is prime.",
]
prompt_ids = [lm.encode_prompt(p) for p in prompts]
real_rows = torch.cat([next_token_rows(lm, ids, 8, seed=i) for i, ids in enumerate(prompt_ids)])
print(real_rows.shape, "top-token probabilities:", real_rows.exp().max(1).values.numpy().round(3))

# %% [markdown]
# ## Sweep τ and locate the minimum
#
# The grid is 61 log-spaced values of τ in [0.05, 4] plus τ = 1/α itself. `tau_star` is found
# without the grid, by bisection on the sign of the slope in s = 1/τ (which is increasing since the
# objective is convex) — nothing there assumes the answer.

# %%
families = {"random": random_rows, "toy": toy_rows, "real (SmolLM2)": real_rows}
results = {}
for alpha in (2.0, 4.0):
    taus = np.sort(np.append(np.geomspace(0.05, 4.0, 61), 1.0 / alpha))
    for name, rows in families.items():
        results[(name, alpha)] = incremental_weight_variance(rows, alpha, taus)
pd.DataFrame(
    [
        {
            "family": name,
            "alpha": alpha,
            "rows": len(r.tau_star),
            "uniform on support": int(r.uniform.sum()),
            "grid argmin = 1/alpha": float(np.mean(r.grid_argmin[~r.uniform] == 1.0 / alpha)),
            "max |alpha·tau* − 1|": float(np.nanmax(np.abs(alpha * r.tau_star - 1.0))),
            "max Var/E² at 1/alpha": float(
                r.relative_variance[:, np.argmin(np.abs(r.taus - 1 / alpha))].max()
            ),
        }
        for (name, alpha), r in results.items()
    ]
)

# %%
weight_variance_figure(results[("random", 4.0)], max_rows=12)

# %%
weight_variance_figure(results[("real (SmolLM2)", 4.0)], max_rows=12)

# %%
tau_star_figure({f"{name} α={a:g}": r for (name, a), r in results.items()})

# %% [markdown]
# **Checks.** For every row that is not uniform on its support (uniform rows — e.g. the toy rows
# where EOS is forced — are counted in the table, and for them every τ is optimal):
#
# 1. the grid minimum is at τ = 1/α, where the relative variance is 0: we allow 1e-20, the size
#    of (δs)²·Var(log p) for a rounding error δs ≈ 1e-15 in s = 1/τ and log-probabilities spanning
#    ≲ 100 nats;
# 2. the minimiser located by bisection satisfies |α·τ* − 1| < 1e-9 (64 halvings of [1/4, 20]
#    give ~1e-18; the rest is float64 rounding of the slope);
# 3. *uniqueness on the grid*: log(Var/E²) is strictly decreasing up to τ = 1/α and strictly
#    increasing after it, at every grid point of every row. (The variance is computed as a sum of
#    non-negative terms, Σ_v q(v)·(π(v)/q(v) − 1)², so even a very confident row's tiny variances
#    are resolved rather than lost to 1 + x − 1 cancellation.)

# %%
report = []
for (name, alpha), r in results.items():
    k = int(np.argmin(np.abs(r.taus - 1.0 / alpha)))
    ok = ~r.uniform
    log_rel = r.log_relative_variance[ok]
    assert np.all(r.grid_argmin[ok] == 1.0 / alpha), (name, alpha)
    assert np.all(r.relative_variance[ok, k] <= 1e-20), (name, alpha)
    assert np.nanmax(np.abs(alpha * r.tau_star[ok] - 1.0)) < 1e-9, (name, alpha)
    d = np.diff(log_rel, axis=1)
    assert np.all(d[:, :k] < 0) and np.all(d[:, k:] > 0), (name, alpha)
    report.append(
        {
            "family": name,
            "alpha": alpha,
            "non-uniform rows": int(ok.sum()),
            "smallest Var/E² off 1/alpha": float(np.exp(np.delete(log_rel, k, 1).min())),
            "log10 of the largest Var/E²": float(log_rel.max() / math.log(10)),
        }
    )
pd.DataFrame(report)

# %% [markdown]
# ## At τ = 1/α the log-weight is the Rényi term, exactly
#
# For each row we draw tokens from q = softmax(α·log p) and compare α·log p(v) − log q(v) with
# (1 − α)·H_α(p). float64 rows: tolerance 1e-12 (the terms are O(10) nats, so ~50·eps).

# %%
alpha = 4.0
identities = {name: renyi_identity(rows, alpha, draws=8, seed=1) for name, rows in families.items()}
for name, ri in identities.items():
    assert ri.max_abs_error < 1e-12, (name, ri.max_abs_error)
    # Across rows (one draw each): Var log w = (alpha - 1)^2 Var H_alpha, same rounding level.
    assert abs(ri.variance_log_weight - ri.variance_predicted) <= 1e-10 * max(
        1.0, ri.variance_predicted
    )
pd.DataFrame(
    {
        name: {
            "max |log w − (1−α)H_α|": ri.max_abs_error,
            "Var log w": ri.variance_log_weight,
            "(α−1)² Var H_α": ri.variance_predicted,
        }
        for name, ri in identities.items()
    }
).T

# %%
renyi_identity_figure(identities["real (SmolLM2)"])

# %% [markdown]
# ## Across particles, inside the sampler
#
# The same identity holds for the increments Power-SMC records: with the constant schedule and
# τ_t = 1/α, every particle's log G_i at step t is (1 − α)·H_α of its own prefix, so the variance
# of the log-weight increments across particles is (α − 1)²·Var_i(H_α). Below on a toy model
# (float64) and on SmolLM2 (float32 log-probs: tolerance 1e-4 relative, ~10³·eps32).

# %%
toy = ToyLM.random(5, 6, seed=3)
toy_records = list(
    PowerSMC(toy, SMCConfig(alpha=4.0, n_particles=64, max_new_tokens=6, seed=0)).stream([])
)
toy_steps = renyi_identity_from_records(toy_records)
assert toy_steps["max_abs_error"].max() < 1e-12
assert np.allclose(
    toy_steps["var_log_increment"], toy_steps["predicted_variance"], rtol=1e-9, atol=1e-12
)
toy_steps

# %%
torch.set_num_threads(max(1, os.cpu_count() or 1))  # the transformer benefits from threads
real_cfg = SMCConfig(alpha=2.0, n_particles=8, max_new_tokens=12, seed=0)
real_records = list(PowerSMC(lm, real_cfg, track_text=False).stream(prompt_ids[2]))
real_steps = renyi_identity_from_records(real_records)
scale = np.maximum(1.0, real_steps[["var_log_increment", "predicted_variance"]].abs().max(axis=1))
assert (real_steps["max_abs_error"] < 1e-4 * (1 + 2.0 * 12)).all()  # float32 H and log p, O(1) nats
assert (
    (real_steps["var_log_increment"] - real_steps["predicted_variance"]).abs() <= 1e-4 * scale
).all()
print(f"{len(real_steps)} steps; max |log G − (1−α)H_α| = {real_steps['max_abs_error'].max():.1e}")
renyi_variance_figure(real_steps)

# %% [markdown]
# **Reading.** Every non-uniform next-token distribution we tried — random, toy and real — has its
# incremental-weight variance minimised at τ = 1/α and nowhere else, with variance 0 there; the
# log-weight is then a deterministic function of the prefix, (1 − α)·H_α. That is why Power-SMC
# proposes at temperature 1/α and why its weights only spread where particles' prefixes differ
# in Rényi entropy (notebook 5).
