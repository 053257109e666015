"""The two candidate targets under a stop rule, side by side (``StoppedLawTargets`` in).

A stop rule ends a particle where it fires, with weight p(prefix)^alpha, so the samplers
target pi_stop ∝ P_stop^alpha, the power of the *stopped* law, and not "pi_alpha over
completions without the rule, then cut at its first firing". This chart draws both over
the stopped completions (the ``top`` most likely under the samplers' target), with the
stopped law P_stop itself for reference and their total variation in the title. The
Theory lab and notebook 06 draw it from the same ``theory.stopped_law_targets`` result.
"""

from __future__ import annotations

import plotly.graph_objects as go

from powersmc_core.plotting.common import layout
from powersmc_core.plotting.style import METHOD_COLORS
from powersmc_core.theory import StoppedLawTargets

__all__ = ["stopped_law_figure"]


def stopped_law_figure(targets: StoppedLawTargets, top: int | None = 20) -> go.Figure:
    """Grouped bars per stopped completion ("text [ending]"): P_stop, the samplers' target
    P_stop^alpha / Z, and pi_alpha cut at the stop; probabilities on a fixed [0, 1] axis."""
    frame = targets.frame()
    if top is not None:
        frame = frame.head(top)
    x = [f"{s} [{e}]" for s, e in zip(frame["sequence"], frame["ending"], strict=True)]
    fig = go.Figure()
    for column, name, color in (
        ("p_stopped", "stopped law P_stop (α = 1)", METHOD_COLORS["base"]),
        ("sampler_target", f"samplers' target P_stop^{targets.alpha:g} / Z", METHOD_COLORS["smc"]),
        ("cut_target", f"π_{targets.alpha:g} without the rule, then cut", METHOD_COLORS["exact"]),
    ):
        fig.add_trace(go.Bar(x=x, y=frame[column], name=name, marker_color=color))
    title = f"Under the stop rule (α = {targets.alpha:g}): TV(target, π_α cut) = {targets.tv:.3f}"
    layout(fig, title, "stopped completion [how it ended]", "probability", barmode="group")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_xaxes(type="category")
    return fig
