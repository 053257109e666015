"""The Theory lab's Monte-Carlo checks on enumerable toy models, one at a time.

``run_checks`` yields (name, result) for: the SMC estimate of pi_alpha against the
exact law, mean TV against N, the incremental-weight variance over proposal
temperatures, and ESS traces per bridging schedule. Its budget (runs x N) is bounded
by the caps through ``explorer.gate``, which also holds a queue slot while it runs.

``stop_targets`` is exact and needs no sampler: under the visitor's stop strings
(parsed by ``inputs.make_stop``, the Live page's policy, and bounded here) it gives
the samplers' target, P_stop^alpha / Z, beside "pi_alpha, then cut at the stop".
Enumeration is cheap because only the ``THEORY_MODELS`` are offered (at most 4^5
continuations).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from explorer.inputs import make_stop
from powersmc_core import theory
from powersmc_core.engine.config import SMCConfig
from powersmc_core.models.toy import ToyLM
from powersmc_core.plotting import live as live_charts
from powersmc_core.plotting import theory as theory_charts
from powersmc_core.theory.exact import enumerate_sequences

__all__ = [
    "THEORY_MODELS",
    "TheorySettings",
    "comparison_figure",
    "default_stop",
    "run_checks",
    "stop_targets",
]

THEORY_MODELS = ("toy-trap", "toy-random:3,8,0", "toy-random:4,5,1", "toy-random:4,4,0")


@dataclass(frozen=True)
class TheorySettings:
    """The Theory lab's Monte-Carlo budget: N for the estimate, runs per point, max N of the sweep."""

    alpha: float = 4.0
    n_particles: int = 16
    runs: int = 20
    n_max: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        SMCConfig(alpha=self.alpha, n_particles=self.n_particles, seed=self.seed)
        for name, value, low in (("runs", self.runs, 2), ("max N", self.n_max, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    def n_values(self) -> list[int]:
        """Powers of two from 2 to n_max (the TV-vs-N sweep)."""
        return [2**k for k in range(1, int(math.log2(self.n_max)) + 1)]


def run_checks(model: ToyLM, settings: TheorySettings) -> Iterator[tuple[str, Any]]:
    """The lab's Monte-Carlo checks one at a time, as (name, result), for a progress display.

    estimate: SMC estimate of pi_alpha (``theory.smc_estimate``); tv_vs_n: mean TV against N;
    weight_variance: Var of w = p^alpha/q_tau over tau on the model's next-token rows;
    ess_traces: ESS/N per step for each bridging schedule.
    """
    config = SMCConfig(alpha=settings.alpha, n_particles=settings.n_particles, seed=settings.seed)
    # The table the estimate is scored against must end sequences where the sampler does.
    table = enumerate_sequences(model, (), max_new_tokens=config.max_new_tokens)
    yield "estimate", theory.smc_estimate(model, config, settings.runs, table=table)
    yield (
        "tv_vs_n",
        theory.tv_vs_n(
            model,
            settings.alpha,
            settings.n_values(),
            settings.runs,
            seed=settings.seed,
            table=table,
        ),
    )
    rows = theory.next_token_rows(model, (), model.max_len, seed=settings.seed)
    taus = np.geomspace(0.05 / settings.alpha, 20.0 / settings.alpha, 61)
    yield "weight_variance", theory.incremental_weight_variance(rows, settings.alpha, taus)
    yield (
        "ess_traces",
        theory.ess_traces(
            model,
            settings.alpha,
            runs=settings.runs,
            seed=settings.seed,
            n_particles=settings.n_particles,
        ),
    )


def default_stop(model: ToyLM) -> str:
    """The most likely first token's text: a stop string that changes the target visibly."""
    log_p = model.next_token_logprobs(()).clone()  # the model's own row: never edit it
    log_p[list(model.eos_token_ids)] = -math.inf
    return model.token_name(int(log_p.argmax()))


def stop_targets(model: ToyLM, alpha: float, stop_strings: str) -> theory.StoppedLawTargets:
    """Exact targets under the comma-separated ``stop_strings`` (see module); InputError
    with a message fit for the page when the field is empty or over the bounds."""
    stop = make_stop("stop strings", stop_strings)  # the input policy's caps on count and length
    assert stop is not None  # make_stop raises on an empty field
    return theory.stopped_law_targets(model, alpha, stop)


def comparison_figure(
    comparison: Any, settings: TheorySettings, results: dict[str, Any] | None
) -> go.Figure:
    """Exact pi_alpha against token-level temperature (top 20), with the SMC estimate and
    its TV to pi_alpha when the checks ran (``results``)."""
    figure = theory_charts.power_comparison_figure(comparison, top=20)
    if results:
        est = results["estimate"]
        live_charts.add_estimate_bars(
            figure,
            comparison.labels,
            est.estimate,
            est.estimate_stderr,
            name=f"Power-SMC estimate (N={settings.n_particles}, {settings.runs} runs)",
        )
        figure.update_layout(title=figure.layout.title.text + f"; TV(SMC, π_α) = {est.tv:.3f}")
    return figure
