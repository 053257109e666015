"""Plotly figure builders shared by the app and the notebooks (records in, figures out)."""

from powersmc_core.plotting.answer_chart import answer_bars, answer_posterior_figure
from powersmc_core.plotting.live import (
    ess_figure,
    genealogy_figure,
    live_figures,
    log_weight_heatmap,
    renyi_figure,
    schedule_figure,
    weights_figure,
)
from powersmc_core.plotting.stopped import stopped_law_figure
from powersmc_core.plotting.style import METHOD_COLORS, particle_color, particle_colors
from powersmc_core.plotting.theory import (
    ess_traces_figure,
    mh_vs_smc_figure,
    power_comparison_figure,
    renyi_diagnostics_figure,
    renyi_identity_figure,
    renyi_variance_figure,
    resampling_counts_figure,
    tau_star_figure,
    tv_curves_figure,
    tv_vs_n_figure,
    weight_variance_figure,
    zhat_figure,
)

__all__ = [
    "METHOD_COLORS",
    "answer_bars",
    "answer_posterior_figure",
    "ess_figure",
    "ess_traces_figure",
    "genealogy_figure",
    "live_figures",
    "log_weight_heatmap",
    "mh_vs_smc_figure",
    "particle_color",
    "particle_colors",
    "power_comparison_figure",
    "renyi_diagnostics_figure",
    "renyi_figure",
    "renyi_identity_figure",
    "renyi_variance_figure",
    "resampling_counts_figure",
    "schedule_figure",
    "stopped_law_figure",
    "tau_star_figure",
    "tv_curves_figure",
    "tv_vs_n_figure",
    "weight_variance_figure",
    "weights_figure",
    "zhat_figure",
]
