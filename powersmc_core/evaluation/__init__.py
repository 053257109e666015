"""Evaluation harness: accuracy, likelihood and latency of every method on reasoning tasks.

tasks (generated / loaded problems) -> methods (one sampler run -> one graded row)
-> runner (resumable result file) -> sweep (local, process pool, Ray) -> summary / plots.
``python -m powersmc_core eval ...`` (or ``python -m powersmc_core.evaluation ...``).
"""

from powersmc_core.answers.grading import extract_answer, is_equivalent, normalise
from powersmc_core.evaluation.api import run_task_comparison
from powersmc_core.evaluation.plots import (
    accuracy_latency_figure,
    save_figure,
    save_report_figures,
    sweep_figure,
)
from powersmc_core.evaluation.problem_run import METHODS, EvalSettings, run_one
from powersmc_core.evaluation.runner import ResultStore, run_eval
from powersmc_core.evaluation.summary import (
    format_pairs,
    format_table,
    mcnemar_exact,
    paired_comparisons,
    summary_table,
    wilson_interval,
)
from powersmc_core.evaluation.sweep import settings_grid
from powersmc_core.evaluation.tasks import (
    Problem,
    arithmetic_problems,
    load_gsm8k,
    load_math500,
    load_task,
    word_problems,
)

__all__ = [
    "METHODS",
    "EvalSettings",
    "Problem",
    "ResultStore",
    "accuracy_latency_figure",
    "arithmetic_problems",
    "extract_answer",
    "format_pairs",
    "format_table",
    "is_equivalent",
    "load_gsm8k",
    "load_math500",
    "load_task",
    "mcnemar_exact",
    "normalise",
    "paired_comparisons",
    "run_eval",
    "run_one",
    "run_task_comparison",
    "save_figure",
    "save_report_figures",
    "settings_grid",
    "summary_table",
    "sweep_figure",
    "wilson_interval",
    "word_problems",
]
