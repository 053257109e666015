"""What the app's Compare page calls: run a small task set, summarise, plot.

    df = run_task_comparison(model, problems, ["base", "smc"], EvalSettings(alpha=4))
    summary_table(df); accuracy_latency_figure(summary_table(df))

Runs in this process on the model object the page already holds; ``progress`` is
called as progress(done, total, row) after each run (e.g. to move st.progress).
Text tasks (``load_task("arithmetic", n=5)``) need a model with ``encode_prompt``;
for toy models use ``load_task("toy", n=...)`` (answer "B x", the trap model's pi_alpha mode).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from powersmc_core.evaluation.plots import accuracy_latency_figure, save_figure, sweep_figure
from powersmc_core.evaluation.problem_run import METHODS, EvalSettings
from powersmc_core.evaluation.runner import ProgressCallback, run_eval
from powersmc_core.evaluation.summary import format_table, summary_table
from powersmc_core.evaluation.tasks import TASKS, Problem, load_task, toy_problems
from powersmc_core.models.base import LanguageModel

__all__ = [
    "METHODS",
    "TASKS",
    "EvalSettings",
    "Problem",
    "accuracy_latency_figure",
    "format_table",
    "load_task",
    "run_task_comparison",
    "save_figure",
    "summary_table",
    "sweep_figure",
    "toy_problems",
]


def run_task_comparison(
    model: LanguageModel,
    problems: Sequence[Problem],
    methods: Sequence[str] | str,
    settings: EvalSettings | Sequence[EvalSettings],
    progress: ProgressCallback | None = None,
    on_step: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """One graded row per (problem, method, config), in memory (no file, no progress bar).

    ``on_step`` is called after every sampler record (a token step or one MH proposal).
    """
    return run_eval(
        problems,
        methods,
        settings,
        model=model,
        out=None,
        progress=False,
        callback=progress,
        on_step=on_step,
    )
