"""Method comparison: one prompt through every sampler, and a graded task set.

``compare_runs`` runs plain decoding, low temperature, Power-SMC, MH and best-of-N on
the same prompt (one ``registry.make_sampler`` each) and yields a ``MethodDone`` (the
result with its wall time) per method; ``comparison_frame`` turns them into the Compare
table. Pages never call
``compare_runs``: ``explorer.gate`` does, inside a queue slot, with clamped settings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from explorer.events import MethodDone
from explorer.presets import grade
from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.toy import ToyLM
from powersmc_core.samplers.registry import DESCRIPTIONS, make_sampler

__all__ = [
    "COMPARE_METHODS",
    "MethodDone",
    "compare_runs",
    "comparison_frame",
    "comparison_table",
    "evaluation_api",
]


# The library's one method registry, names and descriptions alike: a live view, so a
# method registered later (``registry.register``) is on the Compare list too.
COMPARE_METHODS: Mapping[str, str] = DESCRIPTIONS


def compare_runs(
    model: LanguageModel,
    prompt: Sequence[int],
    methods: Sequence[str],
    config: SMCConfig,
    mh_steps: int = 4,
    stop_factory: Callable[[], StopRule | None] = lambda: None,
    on_step: Callable[[], None] = lambda: None,
) -> Iterator[MethodDone]:
    """Run each method on the same prompt, yielding its ``MethodDone`` (result, wall s) in turn.

    ``on_step`` is called after every record a sampler streams (the gate checks the
    run-time cap there, so a cap holds within one step, not one method).
    """
    unknown = [m for m in methods if m not in COMPARE_METHODS]
    if unknown or not methods:
        raise ValueError(
            f"unknown methods {unknown or list(methods)}; choose from {list(COMPARE_METHODS)}"
        )
    for method in methods:
        sampler = make_sampler(method, model, config, stop=stop_factory(), mh_steps=mh_steps)
        start = time.perf_counter()
        run = sampler.stream(prompt)  # the same records and result as sampler.run(prompt)
        for _ in run:
            on_step()
        yield MethodDone(method, run.result(), time.perf_counter() - start)


def comparison_frame(
    runs: Sequence[MethodDone],
    model: LanguageModel,
    reference: str | None = None,
) -> pd.DataFrame:
    """The Compare table: latency (and its ratio to plain decoding), speed, likelihood, answer."""
    toy = isinstance(model, ToyLM)
    base_latency = next((r.seconds for r in runs if r.method == "base"), None)
    rows = []
    for done in runs:
        method, result, seconds = done.method, done.result, done.seconds
        completion = result.chosen_completion
        text = result.chosen_text
        if text is None:
            text = model.decode_batch([completion])[0]
        answer, correct = grade(text, reference, toy)
        n_tokens = max(1, len(completion))
        log_p = result.log_p[result.chosen]
        rows.append(
            {
                "key": method,
                "method": COMPARE_METHODS[method],
                "latency [s]": seconds,
                "× plain": seconds / base_latency if base_latency else math.nan,
                "tokens/s": len(completion) / seconds if seconds > 0 else math.nan,
                "tokens": len(completion),
                "log p": log_p,
                "log p / token": log_p / n_tokens,
                "completion": text,
                "answer": answer,
                "correct": correct,
            }
        )
    return pd.DataFrame(rows)


def comparison_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The Compare table as shown: method, answer and verdict first (✓ right, ✗ wrong, — not
    graded), then the timings and likelihoods, the completion last; no internal key."""
    verdict = frame["correct"].map(lambda c: "—" if c is None or c != c else ("✓" if c else "✗"))
    first = ["method", "answer"]
    rest = [c for c in frame.columns if c not in (*first, "correct", "key", "completion")]
    table = frame[first].assign(**{"correct": verdict})
    return pd.concat([table, frame[rest], frame[["completion"]]], axis=1)


def evaluation_api() -> Any | None:
    """HOOK for the lead: the task-set comparison (``evaluation.api.run_task_comparison``).

    The Compare page shows a task-set section only when this returns the module, so wiring
    it in is one call in ``app_pages/compare.py`` (see the ``HOOK`` comment there).
    """
    try:
        from powersmc_core.evaluation import api
    except ImportError:
        return None
    return api if hasattr(api, "run_task_comparison") else None
