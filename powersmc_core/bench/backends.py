"""``bench --compare-backends``: torch and llama.cpp timed side by side, in one run.

Both backends load the same model (a GGUF one: the embedded ``smollm2`` or a local
``.gguf``), decode the same prompt with the same N, T and seed, EOS suppressed
(``SuppressEOS``) so every run decodes exactly T tokens. Two workloads per backend,
built by the bench's own ``make_methods`` and timed by its ``time_methods`` (an
untimed warm-up, then ``repeats`` rounds whose order rotates, so the two backends are
interleaved and load from other users hits both alike; medians reported):

* ``limit``: N sequences in one batch and nothing else (the backend's floor);
* ``smc``: a whole ``PowerSMC`` run (alpha, ESS-triggered resampling).

The summary's headline keys::

    smc_speedup_llamacpp    = smc_s[torch] / smc_s[llamacpp]
    smc_over_limit_llamacpp = smc_s[llamacpp] / limit_s[llamacpp]   (and _torch)

with per-step milliseconds ``limit_ms`` and ``smc_ms`` by backend (1000·median s / T).
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
from collections.abc import Callable
from typing import Any

import torch

from powersmc_core.bench.summary import DEFAULT_PROMPT, BenchSettings
from powersmc_core.bench.timing import make_methods, time_methods
from powersmc_core.bench.wrappers import SuppressEOS
from powersmc_core.cli.args import check_threads, parse_prompt
from powersmc_core.models.backends import load_model_with_backend

__all__ = ["COMPARED", "COMPARE_KEYS", "compare_backends", "format_compare_table"]

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


def compare_backends(
    args: argparse.Namespace,
    settings: BenchSettings,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time ``limit`` and ``smc`` on both backends, interleaved; the JSON summary.

    Raises ``ModelLoadError`` (one line naming ``make fast``) when llama.cpp cannot run.
    """
    threads = check_threads(args)
    if getattr(args, "random_init", None):
        raise ValueError("--compare-backends needs a GGUF model (smollm2 or a .gguf file)")
    models = {
        "torch": load_model_with_backend(args.model, "torch", device="cpu", dtype=args.dtype),
        "llamacpp": load_model_with_backend(args.model, "llamacpp", threads=threads),
    }
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
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m powersmc_core " + " ".join(getattr(args, "argv", []) or ["bench"]),
        "eos_suppressed": True,
    }
    return summarise_comparison(times, settings, meta)


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
    """The comparison as a small table: ms per step by workload and backend, then ratios."""
    threads = summary["threads"]
    lines = [
        f"model {summary['model']} · N={summary['n_particles']} · T={summary['new_tokens']} · "
        f"repeats {summary['repeats']} · threads torch {threads['torch']}, "
        f"llama.cpp {threads['llamacpp']} · load {summary['load_average']}",
        f"{'ms/step':<10}{'torch':>10}{'llamacpp':>10}",
    ]
    for workload in WORKLOADS:
        row = summary[f"{workload}_ms"]
        lines.append(f"{workload:<10}{row['torch']:>10.2f}{row['llamacpp']:>10.2f}")
    lines.append(
        f"smc_speedup_llamacpp {summary['smc_speedup_llamacpp']:.3f} · smc_over_limit "
        f"llamacpp {summary['smc_over_limit_llamacpp']:.3f}, "
        f"torch {summary['smc_over_limit_torch']:.3f}"
    )
    return "\n".join(lines)
