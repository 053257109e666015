"""Resumable evaluation: plan (problem, method, config) jobs, skip those done, store rows.

A row's key is (problem id, method, config hash); the hash covers the model and the
settings the method reads. ``ResultStore`` loads the keys already in the output file,
and new rows are flushed in chunks by rewriting the file to a temporary name and
renaming it over the old one, so an interrupted run (Ctrl-C, a crash, an exception in
a progress callback) leaves a complete file holding every row flushed so far; the next
run computes only the missing keys. Parquet (pyarrow) or CSV, chosen by extension.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from powersmc_core.evaluation.jobs import Job, plan_jobs
from powersmc_core.evaluation.problem_run import EvalSettings
from powersmc_core.evaluation.sweep import execute
from powersmc_core.evaluation.tasks import Problem
from powersmc_core.io.cells import restore_frame, safe_frame
from powersmc_core.models.backends import backend_of, resolve_backend
from powersmc_core.models.base import LanguageModel

# Job and plan_jobs live in .jobs (shared with .sweep); re-exported for existing imports.
__all__ = [
    "COLUMNS",
    "KEY",
    "RULE_COLUMNS",
    "Job",
    "ProgressCallback",
    "ResultStore",
    "canonical_columns",
    "plan_jobs",
    "run_eval",
]

# Column -> kind; both file formats are read back to exactly these dtypes.
COLUMNS: dict[str, str] = {
    "model": "str",
    "task": "str",
    "problem_id": "str",
    "difficulty": "int",
    "method": "str",
    "config_hash": "str",
    "config": "str",
    "alpha": "float",
    "n_particles": "int",
    "schedule": "str",
    "max_new_tokens": "int",
    "seed": "int",
    "reference": "str",
    "answer": "str?",
    "correct": "bool",
    "completion": "str",
    "log_p": "float",
    "tokens": "int",
    "log_p_per_token": "float",
    "latency_s": "float",
    "token_forwards": "int",
    "n_resamples": "int",
    "ess_min": "float",
    "mh_acceptance": "float",
    "finished": "bool",
    # Answer decision rules (see answers.py); "bool?" is missing in files written before them.
    "answer_weighted": "str?",
    "correct_weighted": "bool?",
    "answer_majority": "str?",
    "correct_majority": "bool?",
    "answer_mass": "float",
    "no_answer_mass": "float",
}
# Rule -> (answer column, correct column) of a row.
RULE_COLUMNS: dict[str, tuple[str, str]] = {
    "chosen": ("answer", "correct"),
    "weighted-vote": ("answer_weighted", "correct_weighted"),
    "majority-vote": ("answer_majority", "correct_majority"),
}
KEY = ("problem_id", "method", "config_hash")

# callback(done, total, row) after every stored row; raising in it stops the run cleanly.
ProgressCallback = Callable[[int, int, dict[str, Any]], None]


def canonical_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with columns of files written before a rename under their new names
    (``particles`` -> ``n_particles``)."""
    if "particles" in df and "n_particles" not in df:
        return df.rename(columns={"particles": "n_particles"})
    return df


def frame(rows: Iterable[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Rows -> DataFrame with the canonical columns and dtypes (missing answers are None)."""
    df = canonical_columns(
        rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    )
    for name, kind in COLUMNS.items():
        if name not in df:
            df[name] = None
        col = df[name]
        if kind == "str":
            df[name] = col.fillna("").astype(str).astype(object)
        elif kind == "str?":
            df[name] = col.astype(object).where(col.notna(), None)
            df[name] = df[name].map(lambda v: None if v is None else str(v)).astype(object)
        elif kind == "int":
            df[name] = pd.to_numeric(col, errors="coerce").fillna(-1).astype("int64")
        elif kind == "float":
            df[name] = pd.to_numeric(col, errors="coerce").astype("float64")
        elif kind == "bool?":
            df[name] = col.map(lambda v: pd.NA if _missing(v) else _as_bool(v)).astype("boolean")
        else:
            df[name] = col.map(_as_bool).astype(bool)
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[[*COLUMNS, *extra]].reset_index(drop=True)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return (
        bool(value)
        if value is not None and not (isinstance(value, float) and math.isnan(value))
        else False
    )


class ResultStore:
    """Rows of one output file (or in memory when ``path`` is None), flushed in chunks."""

    def __init__(self, path: str | Path | None, chunk_size: int = 8) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None and self.path.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise ValueError(f"output must end in .csv or .parquet, got {self.path.name!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        self.chunk_size = chunk_size
        self._stored = self._read()
        self.keys: set[tuple[str, str, str]] = set(
            zip(*(self._stored[k] for k in KEY), strict=True)
        )
        self._pending: list[dict[str, Any]] = []

    @property
    def is_parquet(self) -> bool:
        return self.path is not None and self.path.suffix.lower() in (".parquet", ".pq")

    def _read(self) -> pd.DataFrame:
        if self.path is None or not self.path.exists():
            return frame([])
        try:
            if self.is_parquet:
                raw = pd.read_parquet(self.path)
            else:
                strings = {c: str for c, kind in COLUMNS.items() if kind.startswith("str")}
                empty = {c: [""] for c, kind in COLUMNS.items() if kind.endswith("?")}
                raw = restore_frame(
                    pd.read_csv(self.path, dtype=strings, keep_default_na=False, na_values=empty)
                )
        except Exception as err:
            raise ValueError(
                f"cannot read existing results {self.path} ({err}); move it away or pick "
                "another --out"
            ) from err
        missing = [k for k in KEY if k not in raw]
        if missing:
            raise ValueError(f"{self.path} is not a results file (no columns {missing})")
        return frame(raw)

    def add(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        self.keys.add(tuple(row[k] for k in KEY))
        if len(self._pending) >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        """Move pending rows into the table and rewrite the file atomically."""
        if not self._pending:
            return
        self._stored = frame(pd.concat([self._stored, frame(self._pending)], ignore_index=True))
        self._pending = []
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        if self.is_parquet:
            self._stored.to_parquet(tmp, index=False)
        else:
            # Completions and answers are model text: no cell may run as a spreadsheet
            # formula (undone by restore_frame when the file is read back to resume).
            safe_frame(self._stored).to_csv(tmp, index=False)
        os.replace(tmp, self.path)

    def table(self) -> pd.DataFrame:
        """Every row, stored and pending."""
        if not self._pending:
            return self._stored.copy()
        return frame(pd.concat([self._stored, frame(self._pending)], ignore_index=True))


def model_label(
    model: LanguageModel | None, model_spec: str | None, options: dict[str, Any] | None = None
) -> str:
    """The model part of every resume key: the name, plus ``@backend`` when not torch.

    Rows from llama.cpp and torch differ (a quantised forward), so a results file must not
    resume one with the other; torch rows keep the bare name files have always used.
    """
    if model_spec is None:
        assert model is not None
        name, backend = model.name, backend_of(model)[0]
    else:
        options = options or {}
        name = model_spec
        backend = resolve_backend(
            model_spec,
            options.get("backend", "torch"),
            options.get("device"),
            options.get("n_particles"),
            options.get("threads"),
        )
    return name if backend == "torch" else f"{name}@{backend}"


def run_eval(
    problems: Sequence[Problem],
    methods: Sequence[str] | str,
    settings: EvalSettings | Sequence[EvalSettings],
    *,
    model: LanguageModel | None = None,
    model_spec: str | None = None,
    model_options: dict[str, Any] | None = None,
    out: str | Path | None = None,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    gpus_per_task: float | None = None,
    progress: bool = True,
    callback: ProgressCallback | None = None,
    chunk_size: int = 8,
    on_step: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Run every missing job, store rows as they complete; return all rows of this plan.

    executor: "local" (in this process, or a process pool when workers > 1) or "ray".
    A pool or Ray needs ``model_spec`` (a ``load_model`` name) so each worker loads its own
    model once; in-process runs may pass a ``model`` object instead. ``on_step`` (in-process
    only) is called after every sampler record: raising there stops the sweep within one
    token step or MH proposal.
    """
    if model is None and model_spec is None:
        raise ValueError("pass a model object or a model_spec name")
    label = model_label(model, model_spec, model_options)
    jobs = plan_jobs(problems, methods, settings, label)
    store = ResultStore(out, chunk_size)
    todo = [job for job in jobs if job.key not in store.keys]
    total, done = len(jobs), len(jobs) - len(todo)
    bar = tqdm(total=total, initial=done, desc="eval", unit="run", disable=not progress)
    try:
        for row in execute(
            todo,
            model=model,
            model_spec=model_spec,
            model_label=label,
            model_options=model_options,
            executor=executor,
            workers=workers,
            ray_address=ray_address,
            gpus_per_task=gpus_per_task,
            on_step=on_step,
        ):
            store.add(row)
            done += 1
            bar.update(1)
            bar.set_postfix_str(f"{row['method']} {'✓' if row['correct'] else '✗'}", refresh=False)
            if callback is not None:
                callback(done, total, row)
    finally:
        store.flush()
        bar.close()
    table = store.table()
    wanted = pd.DataFrame([job.key for job in jobs], columns=list(KEY))
    return frame(wanted.merge(table, on=list(KEY), how="left"))
