"""Jobs: the (problem, method, settings) runs of an evaluation and their resume keys.

The runner plans jobs and stores their rows; the sweep executes them. Both import this
module, and neither imports the other's internals in reverse (no import cycle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from powersmc_core.evaluation.problem_run import EvalSettings, config_hash, parse_methods
from powersmc_core.evaluation.tasks import Problem

__all__ = ["Job", "plan_jobs"]


@dataclass(frozen=True)
class Job:
    """One (problem, method, settings) run and its resume key."""

    problem: Problem
    method: str
    settings: EvalSettings
    key: tuple[str, str, str]


def plan_jobs(
    problems: Sequence[Problem],
    methods: Sequence[str] | str,
    settings: EvalSettings | Sequence[EvalSettings],
    model_label: str,
) -> list[Job]:
    """Every distinct (problem, method, config) job, problems outermost, duplicates dropped."""
    methods = parse_methods(methods)
    grid = [settings] if isinstance(settings, EvalSettings) else list(settings)
    if not grid:
        raise ValueError("no settings to evaluate")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError("problem ids must be unique (they key the resumable results)")
    jobs: dict[tuple[str, str, str], Job] = {}
    for problem in problems:
        for point in grid:
            for method in methods:
                key = (problem.id, method, config_hash(method, point, model_label))
                jobs.setdefault(key, Job(problem, method, point, key))
    return list(jobs.values())
