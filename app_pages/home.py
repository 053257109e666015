"""Home: what power sampling is, one exact picture, and the way to every page."""

import streamlit as st

from explorer import models
from powersmc_core import theory
from powersmc_core.plotting import theory as theory_charts

st.title("Power-SMC Explorer")
st.markdown(
    r"""
**Power sampling** draws whole answers from $\pi_\alpha(y\mid x) \propto p(y\mid x)^\alpha$:
with $\alpha > 1$ it sharpens the model's distribution over *complete sequences*, favouring
answers that are likely as a whole. Lowering the temperature token by token
($T = 1/\alpha$) is **not** the same thing: it sharpens each next-token choice given the
prefix, and can commit early to a prefix whose continuations are all weak.
**Power-SMC** ([Azizi et al., 2026, arXiv:2602.10273](https://arxiv.org/abs/2602.10273))
samples $\pi_\alpha$ with $N$ particles decoded in one batch from the proposal
$q \propto p^{1/\tau}$ ($\tau = 1/\alpha$ minimises the weight variance); importance
weights correct every token, and the particles are resampled when the effective sample size
drops. The Metropolis–Hastings power sampler compared here is
[Karan & Du, 2025, arXiv:2510.14901](https://arxiv.org/abs/2510.14901) ("Reasoning with
Sampling: Your Base Model is Smarter Than You Think").

**The target, precisely.** $\pi_\alpha$ is a law over *complete* continuations $y$: those
that end with EOS, at `max_new_tokens`, or where a stop rule fires (a stop string, a
`\boxed{}` answer). Each weighs $p(y\mid x)^\alpha$ with $p(y\mid x)$ the probability of
its tokens. Under a stop rule the sampler therefore targets the $\alpha$-power of the
**stopped** law, not "$\pi_\alpha$ without the rule, then cut at the stop": the two can be
far apart. The Theory lab computes both exactly on the toy models.
"""
)

alpha = st.slider("α", 1.0, 8.0, 4.0, step=0.5, key="home_alpha")
comparison = theory.power_vs_temperature(models.load_cached("toy-trap"), alpha)
st.plotly_chart(theory_charts.power_comparison_figure(comparison, top=None), key="home_picture")
st.caption(
    "The trap toy model, exact by enumeration: the first token is A (0.6) or B (0.4); after A "
    "three weak endings (1/3 each), after B one confident ending x (0.9). Token-level "
    "temperature follows the locally likely A; p^α concentrates on the single best answer "
    "'B x'."
)

st.subheader("Pages")
c1, c2 = st.columns(2)
c1.page_link(
    "app_pages/live_smc.py",
    label="Live SMC: watch the particles decode",
    icon=":material/monitoring:",
)
c1.page_link(
    "app_pages/compare.py",
    label="Compare: plain, low temperature, SMC, MH, best-of-N",
    icon=":material/compare_arrows:",
)
c2.page_link(
    "app_pages/theory_lab.py",
    label="Theory lab: exact checks on toy models",
    icon=":material/functions:",
)
c2.page_link(
    "app_pages/runs.py", label="Runs: history, downloads, replay", icon=":material/history:"
)
