"""The arena: every registered sampler against the exact pi_alpha, at equal token forwards.

For each toy of the chosen suites (random tables, the trap, the pivotal family) and each
line (a registered method; one line per schedule for a method that reads ``schedule``,
so Power-SMC shows constant, linear and adaptive apart), ``runs`` seeded runs (seeds
seed + r) are made at each budget (N for particle methods, K MH steps for ``mh``, none for
``greedy``). Each run's output is put on the enumerated table as a law:

- weighted particles (default): the estimate sum_i W_i δ_{y_i} (Power-SMC, base and
  lowtemp's N draws, any registered method whose weights estimate pi_alpha);
- ``CHOSEN`` methods (best-of-N): the one sample they return, δ_{y_chosen}.

Scores per (toy, line, budget), with standard errors over the runs:

- ``forwards``: token forwards of a run, the registry's ``Method.cost`` (compute);
- ``tv``: TV(law of one run, pi_alpha), its mean over runs;
- ``tv_of_mean``: TV(mean of the runs' laws, pi_alpha), the bias that more runs cannot remove;
- ``rare_mass_error``: |mean over runs of the mass behind the pivot token - pi_alpha's|,
  on the pivotal family (the rare token) and the trap ("B"); NaN on random tables.

``matched`` reads every line at the forwards of a reference (Power-SMC with N = 32) and at
4x that, by linear interpolation in log forwards between the budgets run (a target a little
beyond a line's range reads its nearest budget, flagged ``clamped``; further out NaN):
equal compute is equal forwards.

A method registered later (``registry.register``) joins automatically; one that cannot
run on a toy is skipped with its error as the reason. Cost: runs x budgets x lines x toys
sampler runs, each a few milliseconds on these tables (``iter_arena`` yields per cell so a
caller can show progress; ``on_run`` is called after every run, e.g. to stop at a cap).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from powersmc_core.engine.config import SCHEDULES, SMCConfig
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.loading import load_model
from powersmc_core.samplers.registry import METHODS, make_sampler
from powersmc_core.theory.common import standard_error
from powersmc_core.theory.exact import (
    SequenceTable,
    enumerate_sequences,
    power_distribution,
    result_distribution,
    weighted_distribution,
)
from powersmc_core.theory.pivotal import PIVOTAL_FAMILY, pivot_token, rare_branch_mass

__all__ = [
    "BUDGETS",
    "CHOSEN",
    "KNOBS",
    "REFERENCE",
    "SUITES",
    "ArenaResult",
    "ArenaSettings",
    "Line",
    "arena_lines",
    "iter_arena",
    "matched_forwards",
    "matched_summary",
    "run_arena",
]

SUITES: dict[str, tuple[str, ...]] = {
    "random": ("toy-random:5,4,0", "toy-random:5,4,1", "toy-random:5,4,2"),
    "trap": ("toy-trap",),
    "pivotal": tuple(f"toy-pivotal:{i}" for i in PIVOTAL_FAMILY),
}
BUDGETS = (8, 16, 32, 64, 128)  # N per run for the particle methods
# Methods whose budget is another knob: (knob, values). Every other method: N = budget.
KNOBS: dict[str, tuple[str, tuple[int, ...]]] = {
    "mh": ("mh_steps", (1, 4, 16, 64)),
    "greedy": ("none", (1,)),  # deterministic: one point
}
CHOSEN = frozenset({"bon"})  # scored by the one sample returned (its weights are uniform)
REFERENCE = ("smc", 32)  # matched forwards: Power-SMC with N = 32
FACTORS = (1.0, 4.0)  # matched at 1x and 4x the reference's forwards


@dataclass(frozen=True)
class Line:
    """One curve of the arena: a method, and its schedule when it reads one."""

    method: str
    schedule: str | None = None

    @property
    def label(self) -> str:
        return self.method if self.schedule is None else f"{self.method}·{self.schedule}"


@dataclass(frozen=True)
class ArenaSettings:
    """What the arena runs: suites (``SUITES`` keys) or explicit toy names, methods (None:
    every registered one), runs per cell, N budgets, schedules of schedule-reading methods."""

    suites: tuple[str, ...] = ("random", "trap", "pivotal")
    methods: tuple[str, ...] | None = None
    runs: int = 20
    alpha: float = 4.0
    budgets: tuple[int, ...] = BUDGETS
    schedules: tuple[str, ...] = SCHEDULES
    seed: int = 0
    models: tuple[str, ...] | None = None  # explicit toy names instead of the suites' tables
    mh_steps: tuple[int, ...] | None = None  # MH budgets (default ``KNOBS["mh"]``)

    def __post_init__(self) -> None:
        SMCConfig(alpha=self.alpha, seed=self.seed)  # alpha > 0, seed >= 0, with its message
        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or self.runs < 2:
            raise ValueError(f"runs must be an integer >= 2 (error bars), got {self.runs!r}")
        if not self.budgets or any(int(b) < 1 for b in self.budgets):
            raise ValueError(f"budgets must be integers >= 1, got {self.budgets!r}")
        unknown = [s for s in self.suites if s not in SUITES]
        if unknown:
            raise ValueError(f"unknown suites {unknown}; choose from {list(SUITES)}")
        bad = [s for s in self.schedules if s not in SCHEDULES]
        if bad or not self.schedules:
            raise ValueError(f"unknown schedules {bad}; choose from {list(SCHEDULES)}")
        if self.methods is not None:
            missing = [m for m in self.methods if m not in METHODS]
            if missing or not self.methods:
                raise ValueError(f"unknown methods {missing or []}; choose from {list(METHODS)}")

    def toys(self) -> list[tuple[str, str]]:
        """(suite, toy name) pairs in order."""
        if self.models is not None:
            return [("custom", name) for name in self.models]
        return [(suite, name) for suite in self.suites for name in SUITES[suite]]

    def budget_values(self, method: str) -> tuple[str, tuple[int, ...]]:
        """(knob, values) of ``method``: ``KNOBS`` or N over ``budgets``."""
        if method == "mh" and self.mh_steps is not None:
            return "mh_steps", tuple(int(k) for k in self.mh_steps)
        return KNOBS.get(method, ("n_particles", tuple(int(b) for b in self.budgets)))


def arena_lines(settings: ArenaSettings) -> list[Line]:
    """The lines run: each chosen method, split by schedule when it reads ``schedule``."""
    names = list(settings.methods) if settings.methods is not None else list(METHODS)
    lines = []
    for name in names:
        if "schedule" in METHODS[name].fields:
            lines.extend(Line(name, s) for s in settings.schedules)
        else:
            lines.append(Line(name))
    return lines


@dataclass(frozen=True)
class Exact:
    """One toy's target: its enumeration, pi_alpha and the pivot token's exact mass."""

    model: LanguageModel
    table: SequenceTable
    pi: np.ndarray  # (S,)
    max_new_tokens: int
    pivot: int | None
    rare_mass: float  # NaN without a pivot token


def exact_target(name: str, alpha: float) -> Exact:
    model = load_model(name)
    max_new = int(model.max_len)  # the toy's own limit: every sequence ends with EOS
    table = enumerate_sequences(model, (), max_new_tokens=max_new)
    pi = power_distribution(table, alpha)
    pivot = pivot_token(model)
    mass = math.nan if pivot is None else rare_branch_mass(table, pi, pivot)
    return Exact(model, table, pi.numpy(), max_new, pivot, mass)


def _run_law(line: Line, exact: Exact, result: Any) -> np.ndarray:
    """The law a run's output puts on the table's rows, (S,)."""
    if line.method in CHOSEN:
        k = result.chosen
        law = weighted_distribution(
            exact.table, [result.completions[k]], [1.0], [result.finished[k]]
        )
    else:
        law = result_distribution(exact.table, result)
    return law.numpy()


def _cell(
    line: Line,
    exact: Exact,
    knob: str,
    budget: int,
    settings: ArenaSettings,
    on_run: Callable[[], None] | None,
) -> dict[str, Any]:
    """``runs`` seeded runs of one line at one budget, scored against the exact target."""
    method = METHODS[line.method]
    n = budget if knob == "n_particles" else 1
    config = SMCConfig(
        alpha=settings.alpha,
        n_particles=n,
        schedule=line.schedule or "constant",
        ramp_tokens=exact.max_new_tokens,  # bridging ramps over the toy's own length
        max_new_tokens=exact.max_new_tokens,
        seed=settings.seed,
    )
    laws, forwards = [], []
    for r in range(settings.runs):
        sampler = make_sampler(
            line.method,
            exact.model,
            replace(config, seed=settings.seed + r),
            n_particles=n,
            mh_steps=budget if knob == "mh_steps" else 10,
            track_text=False,
        )
        result = sampler.run([])
        laws.append(_run_law(line, exact, result))
        forwards.append(method.cost(result))
        if on_run is not None:
            on_run()
    stacked = np.stack(laws)  # (runs, S)
    tvs = 0.5 * np.abs(stacked - exact.pi[None]).sum(1)
    mean_law = stacked.mean(0)
    row: dict[str, Any] = {
        "method": line.method,
        "schedule": line.schedule or "",
        "line": line.label,
        "knob": knob,
        "budget": int(budget),
        "runs": settings.runs,
        "alpha": settings.alpha,
        "forwards": float(np.mean(forwards)),
        "forwards_se": standard_error(forwards),
        "tv": float(tvs.mean()),
        "tv_se": standard_error(tvs),
        "tv_of_mean": 0.5 * float(np.abs(mean_law - exact.pi).sum()),
        "rare_mass_exact": exact.rare_mass,
        "rare_mass": math.nan,
        "rare_mass_se": math.nan,
        "rare_mass_error": math.nan,
    }
    if exact.pivot is not None:
        masses = [rare_branch_mass(exact.table, law, exact.pivot) for law in laws]
        row["rare_mass"] = float(np.mean(masses))
        row["rare_mass_se"] = standard_error(masses)
        row["rare_mass_error"] = abs(row["rare_mass"] - exact.rare_mass)
    return row


@dataclass(frozen=True)
class ArenaEvent:
    """One cell done (``row``) or one line skipped on a toy (``skipped``: method, model, reason)."""

    done: int  # cells finished or skipped so far
    total: int
    row: dict[str, Any] | None = None
    skipped: dict[str, str] | None = None


def count_cells(settings: ArenaSettings) -> int:
    lines = arena_lines(settings)
    per_toy = sum(len(settings.budget_values(line.method)[1]) for line in lines)
    return per_toy * len(settings.toys())


def iter_arena(
    settings: ArenaSettings, on_run: Callable[[], None] | None = None
) -> Iterator[ArenaEvent]:
    """Run the arena cell by cell; a line that raises on a toy is skipped there, with why."""
    lines, total, done = arena_lines(settings), count_cells(settings), 0
    for suite, name in settings.toys():
        exact = exact_target(name, settings.alpha)
        for line in lines:
            knob, values = settings.budget_values(line.method)
            for k, budget in enumerate(values):
                try:
                    row = _cell(line, exact, knob, budget, settings, on_run)
                except (ValueError, KeyError, TypeError, NotImplementedError, RuntimeError) as err:
                    done += len(values) - k
                    reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                    skip = {"method": line.label, "model": name, "reason": reason}
                    yield ArenaEvent(done, total, skipped=skip)
                    break
                done += 1
                yield ArenaEvent(done, total, row={"suite": suite, "model": name, **row})


@dataclass
class ArenaResult:
    """The arena's rows (one per toy, line and budget), the skipped lines and the settings."""

    settings: ArenaSettings
    frame: pd.DataFrame
    skipped: list[dict[str, str]] = field(default_factory=list)

    def matched(self) -> pd.DataFrame:
        return matched_forwards(self.frame)

    def summary(self) -> pd.DataFrame:
        return matched_summary(self.matched())

    def to_dict(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        return _json_safe(
            {
                "settings": settings,
                "reference": {"method": REFERENCE[0], "n_particles": REFERENCE[1]},
                "rows": self.frame.to_dict(orient="records"),
                "matched": self.matched().to_dict(orient="records"),
                "summary": self.summary().to_dict(orient="records"),
                "skipped": self.skipped,
            }
        )

    def write(self, out: str | Path) -> dict[str, Path]:
        """arena.csv (rows), arena_matched.csv and arena.json (everything) under ``out``."""
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "csv": folder / "arena.csv",
            "matched_csv": folder / "arena_matched.csv",
            "json": folder / "arena.json",
        }
        self.frame.to_csv(paths["csv"], index=False)
        self.matched().to_csv(paths["matched_csv"], index=False)
        text = json.dumps(self.to_dict(), allow_nan=False, indent=1)
        paths["json"].write_text(text + "\n", encoding="utf-8")
        return paths


def run_arena(
    settings: ArenaSettings,
    progress: Callable[[ArenaEvent], None] | None = None,
    on_run: Callable[[], None] | None = None,
) -> ArenaResult:
    """Every cell of ``settings`` (see ``iter_arena``), collected."""
    rows, skipped = [], []
    for event in iter_arena(settings, on_run):
        if event.row is not None:
            rows.append(event.row)
        if event.skipped is not None:
            skipped.append(event.skipped)
        if progress is not None:
            progress(event)
    return ArenaResult(settings, pd.DataFrame(rows, columns=COLUMNS), skipped)


COLUMNS = [
    "suite",
    "model",
    "method",
    "schedule",
    "line",
    "knob",
    "budget",
    "runs",
    "alpha",
    "forwards",
    "forwards_se",
    "tv",
    "tv_se",
    "tv_of_mean",
    "rare_mass_exact",
    "rare_mass",
    "rare_mass_se",
    "rare_mass_error",
]
_MATCHED = ("tv", "tv_se", "rare_mass_error", "rare_mass_se")


def matched_forwards(
    frame: pd.DataFrame,
    reference: tuple[str, int] = REFERENCE,
    factors: Sequence[float] = FACTORS,
    tolerance: float = 0.25,
) -> pd.DataFrame:
    """Every line's scores at ``factor`` x the reference's forwards, per toy.

    The reference forwards are the mean over the reference method's lines (its schedules)
    at its budget. Scores are interpolated linearly in log forwards between the budgets a
    line ran. A target up to ``tolerance`` (in log forwards, 0.25: about 28%) beyond the
    forwards a line covered reads its nearest budget and says so (``clamped``: e.g. the
    constant schedule spends fewer forwards per particle than the bridging ones); further
    out the scores are NaN.
    """
    columns = [
        "suite",
        "model",
        "line",
        "factor",
        "forwards",
        *_MATCHED,
        "rare_mass_exact",
        "clamped",
    ]
    rows = []
    method, budget = reference
    for (suite, model), toy in frame.groupby(["suite", "model"], sort=False):
        ref = toy[(toy["method"] == method) & (toy["budget"] == budget)]
        if ref.empty:
            continue
        base = float(ref["forwards"].mean())
        for line, df in toy.groupby("line", sort=False):
            df = df.sort_values("forwards")
            x = np.log(df["forwards"].to_numpy(dtype=float))
            for factor in factors:
                target = math.log(factor * base)
                row = {"suite": suite, "model": model, "line": line, "factor": float(factor)}
                row["forwards"] = factor * base
                inside = x[0] - tolerance <= target <= x[-1] + tolerance
                for col in _MATCHED:
                    y = df[col].to_numpy(dtype=float)
                    row[col] = float(np.interp(target, x, y)) if inside else math.nan
                row["rare_mass_exact"] = float(df["rare_mass_exact"].iloc[0])
                row["clamped"] = bool(inside and not x[0] <= target <= x[-1])
                rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def matched_summary(matched: pd.DataFrame) -> pd.DataFrame:
    """Per suite, line and factor: the range (min, max) over the suite's toys of the TV and
    of the rare-branch mass error at matched forwards (the README's table)."""
    rows = []
    for (suite, line, factor), df in matched.groupby(["suite", "line", "factor"], sort=False):
        row = {"suite": suite, "line": line, "factor": factor, "toys": len(df)}
        for col in ("tv", "rare_mass_error"):
            values = df[col].dropna()
            row[f"{col}_min"] = float(values.min()) if len(values) else math.nan
            row[f"{col}_max"] = float(values.max()) if len(values) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null, numpy scalars as Python numbers, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
