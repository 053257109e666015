"""``bench --compare-backends``: torch and llama.cpp timed side by side, in one run.

Both backends load the same model (a GGUF one: the embedded ``smollm2`` or a local
``.gguf``), decode the same prompt with the same N, T and seed, EOS suppressed
(``SuppressEOS``) so every run decodes exactly T tokens. Two workloads per backend,
built by the bench's own ``make_methods`` and timed by its ``time_methods`` (an
untimed warm-up, then ``repeats`` rounds whose order rotates, so the two backends are
interleaved and load from other users hits both alike; medians reported):

* ``limit``: SMC's own token draw and batched forwards without weights, ESS or
  resampling (``wrappers.decode_limit``; the backend's floor);
* ``smc``: a whole ``PowerSMC`` run (alpha, ESS-triggered resampling).

The summary's headline keys::

    smc_speedup_llamacpp    = smc_s[torch] / smc_s[llamacpp]
    smc_over_limit_llamacpp = smc_s[llamacpp] / limit_s[llamacpp]   (and _torch)

with per-step milliseconds ``limit_ms`` and ``smc_ms`` by backend (1000·median s / T).
``compare_grid`` runs every (N, threads) of ``--particles 8,32 --threads 1,2`` in one
process (one table; JSON ``runs``); with ``--calibrate-backends`` it stores the SMC rows
for ``--backend auto`` (``models.backend_timings``).
Threads: ``--threads`` sets torch's and llama.cpp's alike (default: torch's own, and
``default_threads()`` for llama.cpp). ``docs/measurements/measure_llamacpp.py`` calls this for
several thread counts and adds a server-like RSS measurement.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from powersmc_core.bench.summary import DEFAULT_PROMPT, BenchSettings
from powersmc_core.bench.timing import make_methods, time_methods
from powersmc_core.bench.wrappers import SuppressEOS
from powersmc_core.cli.args import check_threads, parse_prompt
from powersmc_core.models.backend_timings import TimingRow, write_calibration
from powersmc_core.models.backends import load_model_with_backend
from powersmc_core.models.base import LanguageModel

__all__ = [
    "COMPARED",
    "COMPARE_KEYS",
    "compare_backends",
    "compare_grid",
    "format_compare_table",
]

COMPARED = ("torch", "llamacpp")
WORKLOADS = ("limit", "smc")
COMPARE_KEYS = (
    "limit_ms",
    "smc_ms",
    "limit_s",
    "smc_s",
    "smc_speedup_llamacpp",
    "smc_over_limit_llamacpp",
    "smc_over_limit_torch",
    "threads",
    "model",
    "n_particles",
    "new_tokens",
    "repeats",
)


def load_compared(args: argparse.Namespace, threads: int | None) -> dict[str, LanguageModel]:
    """The model on both backends (shared instances: llama.cpp's is per thread count)."""
    if getattr(args, "random_init", None):
        raise ValueError("--compare-backends needs a GGUF model (smollm2 or a .gguf file)")
    return {
        "torch": load_model_with_backend(args.model, "torch", device="cpu", dtype=args.dtype),
        "llamacpp": load_model_with_backend(args.model, "llamacpp", threads=threads),
    }


def compare_backends(
    args: argparse.Namespace,
    settings: BenchSettings,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time ``limit`` and ``smc`` on both backends, interleaved; the JSON summary.

    One (N, threads): ``settings.n_particles`` and ``args.threads`` (torch's thread
    count is the caller's to set). Raises ``ModelLoadError`` (one line naming
    ``make fast``) when llama.cpp cannot run.
    """
    threads = check_threads(args)
    models = load_compared(args, threads)
    text = DEFAULT_PROMPT if args.prompt is None else args.prompt
    prompt = parse_prompt(models["torch"], text, raw=args.raw)
    methods: dict[str, Callable[[int, int], Any]] = {}
    for backend, model in models.items():
        built = make_methods(SuppressEOS(model), prompt, settings)
        for workload in WORKLOADS:
            methods[f"{workload}_{backend}"] = built[workload]
    with torch.inference_mode():
        times, _ = time_methods(methods, settings, torch.device("cpu"), progress=log)
    meta = {
        "model": models["torch"].name,
        "prompt_tokens": len(prompt),
        "threads": {
            "torch": torch.get_num_threads(),
            "llamacpp": int(getattr(models["llamacpp"], "threads", threads or 0)),
        },
        **_machine_meta(args),
    }
    return summarise_comparison(times, settings, meta)


def _machine_meta(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m powersmc_core " + " ".join(getattr(args, "argv", []) or ["bench"]),
        "eos_suppressed": True,
    }


def compare_grid(
    args: argparse.Namespace,
    settings: BenchSettings,
    particles: Sequence[int],
    thread_counts: Sequence[int | None],
    log: Callable[[str], None] | None = None,
    calibrate: bool = False,
) -> dict[str, Any]:
    """``compare_backends`` at every (N, threads) of the two lists, in one process.

    One pair returns its summary as it is; several return ``{"runs": [...], ...}``
    (one summary each, in the order threads-major). With ``calibrate`` the SMC ms/step
    rows are stored for this machine (``backend_timings.write_calibration``), where
    ``--backend auto`` reads them; the summary's ``calibration`` names the file.
    """
    runs = []
    for threads in thread_counts:
        if threads is not None:
            torch.set_num_threads(threads)  # run_bench restores the caller's count
        one = argparse.Namespace(**vars(args))
        one.threads = threads
        for n in particles:
            if log is not None:
                log(f"compare: N = {n}, threads = {threads or 'default'}")
            runs.append(compare_backends(one, replace(settings, n_particles=n), log))
    summary: dict[str, Any] = (
        dict(runs[0])
        if len(runs) == 1
        else {
            "model": runs[0]["model"],
            "new_tokens": settings.max_new_tokens,
            "repeats": settings.repeats,
            "grid": {"n_particles": list(particles), "threads": list(thread_counts)},
            "runs": runs,
            **_machine_meta(args),
        }
    )
    if calibrate:
        rows = [
            TimingRow(
                r["n_particles"], r["threads"]["llamacpp"], r["smc_ms"]["torch"],
                r["smc_ms"]["llamacpp"],
            )
            for r in runs
        ]  # fmt: skip
        summary["calibration"] = str(write_calibration(args.model, rows, summary["date"]))
    return summary


def summarise_comparison(
    times: dict[str, list[float]], settings: BenchSettings, meta: dict[str, Any]
) -> dict[str, Any]:
    """Medians by workload and backend, per-step ms, and the two headline ratios."""
    median = {name: statistics.median(values) for name, values in times.items()}
    steps = settings.max_new_tokens

    def by_backend(workload: str, scale: float) -> dict[str, float]:
        return {b: scale * median[f"{workload}_{b}"] for b in COMPARED}

    limit_s, smc_s = by_backend("limit", 1.0), by_backend("smc", 1.0)
    return {
        **meta,
        "n_particles": settings.n_particles,
        "new_tokens": steps,
        "repeats": settings.repeats,
        "alpha": settings.alpha,
        "seed": settings.seed,
        "limit_s": limit_s,
        "smc_s": smc_s,
        "limit_ms": by_backend("limit", 1000.0 / steps),
        "smc_ms": by_backend("smc", 1000.0 / steps),
        "smc_speedup_llamacpp": smc_s["torch"] / smc_s["llamacpp"],
        "smc_over_limit_llamacpp": smc_s["llamacpp"] / limit_s["llamacpp"],
        "smc_over_limit_torch": smc_s["torch"] / limit_s["torch"],
        "times": times,
    }


def format_compare_table(summary: dict[str, Any]) -> str:
    """One side-by-side table: ms/step of limit and smc by backend, then the ratios, one
    line per (N, threads) (``summary["runs"]``, or the summary itself for one pair)."""
    runs = summary.get("runs", [summary])
    first = runs[0]
    lines = [
        f"model {first['model']} · T={first['new_tokens']} · repeats {first['repeats']} · "
        f"load {summary['load_average']} · ms/step, smc_over_limit = smc / limit, "
        "smc_speedup_llamacpp = smc torch / smc llamacpp",
        f"{'N':>4}{'thr':>4} │{'limit':>8}{'smc':>8}{'smc/lim':>8} torch │"
        f"{'limit':>8}{'smc':>8}{'smc/lim':>8} llamacpp │ smc_speedup_llamacpp",
    ]
    for r in runs:
        lim, smc = r["limit_ms"], r["smc_ms"]
        threads = r["threads"]["llamacpp"]
        lines.append(
            f"{r['n_particles']:>4}{threads:>4} │{lim['torch']:>8.1f}{smc['torch']:>8.1f}"
            f"{r['smc_over_limit_torch']:>8.3f}       │{lim['llamacpp']:>8.1f}"
            f"{smc['llamacpp']:>8.1f}{r['smc_over_limit_llamacpp']:>8.3f}          │ "
            f"{r['smc_speedup_llamacpp']:.3f}"
        )
    return "\n".join(lines)
