"""Sweeps over alpha × N × schedule, and where the runs execute.

``settings_grid`` expands the sweep axes into ``EvalSettings`` points; ``execute``
yields one row per job as it completes, from one of three places:

- in this process, one job after another (``workers == 1``);
- a process pool (``workers > 1``; spawned processes, one model each, loaded once);
- Ray (``executor="ray"``): one ``ray.remote`` task per (problem, config), ``num_gpus``
  requested per task when CUDA is present, results streamed back with ``ray.wait`` as
  they finish. ``ray.init()`` starts a local instance unless ``ray_address`` names a
  cluster. Ray is an optional extra: ``pip install .[ray]``.

Models come from ``models.backends.load_model_with_backend`` (the one backend choice,
model-name parser and per-process instance cache; ``model_options`` may name
``backend`` and ``threads``, default torch), so a Ray worker process that runs many
tasks loads the model once; every row records the ``backend`` that ran it. Rows do not depend on where they ran: seeds come from problem ids.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from powersmc_core.evaluation.jobs import Job
from powersmc_core.evaluation.problem_run import EvalSettings, run_one
from powersmc_core.models.backends import backend_of, load_model_with_backend
from powersmc_core.models.base import LanguageModel

__all__ = ["execute", "settings_grid"]


def settings_grid(
    alphas: Sequence[float] = (4.0,),
    n_particles: Sequence[int] = (16,),
    schedules: Sequence[str] = ("constant",),
    **common: Any,
) -> list[EvalSettings]:
    """The product alpha × N × schedule, each point sharing the ``common`` settings."""
    return [
        EvalSettings(alpha=a, n_particles=n, schedule=s, **common)
        for a, n, s in itertools.product(alphas, n_particles, schedules)
    ]


def _load(spec: str, options: dict[str, Any]) -> LanguageModel:
    """The model on the backend ``options`` names (``backend``, ``threads``; default torch)."""
    options = dict(options)
    backend = options.pop("backend", "torch")
    return load_model_with_backend(spec, backend, **options)


def _row(
    model: LanguageModel, job: Job, label: str, on_step: Callable[[], None] | None = None
) -> dict[str, Any]:
    """One result row, with the backend that ran it (``torch`` for a model without one)."""
    row = run_one(model, job.problem, job.method, job.settings, label, on_step)
    row["backend"] = backend_of(model)[0]
    return row


def _run_job(spec: str, options: dict[str, Any], label: str, job: Job) -> dict[str, Any]:
    return _row(_load(spec, options), job, label)


def _init_worker() -> None:
    # Each worker is one of several processes on the same cores: one thread apiece.
    import torch

    torch.set_num_threads(1)


def execute(
    jobs: Sequence[Job],
    *,
    model: LanguageModel | None,
    model_spec: str | None,
    model_label: str,
    model_options: dict[str, Any] | None = None,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    gpus_per_task: float | None = None,
    on_step: Callable[[], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of ``jobs`` in completion order (in job order when sequential).

    ``on_step`` (in-process runs only) is called after every sampler record of every job.
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if not jobs:
        return
    if on_step is not None and (executor != "local" or workers > 1):
        raise ValueError("on_step needs in-process execution (executor='local', workers=1)")
    options = dict(model_options or {})
    if executor == "ray":
        yield from _execute_ray(jobs, model_spec, options, model_label, ray_address, gpus_per_task)
    elif workers > 1:
        yield from _execute_pool(jobs, model_spec, options, model_label, workers)
    else:
        spec = _need_spec(model_spec, "local") if model is None else ""
        local = model if model is not None else _load(spec, options)
        for job in jobs:
            yield _row(local, job, model_label, on_step)


def _need_spec(spec: str | None, where: str) -> str:
    if spec is None:
        raise ValueError(
            f"{where} execution loads the model in each worker: pass model_spec "
            "(a load_model name such as 'smollm2' or 'toy-trap'), not a model object"
        )
    return spec


def _execute_pool(
    jobs: Sequence[Job], spec: str | None, options: dict[str, Any], label: str, workers: int
) -> Iterator[dict[str, Any]]:
    import multiprocessing

    spec = _need_spec(spec, "process-pool")
    # spawn, not fork: forking a process that already ran torch threads can deadlock.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
    pending = set()
    queue = iter(jobs)
    try:
        # Keep a bounded window in flight so an interrupted run wastes little work.
        for job in itertools.islice(queue, 2 * workers):
            pending.add(pool.submit(_run_job, spec, options, label, job))
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(_run_job, spec, options, label, nxt))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _execute_ray(
    jobs: Sequence[Job],
    spec: str | None,
    options: dict[str, Any],
    label: str,
    address: str | None,
    gpus_per_task: float | None,
) -> Iterator[dict[str, Any]]:
    spec = _need_spec(spec, "Ray")
    try:
        import ray
    except ImportError:
        raise ImportError(
            "--ray needs the optional extra: pip install '.[ray]' (or pip install ray)"
        ) from None
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    if gpus_per_task is None:
        import torch

        gpus_per_task = 1.0 if torch.cuda.is_available() else 0.0
    remote = ray.remote(num_cpus=1, num_gpus=gpus_per_task, max_retries=0)(_run_job)
    window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    queue = iter(jobs)
    pending = [remote.remote(spec, options, label, job) for job in itertools.islice(queue, window)]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                yield ray.get(ref)
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append(remote.remote(spec, options, label, nxt))
    finally:
        for ref in pending:  # interrupted: drop what has not come back
            ray.cancel(ref)
