"""What ``GatedRun.events()`` yields: one small frozen record per event, read by field name.

* Live SMC: ``explorer.live.Update`` (a record, the records so far, light or full redraw).
* Compare: ``MethodDone`` once per method and repeat, round by round (round r runs every
  method once), a method cut at its budget included (``cut``).
* Task set: one ``TaskRows`` with every graded run.
* Theory lab: ``CheckDone`` once per Monte-Carlo check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from powersmc_core.engine.records import SMCResult

__all__ = ["CUT_LABELS", "CheckDone", "MethodDone", "TaskRows", "steps_label"]


# Why a Compare method ended before its sampler did (``MethodDone.cut``).
CUT_LABELS = {
    "budget": "cut at budget",  # its share of the run-time cap ran out
    "cap": "cut at the run-time cap",  # the cap itself passed inside the method
    "stopped": "stopped",  # the visitor pressed Stop
}


@dataclass(frozen=True)
class MethodDone:
    """One Compare method run: its result and wall seconds (sampling only).

    ``repeat`` is the round (0 first; every round uses the same seed), ``steps`` the
    records the sampler streamed, ``cut`` why it ended early (a key of ``CUT_LABELS``)
    or None when it ran to its end; a cut run's result is its state at the cut.
    """

    method: str
    result: SMCResult
    seconds: float
    repeat: int = 0
    steps: int = 0
    cut: str | None = None

    @property
    def cut_label(self) -> str | None:
        """How it ended early, as the table says it (cut at budget (12 steps)); None
        for a run that ended on its own."""
        if self.cut is None:
            return None
        return f"{CUT_LABELS[self.cut]} ({steps_label(self.steps)})"


def steps_label(steps: int) -> str:
    """A count of steps in words: 1 step, 12 steps."""
    return f"{steps} step" + ("" if steps == 1 else "s")


@dataclass(frozen=True)
class TaskRows:
    """The task set finished: one row per (problem, method) graded run."""

    rows: Any  # the harness's table (a DataFrame)


@dataclass(frozen=True)
class CheckDone:
    """One Theory-lab check finished: ``name`` (estimate, tv_vs_n, ...) and its result."""

    name: str
    result: Any
