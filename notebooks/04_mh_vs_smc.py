# %% [markdown]
# # 4. Cost vs accuracy: MH power sampling vs Power-SMC
#
# **Claim.** Both methods return one sample whose law approaches π_α as their budget grows — K MH
# steps per block for Metropolis–Hastings power sampling (Karan & Du, 2025), N particles for
# Power-SMC — and they pay for it in model calls (token forwards). We measure
#
# $$
# \mathrm{TV}\big(\mathcal L(\hat y),\,\pi_\alpha\big)\ \text{ against }\ \mathbb E[\#\text{token forwards}],
# $$
#
# estimating the law of the returned sample ŷ by a histogram over 300 seeded runs. A histogram of
# 300 *exact* draws is itself ≈ a floor away from π_α; that Monte-Carlo floor (mean ± sd) is drawn as
# a band and used in the tolerances. At budget 0 (K = 0) and N = 1 both methods are token-level
# temperature 1/α, a built-in consistency check.

# %%
import math
import os

import numpy as np
import pandas as pd
import plotly.io as pio
import torch

# Toy tensors are tiny: one thread avoids thread start-up and contention costs.
torch.set_num_threads(1)

from powersmc_core import ToyLM
from powersmc_core.plotting.theory import mh_vs_smc_figure
from powersmc_core.theory import mh_vs_smc, power_vs_temperature
from powersmc_core.theory.exact import enumerate_sequences

# Interactive figures are stored as Plotly JSON; the committed copies also carry a PNG so
# code hosts that do not run JavaScript still show them (set by build_notebooks.py).
pio.renderers.default = (
    "plotly_mimetype+png" if os.environ.get("POWERSMC_NOTEBOOK_PNG") else "plotly_mimetype"
)
pd.set_option("display.precision", 4)

# Toy tensors are tiny: one thread avoids thread start-up and contention costs.
torch.set_num_threads(1)

alpha, runs = 4.0, 300
models = {"trap": ToyLM.trap(), "random V=5 L=5 seed=2": ToyLM.random(5, 5, seed=2)}
tables = {name: enumerate_sequences(m) for name, m in models.items()}
results = {
    name: mh_vs_smc(
        model,
        alpha,
        mh_steps=(0, 1, 2, 4, 8, 16),
        n_particles=(1, 2, 4, 8, 16, 32),
        runs=runs,
        seed=0,
        table=tables[name],
    )
    for name, model in models.items()
}

# %%
mh_vs_smc_figure(results["trap"], title="Trap model, alpha = 4")

# %%
mh_vs_smc_figure(results["random V=5 L=5 seed=2"], title="Random toy model (V=5, L=5), alpha = 4")

# %%
pd.concat([df.assign(model=name) for name, df in results.items()])[
    ["model", "method", "budget", "token_forwards", "tv", "tv_floor"]
]


# %% [markdown]
# **Checks.** Histogram TVs move by about the floor's sd between seeds, so tolerances are in units
# of the floor: (i) at K = 0 and N = 1 each method's TV equals the exact TV(token T = 1/α, π_α)
# within floor + 4·sd; (ii) on both models both methods sharpen: the TV at their largest budget is
# below their budget-0 TV by more than 4·√2·sd; (iii) on the trap, at the cost of N = 16 particles,
# Power-SMC is more accurate than MH interpolated (linearly in log forwards) to the same cost by
# more than 2·√2·sd — re-measured at that point alone with 3× the runs (a floor √3 lower), since
# at 300 runs the margin is about 3 sd and one seed in a few would call it a tie.


# %%
def at_cost(df, forwards):
    """TV of a method's curve interpolated linearly in log forwards."""
    return float(np.interp(np.log(forwards), np.log(df["token_forwards"]), df["tv"]))


summary = {}
for name, df in results.items():
    floor, sd = df["tv_floor"].iloc[0], df["tv_floor_sd"].iloc[0]
    exact_tv = power_vs_temperature(models[name], alpha, table=tables[name]).tv_power_vs_temperature
    zero = df[((df.method == "mh") & (df.budget == 0)) | ((df.method == "smc") & (df.budget == 1))]
    assert (zero["tv"] - exact_tv).abs().max() < floor + 4 * sd, (
        name,
        zero["tv"].tolist(),
        exact_tv,
    )
    summary[name] = {"exact TV(token T, pi)": exact_tv, "floor": floor, "floor sd": sd}

for name, df in results.items():
    sd = df["tv_floor_sd"].iloc[0]
    for method in ("mh", "smc"):
        tv = df.loc[df.method == method, "tv"]
        assert tv.iloc[0] - tv.iloc[-1] > 4 * math.sqrt(2) * sd, (name, method, tv.tolist())

trap = results["trap"]
mh, smc = trap[trap.method == "mh"], trap[trap.method == "smc"]
cost = float(smc.loc[smc.budget == 16, "token_forwards"].iloc[0])
# The two MH budgets whose costs bracket N = 16's, measured again with 3x the runs.
below = int(mh.loc[mh.token_forwards <= cost, "budget"].max())
above = int(mh.loc[mh.token_forwards >= cost, "budget"].min())
close = mh_vs_smc(
    models["trap"],
    alpha,
    mh_steps=(below, above),
    n_particles=(16,),
    runs=3 * runs,
    seed=1,
    table=tables["trap"],
)
close_sd = close["tv_floor_sd"].iloc[0]
close_smc, close_mh = close[close.method == "smc"], close[close.method == "mh"]
smc_tv = float(close_smc["tv"].iloc[0])
mh_tv = at_cost(close_mh, float(close_smc["token_forwards"].iloc[0]))
assert mh_tv - smc_tv > 2 * math.sqrt(2) * close_sd, (mh_tv, smc_tv, close_sd)
summary["trap"] |= {
    "forwards at N=16": cost,
    f"SMC TV ({3 * runs} runs)": smc_tv,
    f"MH TV at same cost ({3 * runs} runs)": mh_tv,
}
pd.DataFrame(summary).T

# %% [markdown]
# ## Where each wins
#
# For every budget of one method, the other method's TV at the same cost (interpolated in log
# forwards, only inside the range it was measured on). A difference smaller than about 2·√2·sd of
# the floor is a tie at this number of runs.

# %%
rows = []
for name, df in results.items():
    sd = df["tv_floor_sd"].iloc[0]
    curves = {"SMC": df[df.method == "smc"], "MH": df[df.method == "mh"]}
    for own, other in (("SMC", "MH"), ("MH", "SMC")):
        for _, r in curves[own].iterrows():
            f = r["token_forwards"]
            if (
                not curves[other]["token_forwards"].min()
                <= f
                <= curves[other]["token_forwards"].max()
            ):
                continue
            tv = {own: r["tv"], other: at_cost(curves[other], f)}
            diff = tv["MH"] - tv["SMC"]
            winner = "tie" if abs(diff) < 2 * math.sqrt(2) * sd else ("SMC" if diff > 0 else "MH")
            rows.append(
                {
                    "model": name,
                    "forwards": round(f, 1),
                    "budget": f"{own} {'N' if own == 'SMC' else 'K'} = {int(r['budget'])}",
                    "TV SMC": tv["SMC"],
                    "TV MH": tv["MH"],
                    "winner": winner,
                }
            )
pd.DataFrame(rows).sort_values(["model", "forwards"], ignore_index=True)

# %% [markdown]
# **Reading.** On the trap Power-SMC is more accurate than MH at every matched cost up to 48 token
# forwards (N = 16): MH must revisit the first token to escape the locally likely branch A, and
# each revisit re-runs the whole suffix, while SMC's weights move mass to "B x" as soon as the
# particles see it. Past that MH wins: at K = 16 (81 forwards) it reaches the Monte-Carlo floor,
# while SMC's returned particle stays at TV ≈ 0.07 at N = 16 and at N = 32. The law of one
# particle drawn from N weighted ones is π_α only as N → ∞, and on the trap it closes slowly. (An
# earlier version of this notebook said SMC reached the floor at N = 16; that was one lucky random
# stream: 2,000 runs give TV 0.067 there, and 0.076 with the earlier token sampler.) On the random
# model both converge slowly at α = 4; they mostly tie within the Monte-Carlo noise at 10–110
# forwards (SMC is ahead at 60) and SMC is ahead at 150. MH's other advantages: it holds one sequence in memory, and more MH
# steps keep improving a single chain without a batch. In wall-clock time on parallel hardware
# SMC gains, since its forwards are batched N at a time.
