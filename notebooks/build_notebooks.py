"""Write (and optionally execute) the theory notebooks from the cell lists below.

    python notebooks/build_notebooks.py                 # write the .ipynb files, no outputs
    python notebooks/build_notebooks.py --execute       # write, run with nbclient, save outputs
    python notebooks/build_notebooks.py --execute --only 02

Every notebook states its claim and one formula at the top, computes with
``powersmc_core.theory``, draws with ``powersmc_core.plotting.theory`` (the app's Theory lab
uses both), and checks the claim in ``assert`` cells whose tolerances are derived in the cell.
Committed copies carry a PNG next to each interactive figure (POWERSMC_NOTEBOOK_PNG=1, needs
kaleido + Chromium) so that code hosts without JavaScript still show the charts; the test
suite re-executes them without PNGs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
import math
import os

import numpy as np
import pandas as pd
import plotly.io as pio
import torch

# Interactive figures are stored as Plotly JSON; the committed copies also carry a PNG so
# code hosts that do not run JavaScript still show them (set by build_notebooks.py).
pio.renderers.default = (
    "plotly_mimetype+png" if os.environ.get("POWERSMC_NOTEBOOK_PNG") else "plotly_mimetype"
)
pd.set_option("display.precision", 4)
'''

TOY_THREADS = '''\
# Toy tensors are tiny: one thread avoids thread start-up and contention costs.
torch.set_num_threads(1)
'''


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


# ---------------------------------------------------------------------------------------------
NB1 = [
    md(r"""
# 1. The power distribution is not token-level temperature

**Claim.** Raising the probability of *whole sequences* to a power α and renormalising is a
different distribution from sampling *each token* at temperature 1/α. They agree at α = 1 and
disagree, increasingly with α, whenever continuations differ in how spread out they are:

$$
\pi_\alpha(y) = \frac{p(y)^\alpha}{\sum_{y'} p(y')^\alpha}
\;\neq\;
q_{1/\alpha}(y) = \prod_t \frac{p(y_t\mid y_{<t})^\alpha}{\sum_v p(v\mid y_{<t})^\alpha}
= \frac{p(y)^\alpha}{\prod_t \sum_v p(v\mid y_{<t})^\alpha}.
$$

The two differ by the per-prefix factor $\prod_t \sum_v p(v\mid y_{<t})^\alpha
= \exp\big((1-\alpha)\sum_t H_\alpha(p(\cdot\mid y_{<t}))\big)$ (Rényi entropies, see notebook 2):
token-level temperature ignores it, so it over-weights prefixes whose continuations are uncertain.

Everything below is **exact**: the toy models are small enough to enumerate every sequence
(`powersmc_core.exact`), so there is no sampling noise and the tolerances are float rounding.
"""),
    code(SETUP + TOY_THREADS + '''
from powersmc_core import ToyLM
from powersmc_core.exact import enumerate_sequences
from powersmc_core.plotting.theory import power_comparison_figure, tv_curves_figure
from powersmc_core.theory import power_vs_temperature, tv_curves
'''),
    md("""
## The trap model

First token A (p = 0.6) or B (0.4). After A come three equally weak endings (1/3 each); after B
one confident ending x (0.9). So p(A ·) = 0.2 each but p(B x) = 0.36.
"""),
    code('''
trap = ToyLM.trap()
alpha = 4.0
cmp = power_vs_temperature(trap, alpha)
cmp.frame()
'''),
    code('''
power_comparison_figure(cmp)
'''),
    md("""
**Check against the closed form.** With α = 4: Z = 3·0.2⁴ + 0.36⁴ + 2·0.02⁴ and
π(B x) = 0.36⁴/Z; token-level T = 1/4 picks A with probability 0.6⁴/(0.6⁴ + 0.4⁴) and then
one of three endings uniformly, and B x with probability 0.4⁴/(0.6⁴ + 0.4⁴) · 0.9⁴/(0.9⁴ + 2·0.05⁴).
The trap's table is built from float32 literals, so the tolerance is float32 rounding
(relative 1e-7, we allow 1e-6).
"""),
    code('''
z = 3 * 0.2**4 + 0.36**4 + 2 * 0.02**4
first_a = 0.6**4 / (0.6**4 + 0.4**4)
bx_given_b = 0.9**4 / (0.9**4 + 2 * 0.05**4)
expected_pi = {"B x": 0.36**4 / z, "A x": 0.2**4 / z}
expected_q = {"B x": (1 - first_a) * bx_given_b, "A x": first_a / 3}
frame = cmp.frame().set_index("sequence")
tol = 1e-6
for seq in expected_pi:
    assert abs(frame.loc[seq, "pi_alpha"] - expected_pi[seq]) <= tol * expected_pi[seq], seq
    assert abs(frame.loc[seq, "token_temperature"] - expected_q[seq]) <= tol * expected_q[seq], seq
# The modes differ: pi_alpha puts most mass on the confident path, temperature on A.
assert frame["pi_alpha"].idxmax() == "B x"
assert frame["token_temperature"].idxmax().startswith("A")
print(f"TV(pi_4, token T=1/4) = {cmp.tv_power_vs_temperature:.4f}")
print(f"pi_4(B x) = {frame.loc['B x', 'pi_alpha']:.4f}, token-level T=1/4: {frame.loc['B x', 'token_temperature']:.4f}")
'''),
    md("""
## How the disagreement grows with α

Total variation TV(P, Q) = ½ Σ_y |P(y) − Q(y)|, for α from 1/4 (flattening) to 16 (sharpening),
on the trap and on random toy models (logits ~ 1.5·N(0, 1), one table per seed).
"""),
    code('''
alphas = 2.0 ** np.arange(-2.0, 4.25, 0.25)  # 1/4 .. 16, exact powers of two included
models = {"trap": trap} | {
    f"random V={v} L={l} seed={s}": ToyLM.random(v, l, seed=s)
    for v, l, s in [(4, 5, 3), (4, 5, 5), (5, 5, 2), (3, 6, 4)]
}
tables = {name: enumerate_sequences(m) for name, m in models.items()}
curves = {name: tv_curves(models[name], alphas, table=tables[name]) for name in models}
tv_curves_figure({"trap": curves["trap"], "random V=5 L=5 seed=2": curves["random V=5 L=5 seed=2"]})
'''),
    code('''
summary = pd.DataFrame(
    {
        name: df.set_index("alpha")["tv_power_vs_temperature"].loc[[0.25, 1.0, 2.0, 4.0, 16.0]]
        for name, df in curves.items()
    }
).T
summary.columns = [f"TV at alpha={a:g}" for a in summary.columns]
summary.insert(0, "sequences", [len(tables[n].sequences) for n in summary.index])
summary
'''),
    md("""
**Checks.** (i) At α = 1 the three laws coincide (float rounding, 1e-12). (ii) On every model the
two laws disagree for α ≠ 1 by far more than rounding. (iii) On the trap the disagreement
grows monotonically with α. These are exact numbers, so the thresholds are rounding-level
(1e-12), not statistical.
"""),
    code('''
rounding = 1e-12
for name, df in curves.items():
    at_one = df.set_index("alpha").loc[1.0]
    assert at_one.abs().max() < rounding, (name, at_one)
    off = df[df["alpha"] != 1.0]["tv_power_vs_temperature"]
    assert off.min() > 1e6 * rounding, (name, off.min())
trap_tv = curves["trap"]["tv_power_vs_temperature"].to_numpy()
k1 = int(np.argmin(np.abs(alphas - 1.0)))
assert np.all(np.diff(trap_tv[k1:]) > 0), "trap: TV should grow with alpha above 1"
print({name: round(float(df.set_index("alpha").loc[4.0, "tv_power_vs_temperature"]), 4) for name, df in curves.items()})
'''),
    md("""
## Where they disagree

On a random model, the sequences with the largest gap |π_α − q_{1/α}|: token-level temperature
follows locally likely tokens and over-weights sequences that pass through many uncertain
(high-Rényi-entropy) next-token distributions — it never pays the factor exp((1 − α)·Σ_t H_α).
"""),
    code('''
name = "random V=5 L=5 seed=2"
rnd = power_vs_temperature(models[name], alpha, table=tables[name])
gap = rnd.frame().assign(gap=lambda d: d["pi_alpha"] - d["token_temperature"])
gap.reindex(gap["gap"].abs().sort_values(ascending=False).index).head(8)
'''),
    code('''
power_comparison_figure(rnd, top=15)
'''),
    md("""
**The missing factor, exactly.** Dividing the two laws sequence by sequence,
q_{1/α}(y) / π_α(y) = Z_α · exp((α − 1)·Σ_t H_α(p(·|y_<t))): the sum of Rényi entropies of the
next-token distributions along y (EOS step included). So log(q/π) − (α − 1)·Σ_t H_α must equal
log Z_α for *every* sequence — checked on the random model to 1e-9 (float64 sums over ≤ 5 steps).
"""),
    code('''
from powersmc_core.tempering import renyi_entropy

table = tables[name]
sum_h = np.array([float(sum(renyi_entropy(d, alpha) for d in dists)) for dists in table.step_logprobs])
log_ratio = np.log(rnd.token_temperature) - np.log(rnd.pi_alpha)
residual = log_ratio - (alpha - 1) * sum_h
assert np.abs(residual - rnd.log_z).max() < 1e-9, np.abs(residual - rnd.log_z).max()
print(f"log Z_alpha = {rnd.log_z:.6f}; max |log(q/pi) - (alpha-1)·ΣH_alpha - log Z| = "
      f"{np.abs(residual - rnd.log_z).max():.1e}")
pd.DataFrame({"sequence": rnd.labels, "Σ_t H_α": sum_h, "q/π": np.exp(log_ratio)}).sort_values(
    "q/π", ascending=False).head(8)
'''),
    md("""
**Reading.** At α = 4 the total variation between the power distribution and token-level
temperature is 0.61 on the trap and between about 0.3 and 0.9 on the random models above:
low-temperature decoding is not a cheap way to sample p^α. Notebook 2 shows the missing factor
is exactly the Rényi-entropy term, and notebook 3 that Power-SMC recovers π_α.
"""),
]

# ---------------------------------------------------------------------------------------------
NB2 = [
    md(r"""
# 2. The optimal prefix-only proposal is temperature 1/α

**Claim.** Extending a particle by one token drawn from $q_\tau \propto p(\cdot\mid\text{prefix})^{1/\tau}$
gives it the incremental importance weight $w(v) = p(v)^\alpha / q_\tau(v)$. Among these proposals,
$\tau = 1/\alpha$ *uniquely* minimises the variance of $w$ (it is 0 there: $w$ is constant), and
then $\log w$ is the prefix-conditioned Rényi entropy:

$$
\log\!\Big(1+\frac{\operatorname{Var}_{q_\tau}[w]}{\mathbb E_{q_\tau}[w]^2}\Big)
= \log\sum_v p_v^{\,2\alpha-s} + \log\sum_v p_v^{\,s} - 2\log\sum_v p_v^{\,\alpha},\quad s=\tfrac1\tau,
\qquad
\log w\big|_{\tau=1/\alpha} = (1-\alpha)\,H_\alpha\big(p(\cdot\mid\text{prefix})\big).
$$

*Why unique.* $\mathbb E_{q_\tau}[w] = \sum_v p_v^\alpha$ for every τ, so the relative variance ranks
proposals. The right-hand side is a sum of log-sum-exps of functions linear in s, hence convex in s;
its slope $\mathbb E_{p^s}[\log p] - \mathbb E_{p^{2\alpha-s}}[\log p]$ vanishes at s = α, and the
convexity is strict unless p is uniform on its support (then every τ gives the same proposal).
Consequently, across particles, $\operatorname{Var}_i \log w_i = (\alpha-1)^2\operatorname{Var}_i H_\alpha$.

We sweep τ on a grid for many next-token distributions — random, every row of toy models, and
real rows of the embedded SmolLM2-135M on a few prompts — and locate the minimum.
"""),
    code(SETUP + TOY_THREADS + '''
from powersmc_core import PowerSMC, SMCConfig, ToyLM
from powersmc_core.exact import enumerate_sequences
from powersmc_core.plotting.theory import (
    renyi_identity_figure,
    renyi_variance_figure,
    tau_star_figure,
    weight_variance_figure,
)
from powersmc_core.tempering import renyi_entropy
from powersmc_core.theory import (
    incremental_weight_variance,
    next_token_rows,
    renyi_identity,
    renyi_identity_from_records,
)
'''),
    md("""
## Three families of next-token distributions
"""),
    code('''
def pad(rows, width):
    """Right-pad log-prob rows with impossible tokens (log p = -inf) to a common vocabulary."""
    return torch.nn.functional.pad(rows, (0, width - rows.shape[1]), value=-math.inf)

gen = torch.Generator().manual_seed(0)
# Random: logits ~ scale·N(0, 1) over V tokens, from flat to peaked (padded to V = 200).
random_rows = torch.cat(
    [
        pad(torch.log_softmax(scale * torch.randn(20, v, generator=gen, dtype=torch.float64), -1), 200)
        for scale, v in [(0.5, 10), (1.5, 50), (3.0, 200)]
    ]
)
# Toy: the next-token distribution of every reachable prefix of three toy models (rows where
# EOS is forced are point masses: uniform on their support).
toy_rows = torch.cat(
    [
        pad(torch.unique(torch.stack([d for dists in enumerate_sequences(m).step_logprobs for d in dists]), dim=0), 6)
        for m in (ToyLM.trap(), ToyLM.random(5, 5, seed=2), ToyLM.random(4, 5, seed=5))
    ]
)
print(random_rows.shape, toy_rows.shape)
'''),
    md("""
The real rows come from the embedded SmolLM2-135M-Instruct: next-token distributions along a
short continuation (8 tokens, sampled at T = 1 with a fixed seed) of three reasoning prompts.
"""),
    code('''
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
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
'''),
    md("""
## Sweep τ and locate the minimum

The grid is 61 log-spaced values of τ in [0.05, 4] plus τ = 1/α itself. `tau_star` is found
without the grid, by bisection on the sign of the slope in s = 1/τ (which is increasing since the
objective is convex) — nothing there assumes the answer.
"""),
    code('''
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
'''),
    code('''
weight_variance_figure(results[("random", 4.0)], max_rows=12)
'''),
    code('''
weight_variance_figure(results[("real (SmolLM2)", 4.0)], max_rows=12)
'''),
    code('''
tau_star_figure({f"{name} α={a:g}": r for (name, a), r in results.items()})
'''),
    md("""
**Checks.** For every row that is not uniform on its support (uniform rows — e.g. the toy rows
where EOS is forced — are counted in the table, and for them every τ is optimal):

1. the grid minimum is at τ = 1/α, where the relative variance is 0: we allow 1e-20, the size
   of (δs)²·Var(log p) for a rounding error δs ≈ 1e-15 in s = 1/τ and log-probabilities spanning
   ≲ 100 nats;
2. the minimiser located by bisection satisfies |α·τ* − 1| < 1e-9 (64 halvings of [1/4, 20]
   give ~1e-18; the rest is float64 rounding of the slope);
3. *uniqueness on the grid*: log(Var/E²) is strictly decreasing up to τ = 1/α and strictly
   increasing after it, at every grid point of every row. (The variance is computed as a sum of
   non-negative terms, Σ_v q(v)·(π(v)/q(v) − 1)², so even a very confident row's tiny variances
   are resolved rather than lost to 1 + x − 1 cancellation.)
"""),
    code('''
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
    report.append({"family": name, "alpha": alpha, "non-uniform rows": int(ok.sum()),
                   "smallest Var/E² off 1/alpha": float(np.exp(np.delete(log_rel, k, 1).min())),
                   "log10 of the largest Var/E²": float(log_rel.max() / math.log(10))})
pd.DataFrame(report)
'''),
    md("""
## At τ = 1/α the log-weight is the Rényi term, exactly

For each row we draw tokens from q = softmax(α·log p) and compare α·log p(v) − log q(v) with
(1 − α)·H_α(p). float64 rows: tolerance 1e-12 (the terms are O(10) nats, so ~50·eps).
"""),
    code('''
alpha = 4.0
identities = {name: renyi_identity(rows, alpha, draws=8, seed=1) for name, rows in families.items()}
for name, ri in identities.items():
    assert ri.max_abs_error < 1e-12, (name, ri.max_abs_error)
    # Across rows (one draw each): Var log w = (alpha - 1)^2 Var H_alpha, same rounding level.
    assert abs(ri.variance_log_weight - ri.variance_predicted) <= 1e-10 * max(1.0, ri.variance_predicted)
pd.DataFrame(
    {name: {"max |log w − (1−α)H_α|": ri.max_abs_error, "Var log w": ri.variance_log_weight,
            "(α−1)² Var H_α": ri.variance_predicted} for name, ri in identities.items()}
).T
'''),
    code('''
renyi_identity_figure(identities["real (SmolLM2)"])
'''),
    md("""
## Across particles, inside the sampler

The same identity holds for the increments Power-SMC records: with the constant schedule and
τ_t = 1/α, every particle's log G_i at step t is (1 − α)·H_α of its own prefix, so the variance
of the log-weight increments across particles is (α − 1)²·Var_i(H_α). Below on a toy model
(float64) and on SmolLM2 (float32 log-probs: tolerance 1e-4 relative, ~10³·eps32).
"""),
    code('''
toy = ToyLM.random(5, 6, seed=3)
toy_records = list(PowerSMC(toy, SMCConfig(alpha=4.0, n_particles=64, max_new_tokens=6, seed=0)).stream([]))
toy_steps = renyi_identity_from_records(toy_records)
assert toy_steps["max_abs_error"].max() < 1e-12
assert np.allclose(toy_steps["var_log_increment"], toy_steps["predicted_variance"], rtol=1e-9, atol=1e-12)
toy_steps
'''),
    code('''
torch.set_num_threads(max(1, os.cpu_count() or 1))  # the transformer benefits from threads
real_cfg = SMCConfig(alpha=2.0, n_particles=8, max_new_tokens=12, seed=0)
real_records = list(PowerSMC(lm, real_cfg, track_text=False).stream(prompt_ids[2]))
real_steps = renyi_identity_from_records(real_records)
scale = np.maximum(1.0, real_steps[["var_log_increment", "predicted_variance"]].abs().max(axis=1))
assert (real_steps["max_abs_error"] < 1e-4 * (1 + 2.0 * 12)).all()  # float32 H and log p, O(1) nats
assert ((real_steps["var_log_increment"] - real_steps["predicted_variance"]).abs() <= 1e-4 * scale).all()
print(f"{len(real_steps)} steps; max |log G − (1−α)H_α| = {real_steps['max_abs_error'].max():.1e}")
renyi_variance_figure(real_steps)
'''),
    md("""
**Reading.** Every non-uniform next-token distribution we tried — random, toy and real — has its
incremental-weight variance minimised at τ = 1/α and nowhere else, with variance 0 there; the
log-weight is then a deterministic function of the prefix, (1 − α)·H_α. That is why Power-SMC
proposes at temperature 1/α and why its weights only spread where particles' prefixes differ
in Rényi entropy (notebook 5).
"""),
]

# ---------------------------------------------------------------------------------------------
NB3 = [
    md(r"""
# 3. Exponent bridging does not alter the target

**Claim.** Whatever schedule α_t the exponent follows on the way (constant, a linear ramp, or the
adaptive CESS-controlled ramp), the catch-up factor p(y)^(α − α_T) at the end makes the weighted
particle set target the same π_α, and the normalising-constant estimate stays unbiased:

$$
\sum_i W_i\,\delta_{y_i} \xrightarrow[N\to\infty]{} \pi_\alpha \quad(\mathrm{TV}\sim N^{-1/2}),
\qquad \mathbb E\big[\hat Z\big] = Z_\alpha = \sum_y p(y)^\alpha,
\quad \hat Z = \prod_t \sum_i W_{t-1,i}\,G_{t,i}.
$$

Checks are Monte Carlo over independent seeded runs against the exact π_α and Z_α by enumeration;
each tolerance is derived from the number of runs (standard errors), and each check is shown to
*fail* for a sampler that is wrong (token-level temperature 1/α with uniform weights).
"""),
    code(SETUP + TOY_THREADS + '''
from scipy.stats import norm

from powersmc_core import SMCConfig, ToyLM
from powersmc_core.exact import enumerate_sequences
from powersmc_core.plotting.theory import ess_traces_figure, tv_vs_n_figure, zhat_figure
from powersmc_core.theory import (
    ess_traces,
    fit_loglog_slope,
    smc_estimate,
    tv_vs_n,
    zhat_unbiasedness,
)

SCHEDULES = ("constant", "linear", "adaptive")
models = {"trap": ToyLM.trap(), "random V=5 L=5 seed=2": ToyLM.random(5, 5, seed=2)}
tables = {name: enumerate_sequences(m) for name, m in models.items()}
alpha, ramp = 4.0, 2  # ramp_tokens: the linear/adaptive ramp reaches alpha by token 2
'''),
    md("""
## TV to the exact π_α against N

For each schedule, N ∈ {16, …, 1024} and 60 runs per N: the mean TV of a single run's weighted
estimate, ± 2 standard errors. The control is token-level temperature with uniform weights.
"""),
    code('''
n_values = [16, 32, 64, 128, 256, 512, 1024]
runs = 60
frames = []
for name, model in models.items():
    for schedule in SCHEDULES:
        df = tv_vs_n(model, alpha, n_values, runs, schedule=schedule, seed=0,
                     table=tables[name], ramp_tokens=ramp)
        frames.append(df.assign(model=name))
    control = tv_vs_n(model, alpha, n_values, runs, seed=0, table=tables[name], method="lowtemp")
    frames.append(control.assign(model=name))
tv = pd.concat(frames, ignore_index=True)
tv_vs_n_figure(tv[tv["model"] == "trap"])
'''),
    code('''
tv_vs_n_figure(tv[tv["model"] != "trap"])
'''),
    md("""
**Checks.**

1. *Rate.* A weighted least-squares fit of log(mean TV) on log N over N ≥ 64 (weights from each
   point's standard error) has slope within 4 standard errors of −1/2. A sampler converging to the
   wrong law plateaus at its bias: its slope is ≈ 0, which the same test rejects (asserted on
   the control).
2. *No bias.* At N = 1024 the run-averaged estimate of every sequence's probability is within a
   Bonferroni normal bound (family level 10⁻³ over the sequences visited) of the exact π_α; the
   control exceeds the bound.
"""),
    code('''
rows = []
for (name, method, schedule), df in tv.groupby(["model", "method", "schedule"], sort=False):
    fit = df[df["n_particles"] >= 64]
    slope, _, se = fit_loglog_slope(fit["n_particles"], fit["mean_tv"], fit["stderr"])
    rows.append({"model": name, "method": method, "schedule": schedule, "slope": slope,
                 "slope s.e.": se, "|slope + 1/2| / s.e.": abs(slope + 0.5) / se,
                 "TV at N=1024": float(df["mean_tv"].iloc[-1])})
slopes = pd.DataFrame(rows)
for _, r in slopes.iterrows():
    if r["method"] == "smc":
        assert r["|slope + 1/2| / s.e."] < 4, r.to_dict()
    else:
        assert r["|slope + 1/2| / s.e."] > 4, r.to_dict()  # the wrong sampler fails the test
slopes
'''),
    code('''
bias = []
for name, model in models.items():
    for method, schedule in [("smc", s) for s in SCHEDULES] + [("lowtemp", "constant")]:
        cfg = SMCConfig(alpha=alpha, n_particles=1024, schedule=schedule, ramp_tokens=ramp,
                        max_new_tokens=model.max_len, seed=10_000)
        est = smc_estimate(model, cfg, runs=60, table=tables[name], method=method)
        z = est.bias_z()
        bound = norm.isf(1e-3 / (2 * len(z)))
        bias.append({"model": name, "method": method, "schedule": schedule,
                     "max |z|": float(np.abs(z).max()), "bound": bound,
                     "TV(run-average, exact)": est.tv})
bias = pd.DataFrame(bias)
for _, r in bias.iterrows():
    if r["method"] == "smc":
        assert r["max |z|"] < r["bound"], r.to_dict()
    else:
        assert r["max |z|"] > r["bound"], r.to_dict()
bias
'''),
    md("""
## Ẑ is unbiased for Z_α

400 runs with N = 16 per schedule, and N = 2 on the trap: the mean of exp(log Ẑ) against the
exact Z_α, with a z-score from the standard error over runs (|z| < 4 passes). The contrast: the
mean of log Ẑ is biased *low* (Jensen), visibly so at N = 2 — the test can tell the difference.
"""),
    code('''
checks = {}
for name, model in models.items():
    for schedule in SCHEDULES:
        cfg = SMCConfig(alpha=alpha, n_particles=16, schedule=schedule, ramp_tokens=ramp,
                        max_new_tokens=model.max_len, seed=20_000)
        checks[f"{name} · {schedule} · N=16"] = zhat_unbiasedness(model, cfg, 400, table=tables[name])
small = SMCConfig(alpha=alpha, n_particles=2, max_new_tokens=3, seed=30_000)
checks["trap · constant · N=2"] = zhat_unbiasedness(models["trap"], small, 1000, table=tables["trap"])
zhat = pd.DataFrame(
    {k: {"mean Ẑ/Z": c.ratio, "s.e.": c.ratio_stderr, "z": c.z_score,
         "mean log Ẑ − log Z": c.mean_log_ratio, "its s.e.": c.log_ratio_stderr}
     for k, c in checks.items()}
).T
for k, c in checks.items():
    assert abs(c.z_score) < 4, (k, c.z_score)
jensen = checks["trap · constant · N=2"]
assert jensen.mean_log_ratio < -4 * jensen.log_ratio_stderr  # log Ẑ is biased, Ẑ is not
zhat
'''),
    code('''
zhat_figure(checks)
'''),
    md("""
## ESS with and without bridging

Bridging changes the *path* (and so the proposal temperatures and the weights on the way), not
the target. Its effect on the ESS depends on the model. It helps when the likely prefixes are the
ones with uncertain continuations — on the trap, the (α_t − α_{t−1})·log p(prefix) factor that
bridging adds partly cancels the Rényi-entropy factor (1 − α)·H_α. Where the two are unrelated it
can make no difference or cost ESS: we show the trap, the random model above, and a second random
model (V = 5, L = 6, seed 3). Mean ESS/N per step over 50 runs with N = 64 and κ = 0.5, and the
fraction of runs that resample.
"""),
    code('''
ess_models = models | {"random V=5 L=6 seed=3": ToyLM.random(5, 6, seed=3)}
ess = {name: ess_traces(model, alpha, SCHEDULES, runs=50, n_particles=64, ramp_tokens=ramp)
       for name, model in ess_models.items()}
ess_traces_figure(ess["trap"])
'''),
    code('''
ess_traces_figure(ess["random V=5 L=6 seed=3"])
'''),
    code('''
per_run = pd.concat(
    [df.assign(model=name) for name, df in ess.items()]
).groupby(["model", "schedule", "run"]).agg(min_ess=("ess_fraction", "min"),
                                            resamples=("resampled", "sum"))
stability = per_run.groupby(["model", "schedule"]).agg(
    mean_min_ess=("min_ess", "mean"), se=("min_ess", lambda x: x.std(ddof=1) / np.sqrt(len(x))),
    mean_resamples=("resamples", "mean"))
def bridging_gap(model_name):
    """mean min ESS/N with linear bridging minus without, and its standard error."""
    c, l = stability.loc[(model_name, "constant")], stability.loc[(model_name, "linear")]
    return l.mean_min_ess - c.mean_min_ess, math.hypot(l.se, c.se)

# The sign of the effect is model-dependent; each claim must clear 4 combined standard errors.
gain, gain_se = bridging_gap("trap")
assert gain > 4 * gain_se, (gain, gain_se)
loss, loss_se = bridging_gap("random V=5 L=6 seed=3")
assert loss < -4 * loss_se, (loss, loss_se)
for name in ess_models:
    g, se = bridging_gap(name)
    print(f"{name}: min ESS/N linear − constant = {g:+.3f} ± {se:.3f}")
stability
'''),
    md("""
**Reading.** All three schedules converge to the exact π_α at the Monte-Carlo rate N^(−1/2),
with no detectable bias, and Ẑ is unbiased for Z_α, while token-level temperature fails the
same tests. The ESS gain from bridging is real on the trap (the minimum ESS/N rises from about
0.28 to 0.43 and resampling is rarely needed) but not universal: on the first random model the
schedules tie, and on the second bridging lowers the minimum ESS. Bridging is a tuning choice
for stability, never a change of target.
"""),
]

# ---------------------------------------------------------------------------------------------
NB4 = [
    md(r"""
# 4. Cost vs accuracy: MH power sampling vs Power-SMC

**Claim.** Both methods return one sample whose law approaches π_α as their budget grows — K MH
steps per block for Metropolis–Hastings power sampling (Karan & Du, 2025), N particles for
Power-SMC — and they pay for it in model calls (token forwards). We measure

$$
\mathrm{TV}\big(\mathcal L(\hat y),\,\pi_\alpha\big)\ \text{ against }\ \mathbb E[\#\text{token forwards}],
$$

estimating the law of the returned sample ŷ by a histogram over 300 seeded runs. A histogram of
300 *exact* draws is itself ≈ a floor away from π_α; that Monte-Carlo floor (mean ± sd) is drawn as
a band and used in the tolerances. At budget 0 (K = 0) and N = 1 both methods are token-level
temperature 1/α, a built-in consistency check.
"""),
    code(SETUP + TOY_THREADS + '''
from powersmc_core import ToyLM
from powersmc_core.exact import enumerate_sequences
from powersmc_core.plotting.theory import mh_vs_smc_figure
from powersmc_core.theory import mh_vs_smc, power_vs_temperature

alpha, runs = 4.0, 300
models = {"trap": ToyLM.trap(), "random V=5 L=5 seed=2": ToyLM.random(5, 5, seed=2)}
tables = {name: enumerate_sequences(m) for name, m in models.items()}
results = {
    name: mh_vs_smc(model, alpha, mh_steps=(0, 1, 2, 4, 8, 16), n_particles=(1, 2, 4, 8, 16, 32),
                    runs=runs, seed=0, table=tables[name])
    for name, model in models.items()
}
'''),
    code('''
mh_vs_smc_figure(results["trap"], title="Trap model, alpha = 4")
'''),
    code('''
mh_vs_smc_figure(results["random V=5 L=5 seed=2"], title="Random toy model (V=5, L=5), alpha = 4")
'''),
    code('''
pd.concat([df.assign(model=name) for name, df in results.items()])[
    ["model", "method", "budget", "token_forwards", "tv", "tv_floor"]
]
'''),
    md("""
**Checks.** Histogram TVs move by about the floor's sd between seeds, so tolerances are in units
of the floor: (i) at K = 0 and N = 1 each method's TV equals the exact TV(token T = 1/α, π_α)
within floor + 4·sd; (ii) on the trap both methods reach the floor at their largest budget
(TV ≤ floor + 4·sd); (iii) on the trap, at the cost of N = 16 particles, Power-SMC is more
accurate than MH interpolated (linearly in log forwards) to the same cost, by more than
4·√2·sd.
"""),
    code('''
def at_cost(df, forwards):
    """TV of a method's curve interpolated linearly in log forwards."""
    return float(np.interp(np.log(forwards), np.log(df["token_forwards"]), df["tv"]))

summary = {}
for name, df in results.items():
    floor, sd = df["tv_floor"].iloc[0], df["tv_floor_sd"].iloc[0]
    exact_tv = power_vs_temperature(models[name], alpha, table=tables[name]).tv_power_vs_temperature
    zero = df[((df.method == "mh") & (df.budget == 0)) | ((df.method == "smc") & (df.budget == 1))]
    assert (zero["tv"] - exact_tv).abs().max() < floor + 4 * sd, (name, zero["tv"].tolist(), exact_tv)
    summary[name] = {"exact TV(token T, pi)": exact_tv, "floor": floor, "floor sd": sd}

trap = results["trap"]
floor, sd = trap["tv_floor"].iloc[0], trap["tv_floor_sd"].iloc[0]
mh, smc = trap[trap.method == "mh"], trap[trap.method == "smc"]
assert mh["tv"].iloc[-1] <= floor + 4 * sd and smc["tv"].iloc[-1] <= floor + 4 * sd
cost = float(smc.loc[smc.budget == 16, "token_forwards"].iloc[0])
smc_tv, mh_tv = float(smc.loc[smc.budget == 16, "tv"].iloc[0]), at_cost(mh, cost)
assert mh_tv - smc_tv > 4 * math.sqrt(2) * sd, (mh_tv, smc_tv, sd)
summary["trap"] |= {"forwards at N=16": cost, "SMC TV": smc_tv, "MH TV at same cost": mh_tv}
pd.DataFrame(summary).T
'''),
    md("""
## Where each wins

For every budget of one method, the other method's TV at the same cost (interpolated in log
forwards, only inside the range it was measured on). A difference smaller than about 2·√2·sd of
the floor is a tie at this number of runs.
"""),
    code('''
rows = []
for name, df in results.items():
    sd = df["tv_floor_sd"].iloc[0]
    mh, smc = df[df.method == "mh"], df[df.method == "smc"]
    for _, r in smc.iterrows():
        f = r["token_forwards"]
        if mh["token_forwards"].min() <= f <= mh["token_forwards"].max():
            diff = at_cost(mh, f) - r["tv"]
            winner = "tie" if abs(diff) < 2 * math.sqrt(2) * sd else ("SMC" if diff > 0 else "MH")
            rows.append({"model": name, "forwards": round(f, 1), "SMC N": int(r["budget"]),
                         "TV SMC": r["tv"], "TV MH (same cost)": at_cost(mh, f), "winner": winner})
pd.DataFrame(rows)
'''),
    md("""
**Reading.** On the trap Power-SMC is more accurate than MH at every matched cost and reaches the
Monte-Carlo floor at about 48 token forwards (N = 16), where MH needs about 80 (K = 16): MH must
revisit the first token to escape the locally likely branch A, and each revisit re-runs the whole
suffix, while SMC's weights move mass to "B x" as soon as the particles see it. On the random
model both converge slowly at α = 4; the methods tie (within the Monte-Carlo noise) at 20–80
forwards and SMC is ahead at 150. MH does not win on token forwards on these models; its
advantages lie elsewhere — it holds one sequence in memory, and more MH steps keep improving a
single chain without a batch. In wall-clock time on parallel hardware SMC gains further, since
its forwards are batched N at a time.
"""),
]

# ---------------------------------------------------------------------------------------------
NB5 = [
    md(r"""
# 5. Rényi diagnostics on a real model

**Claim.** With the optimal proposal τ = 1/α and no bridging step, each particle's log
incremental weight is a function of its prefix alone, (1 − α)·H_α(p(·|prefix_i)). So the weights
spread — and the ESS drops — exactly where particles' prefixes disagree in Rényi entropy; when
weights start equal, the drop is governed by that spread:

$$
\log G_{t,i} = (1-\alpha)\,H_\alpha\big(p(\cdot\mid y^{(i)}_{<t})\big),
\qquad
-\log\frac{\mathrm{ESS}_t}{\mathrm{ESS}_{t-1}} \approx (\alpha-1)^2\,\operatorname{Var}_{W}\big(H_\alpha\big)
\ \text{ (small spreads).}
$$

We run Power-SMC on the embedded SmolLM2-135M-Instruct with a few reasoning prompts and short
generations (CPU-friendly), plot H_α along the completions, its spread across particles, the
ESS, and count resampling events per bridging schedule.
"""),
    code(SETUP + '''
from scipy.stats import spearmanr

import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
from transformers.utils import logging as hf_logging

from powersmc_core import PowerSMC, SMCConfig
from powersmc_core.models.loading import load_model
from powersmc_core.plotting.theory import renyi_diagnostics_figure, resampling_counts_figure
from powersmc_core.theory import renyi_diagnostics, renyi_identity_from_records, resampling_counts

hf_logging.disable_progress_bar()  # keep weight-loading bars out of the saved outputs
lm = load_model("smollm2")
prompts = [
    "Solve step by step: Tom has 3 boxes with 12 apples each and eats 5. How many are left?",
    "Is 91 a prime number? Explain your reasoning briefly.",
    "What is 15% of 80? Show your work.",
]
prompt_ids = [lm.encode_prompt(p) for p in prompts]
ALPHA, N, MAX_NEW = 2.0, 8, 16  # short generations: the whole notebook runs in minutes on 2 CPUs
'''),
    md("""
## One run, constant schedule
"""),
    code('''
cfg = SMCConfig(alpha=ALPHA, n_particles=N, max_new_tokens=MAX_NEW, seed=0)
runs = {i: list(PowerSMC(lm, cfg).stream(ids)) for i, ids in enumerate(prompt_ids)}
diag = {i: renyi_diagnostics(recs) for i, recs in runs.items()}
renyi_diagnostics_figure(diag[0], title=f"Prompt 0, alpha = {ALPHA:g}, N = {N}")
'''),
    code('''
final = runs[0][-1]
pd.DataFrame({"text": final.texts, "weight": np.exp(final.log_weights)}).sort_values(
    "weight", ascending=False).head(6)
'''),
    code('''
renyi_diagnostics_figure(diag[1], title=f"Prompt 1, alpha = {ALPHA:g}, N = {N}")
'''),
    md("""
**Checks.** (i) The identity holds in every recorded step: |log G − (1 − α)·H_α| is float32
rounding (log-probs come out of the model in float32: tolerance 1e-4·(1 + α·|log p|) with
|log p| ≲ 25 nats). (ii) The ESS drop lines up with the spread: over every step of the three runs,
with the weights W_{t−1} each step started from recovered from its record,
−log(ESS_t/ESS⁺_{t−1}) and (α − 1)²·Var_W(H_α) have a positive Spearman rank correlation
with p < 10⁻³ (ESS⁺ is the ESS after the previous step's resampling, N if it resampled);
where the entropies do not spread (Var_W H_α < 10⁻⁸) the ESS does not drop (|log ratio| < 10⁻⁶).
"""),
    code('''
identity = pd.concat([renyi_identity_from_records(recs).assign(prompt=i) for i, recs in runs.items()])
assert (identity["max_abs_error"] < 1e-4 * (1 + ALPHA * 25)).all(), identity["max_abs_error"].max()
steps = pd.concat([d.assign(prompt=i) for i, d in diag.items()], ignore_index=True)
steps["predicted_drop"] = (ALPHA - 1) ** 2 * steps["renyi_wstd"] ** 2
steps["observed_drop"] = -steps["ess_drop"]
flat = steps["predicted_drop"] < 1e-8
assert (steps.loc[flat, "observed_drop"].abs() < 1e-6).all()
rho, pval = spearmanr(steps["predicted_drop"], steps["observed_drop"])
assert rho > 0 and pval < 1e-3, (rho, pval)
print(f"Spearman rho = {rho:.3f} (p = {pval:.1e}) over {len(steps)} steps; "
      f"{int(flat.sum())} steps with no Rényi spread")
'''),
    code('''
import plotly.express as px

px.scatter(
    steps, x="predicted_drop", y="observed_drop", color=steps["prompt"].astype(str),
    labels={"predicted_drop": "(α−1)²·Var_W(H_α)", "observed_drop": "−log(ESS_t / ESS_{t−1})",
            "color": "prompt"},
    title="ESS drops line up with the Rényi-entropy spread", template="plotly_white",
).add_shape(type="line", x0=0, y0=0, x1=steps["predicted_drop"].max(),
            y1=steps["predicted_drop"].max(), line={"dash": "dash", "color": "#111"})
'''),
    md("""
## Bridging schedules and resampling counts

The same prompts and seed with the constant schedule (the runs above), a linear ramp from α = 1
over 8 tokens, and the adaptive ramp (CESS ≥ 0.5): how often each resamples (κ = 0.5).
"""),
    code('''
constant = pd.DataFrame(
    [{"schedule": "constant", "prompt": i, "seed": 0, "n_resamples": int(d["resampled"].sum()),
      "n_steps": len(d), "min_ess_fraction": float(d["ess_fraction"].min()),
      "mean_renyi_std": float(d["renyi_std"].mean())} for i, d in diag.items()]
)
bridged = resampling_counts(
    lm, prompt_ids, ALPHA, schedules=("linear", "adaptive"), seeds=(0,),
    n_particles=N, max_new_tokens=MAX_NEW, ramp_tokens=8,
)
counts = pd.concat([constant, bridged], ignore_index=True)
resampling_counts_figure(counts)
'''),
    code('''
table = counts.groupby("schedule", sort=False)[["n_resamples", "min_ess_fraction", "n_steps"]].mean()
assert (counts["n_resamples"] <= counts["n_steps"]).all()
table
'''),
    md("""
**Reading.** On a confident small model most steps have nearly identical next-token entropies
across particles, so the weights barely move; the ESS drops come in bursts at the tokens where
particles have branched into continuations of different Rényi entropy — exactly the
(α − 1)²·Var(H_α) prediction. The resampling counts per schedule are measured above; bridging
trades early weight spread for a hotter proposal and a catch-up term, so its effect on resampling
is model- and prompt-dependent (compare notebook 3). With these short generations the adaptive
schedule's CESS brake rarely engages, so it mostly follows the linear ramp.
"""),
]

NOTEBOOKS = {
    "01_power_vs_temperature.ipynb": NB1,
    "02_optimal_proposal.ipynb": NB2,
    "03_bridging_keeps_target.ipynb": NB3,
    "04_mh_vs_smc.ipynb": NB4,
    "05_renyi_diagnostics_real_model.ipynb": NB5,
}


def build(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 1200) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    client.execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run and save with outputs")
    parser.add_argument("--only", nargs="*", default=None, help="name prefixes, e.g. 01 03")
    parser.add_argument("--no-png", action="store_true", help="skip static PNG copies")
    args = parser.parse_args(argv)
    if args.execute and not args.no_png:
        os.environ["POWERSMC_NOTEBOOK_PNG"] = "1"
    for name, cells in NOTEBOOKS.items():
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        nb = build(cells)
        if args.execute:
            start = time.perf_counter()
            execute(nb)
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
