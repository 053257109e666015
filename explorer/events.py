"""What ``GatedRun.events()`` yields: one small frozen record per event, read by field name.

* Live SMC: ``explorer.live.Update`` (a record, the records so far, light or full redraw).
* Compare: ``MethodDone`` once per method, in the order asked.
* Task set: one ``TaskRows`` with every graded run.
* Theory lab: ``CheckDone`` once per Monte-Carlo check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from powersmc_core.engine.records import SMCResult

__all__ = ["CheckDone", "MethodDone", "TaskRows"]


@dataclass(frozen=True)
class MethodDone:
    """One Compare method finished: its result and wall seconds (sampling only)."""

    method: str
    result: SMCResult
    seconds: float


@dataclass(frozen=True)
class TaskRows:
    """The task set finished: one row per (problem, method) graded run."""

    rows: Any  # the harness's table (a DataFrame)


@dataclass(frozen=True)
class CheckDone:
    """One Theory-lab check finished: ``name`` (estimate, tv_vs_n, ...) and its result."""

    name: str
    result: Any
