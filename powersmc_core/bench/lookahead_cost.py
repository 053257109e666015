"""``bench --lookahead-cost``: look-ahead SMC's overhead per token against Power-SMC.

Both backends load the same GGUF model; on each, Power-SMC and look-ahead SMC (the
registry's builders, K/M/H/ε from the flags or the method's defaults) decode the same
prompt with the same N, T and seed, EOS suppressed, timed by the bench's ``time_methods``
(untimed warm-up, rotating order, medians). Reported per backend::

    ms per token        = 1000 · median seconds / T
    lookahead_over_smc  = median lookahead seconds / median smc seconds
    forwards per token  = token forwards / T  (rollouts included)

Rollouts are batched: one ``advance`` (one llama_decode) per rollout step for all N·K·M
rows (counted in tests/test_llamacpp_forks.py).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import torch

from powersmc_core.bench.backends import COMPARED, load_compared
from powersmc_core.bench.summary import DEFAULT_PROMPT, BenchSettings
from powersmc_core.bench.timing import time_methods
from powersmc_core.bench.wrappers import SuppressEOS
from powersmc_core.cli.args import check_threads, parse_prompt
from powersmc_core.engine.config import SMCConfig
from powersmc_core.samplers.registry import make_sampler, rollout_knobs

__all__ = ["METHODS_TIMED", "format_lookahead_table", "lookahead_cost"]

METHODS_TIMED = ("smc", "lookahead")


def _config(args: argparse.Namespace, settings: BenchSettings, t: int, seed: int) -> SMCConfig:
    return SMCConfig(
        alpha=settings.alpha,
        n_particles=settings.n_particles,
        max_new_tokens=t,
        seed=seed,
        block_size=settings.smc_block_size,
        rollout_k=getattr(args, "rollout_k", None),
        rollout_m=getattr(args, "rollout_m", None),
        rollout_h=getattr(args, "rollout_h", None),
        lookahead_epsilon=getattr(args, "lookahead_epsilon", None),
    )


def lookahead_cost(
    args: argparse.Namespace,
    settings: BenchSettings,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time smc and lookahead on torch and llama.cpp, interleaved; the JSON summary."""
    threads = check_threads(args)
    models = load_compared(args, threads)
    text = DEFAULT_PROMPT if args.prompt is None else args.prompt
    prompt = parse_prompt(models["torch"], text, raw=args.raw)
    forwards: dict[str, int] = {}

    def row(method: str, backend: str) -> Callable[[int, int], Any]:
        model = SuppressEOS(models[backend])

        def run(t: int, seed: int) -> Any:
            sampler = make_sampler(
                method, model, _config(args, settings, t, seed), track_text=False
            )
            result = sampler.run(prompt)
            forwards[f"{method}_{backend}"] = int(result.extras.get("token_forwards", 0))
            return result

        return run

    methods = {f"{m}_{b}": row(m, b) for b in COMPARED for m in METHODS_TIMED}
    with torch.inference_mode():
        times, _ = time_methods(methods, settings, torch.device("cpu"), progress=log)
    steps = settings.max_new_tokens
    median = {name: statistics.median(values) for name, values in times.items()}
    k, m, h = rollout_knobs("lookahead", models["torch"], _config(args, settings, steps, 0))
    return {
        "model": models["torch"].name,
        "n_particles": settings.n_particles,
        "new_tokens": steps,
        "repeats": settings.repeats,
        "block_size": settings.smc_block_size,
        "lookahead_kmh": [k, m, h],
        "threads": int(getattr(models["llamacpp"], "threads", threads or 0)),
        "ms_per_token": {name: 1000.0 * s / steps for name, s in median.items()},
        "lookahead_over_smc": {b: median[f"lookahead_{b}"] / median[f"smc_{b}"] for b in COMPARED},
        "forwards_per_token": {name: f / steps for name, f in forwards.items()},
        "times": times,
    }


def format_lookahead_table(summary: dict[str, Any]) -> str:
    """ms per token and forwards per token of smc and lookahead by backend, and the ratio."""
    ms, fwd = summary["ms_per_token"], summary["forwards_per_token"]
    k, m, h = summary["lookahead_kmh"]
    lines = [
        f"model {summary['model']} · N={summary['n_particles']} · T={summary['new_tokens']} · "
        f"block {summary['block_size']} · K={k} M={m} H={h} · repeats {summary['repeats']} "
        "(medians)",
        f"{'backend':<10}{'smc ms/tok':>12}{'la ms/tok':>12}{'la/smc':>8}"
        f"{'smc fwd/tok':>13}{'la fwd/tok':>12}",
    ]
    for b in COMPARED:
        lines.append(
            f"{b:<10}{ms[f'smc_{b}']:>12.1f}{ms[f'lookahead_{b}']:>12.1f}"
            f"{summary['lookahead_over_smc'][b]:>8.2f}{fwd[f'smc_{b}']:>13.1f}"
            f"{fwd[f'lookahead_{b}']:>12.1f}"
        )
    return "\n".join(lines)
