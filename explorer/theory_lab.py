"""The Theory lab's Monte-Carlo checks on enumerable toy models, one at a time.

``run_checks`` yields (name, result) for: the SMC estimate of pi_alpha against the
exact law, mean TV against N for every bridging schedule, the incremental-weight variance
over proposal temperatures, and ESS traces per schedule. Its budget (runs x N x schedules)
is bounded by the caps through ``explorer.gate``, which also holds a queue slot while it runs.

``arena_settings`` and ``arena_job`` serve the Arena page: every registered sampler on toy
suites against the exact target at token forwards (``powersmc_core.theory.arena``), its
budget (runs, largest N, MH steps) clamped by ``Gate.arena``; one ``CheckDone`` per cell.

``stop_targets`` is exact and needs no sampler: under the visitor's stop strings
(parsed by ``inputs.make_stop``, the Live page's policy, and bounded here) it gives
the samplers' target, P_stop^alpha / Z, beside "pi_alpha, then cut at the stop".
Enumeration stays cheap because ``check_theory_model`` admits toy models with
V**L <= ``MAX_THEORY_SIZE`` only (at most a few hundred completions).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from explorer.events import CheckDone
from explorer.inputs import InputError, check_model_name, make_stop
from explorer.settings import DemoSettings
from powersmc_core import theory
from powersmc_core.engine.config import SCHEDULES, SMCConfig
from powersmc_core.models.names import ModelNameError, parse_model_name
from powersmc_core.models.toy import ToyLM
from powersmc_core.plotting import live as live_charts
from powersmc_core.plotting import theory as theory_charts
from powersmc_core.samplers.registry import METHODS
from powersmc_core.theory.arena import (
    BUDGETS,
    COLUMNS,
    KNOBS,
    SUITES,
    ArenaResult,
    ArenaSettings,
    iter_arena,
)
from powersmc_core.theory.exact import enumerate_sequences

__all__ = [
    "ARENA_SUITES",
    "CUSTOM_MODEL",
    "MAX_THEORY_SIZE",
    "THEORY_MODELS",
    "TheorySettings",
    "arena_job",
    "arena_methods",
    "arena_result",
    "arena_settings",
    "check_figures",
    "check_theory_model",
    "comparison_figure",
    "default_stop",
    "run_checks",
    "stop_targets",
]

# The first is the lab's default, picked by measurement (alpha 4, 20 runs, N = 2..32, ramp over
# the toy's length): constant-schedule TV 0.95 -> 0.60, linear and adaptive 0.69 -> 0.08, so
# TV is far from 0, falls with N, and bridging visibly helps (the README's schedule effect).
# The trap is the paper's teaching example (0.67 -> 0.10). toy-random:4,4,0 is no preset: its
# pi_alpha sits on a sequence the proposal always finds, so every check read TV 0.000.
THEORY_MODELS = ("toy-random:3,8,0", "toy-trap", "toy-random:4,5,1", "toy-random:4,4,3")
CUSTOM_MODEL = "custom toy-random:V,L,seed"
# Cap on V**L (vocabulary incl. EOS, max length): 3**8, the largest preset. It bounds the
# enumeration to at most a few hundred completions (8,4: 400; 4,6: 364) and the table ToyLM
# builds (V=8, L=8 would be ~1e6 rows, 60 MB per model), so every check stays in seconds.
MAX_THEORY_SIZE = 6561


def check_theory_model(name: Any, settings: DemoSettings) -> str:
    """The canonical name of an enumerable toy model the lab may run, else ``InputError``.

    Accepts the presets, ``toy-trap`` and ``toy-random:V,L,seed`` (also spelled
    ``toy-random:V,L,seed=S``) with V**L <= ``MAX_THEORY_SIZE``, within the demo allowlist.
    """
    if isinstance(name, str) and not name.strip():
        raise InputError("no toy model given: type one, e.g. toy-random:4,4,3")
    if isinstance(name, str):  # "toy-random: 4, 4, seed=3" reads as toy-random:4,4,3
        name = re.sub(r",seed=", ",", re.sub(r"\s+", "", name), flags=re.IGNORECASE)
    canonical = check_model_name(name, settings)
    try:
        spec = parse_model_name(canonical)
    except ModelNameError as err:
        raise InputError(str(err)) from None
    if spec.kind != "toy":
        raise InputError(
            f"the Theory lab enumerates every sequence, so it needs a toy model: toy-trap or "
            f"toy-random:V,L,seed, not {canonical!r}"
        )
    if spec.family == "toy-random" and spec.toy_args is not None:
        vocab, max_len, _ = spec.toy_args
        if vocab**max_len > MAX_THEORY_SIZE:
            raise InputError(
                f"{canonical} has V**L = {vocab}**{max_len} = {vocab**max_len}; the Theory lab "
                f"enumerates every sequence and admits V**L <= {MAX_THEORY_SIZE} "
                "(e.g. 3,8 or 4,6 or 5,5 or 8,4)"
            )
    return spec.name


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

    estimate: SMC estimate of pi_alpha (``theory.smc_estimate``); tv_vs_n: mean TV against N,
    one sweep per schedule in ``SCHEDULES``; weight_variance: (result, row labels) with
    Var of w = p^alpha/q_tau over tau on the model's next-token rows, each named by its prefix;
    ess_traces: ESS/N per step for each bridging schedule.
    """
    config = SMCConfig(alpha=settings.alpha, n_particles=settings.n_particles, seed=settings.seed)
    # The table the estimate is scored against must end sequences where the sampler does.
    table = enumerate_sequences(model, (), max_new_tokens=config.max_new_tokens)
    # Bridging ramps over the toy's own length: the config's 32-step default would never
    # finish within <= 8 tokens, leaving "linear" mostly one catch-up factor at the end.
    ramp = model.max_len
    yield "estimate", theory.smc_estimate(model, config, settings.runs, table=table)
    sweep = [
        theory.tv_vs_n(
            model,
            settings.alpha,
            settings.n_values(),
            settings.runs,
            schedule=schedule,
            seed=settings.seed,
            table=table,
            ramp_tokens=ramp,
        )
        for schedule in SCHEDULES
    ]
    yield "tv_vs_n", pd.concat(sweep, ignore_index=True)
    rows, prefixes = theory.next_token_path(model, (), model.max_len, seed=settings.seed)
    taus = np.geomspace(0.05 / settings.alpha, 20.0 / settings.alpha, 61)
    variance = theory.incremental_weight_variance(rows, settings.alpha, taus)
    labels = [f"p(· | {' '.join(model.token_name(t) for t in p) or 'start'})" for p in prefixes]
    yield "weight_variance", (variance, labels)
    yield (
        "ess_traces",
        theory.ess_traces(
            model,
            settings.alpha,
            SCHEDULES,
            runs=settings.runs,
            seed=settings.seed,
            n_particles=settings.n_particles,
            ramp_tokens=ramp,
        ),
    )


def check_figures(results: dict[str, Any]) -> dict[str, go.Figure]:
    """The checks' figures: TV vs N per schedule, ESS traces, weight variance (prefix-named rows)."""
    variance, labels = results["weight_variance"]
    return {
        "tv": theory_charts.tv_vs_n_figure(results["tv_vs_n"]),
        "ess": theory_charts.ess_traces_figure(results["ess_traces"]),
        "wvar": theory_charts.weight_variance_figure(
            variance, labels, legend_title="next-token distribution after the prefix"
        ),
    }


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


# ---- the arena --------------------------------------------------------------------------
ARENA_SUITES = tuple(SUITES)


def arena_methods() -> list[str]:
    """Every registered method (a method registered later is offered too)."""
    return list(METHODS)


def arena_settings(
    suites: Any, methods: Any, runs: int, n_max: int, alpha: float, seed: int, mh_max: int
) -> ArenaSettings:
    """The arena's settings from already-capped numbers: N budgets ``BUDGETS`` up to
    ``n_max`` (``n_max`` itself when below them all), MH steps up to ``mh_max``.
    ``InputError`` for an empty or unknown suite or method."""
    suites, methods = list(suites or []), list(methods or [])
    if not suites:
        raise InputError(f"choose at least one suite: {', '.join(ARENA_SUITES)}")
    if not methods:
        raise InputError("choose at least one method")
    budgets = tuple(b for b in BUDGETS if b <= n_max) or (n_max,)
    mh_steps = tuple(k for k in KNOBS["mh"][1] if k <= mh_max) or (max(1, mh_max),)
    try:
        return ArenaSettings(
            suites=tuple(str(s) for s in suites),
            methods=tuple(str(m) for m in methods),
            runs=runs,
            alpha=alpha,
            budgets=budgets,
            seed=seed,
            mh_steps=mh_steps,
        )
    except ValueError as err:
        raise InputError(str(err)) from None


def arena_job(settings: ArenaSettings, on_run: Any) -> Iterator[Any]:
    """The arena one cell at a time: ``CheckDone(label, ArenaEvent)``; ``on_run`` after
    every sampler run (the gate's checkpoint: the run-time cap holds within one run)."""
    for event in iter_arena(settings, on_run=on_run):
        label = "skipped" if event.row is None else f"{event.row['model']} · {event.row['line']}"
        yield CheckDone(label, event)


def arena_result(settings: ArenaSettings, events: list[Any]) -> ArenaResult:
    """The arena's result from the events a (possibly cut) run collected."""
    rows = [e.result.row for e in events if e.result.row is not None]
    skipped = [e.result.skipped for e in events if e.result.skipped is not None]
    return ArenaResult(settings, pd.DataFrame(rows, columns=COLUMNS), skipped)
