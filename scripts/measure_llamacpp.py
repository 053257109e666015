"""torch vs llama.cpp on the embedded SmolLM2 GGUF: per-step time side by side, and server RSS.

For each thread count, the two backends are timed in interleaved rounds (torch,
llama.cpp, torch, ...) on the same prompt, N, T and seed, so load from other users
hits both alike; medians of wall time are reported. Two workloads, both with EOS
suppressed (``bench.SuppressEOS``) so every run decodes exactly T tokens:

* ``limit``: ``bench.decode_limit``, N sequences decoded in one batch and nothing
  else (one prefill, T − 1 batched advances): the backend's floor;
* ``smc``: a whole ``PowerSMC`` run (alpha 4, resampling at ESS < N/2).

JSON keys per thread count: ``limit_ms`` and ``smc_ms`` (ms per step, by backend),
``smc_speedup_llamacpp = smc_s[torch] / smc_s[llamacpp]`` and ``smc_over_limit``
(each backend's SMC over its own limit). ``--rss`` also starts one fresh process per
backend that loads the model as a server would, runs one short SMC, and reports its
peak RSS (``VmHWM``, Linux); the torch cache folder is prepared beforehand so no
conversion inflates it.

    python scripts/measure_llamacpp.py --n 8 --new-tokens 64 --threads 1 2 --rounds 5 --rss

The issue's targets (quiet machine): speedup >= 1.7 at 1 thread, >= 2.5 at 2 threads,
llama.cpp smc/limit <= 1.10, RSS torch / llama.cpp >= 3.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from powersmc_core import PowerSMC, SMCConfig
from powersmc_core.bench import SuppressEOS, decode_limit
from powersmc_core.models import load_model
from powersmc_core.models.llamacpp import load_llamacpp_model

PROMPT = "Write one sentence about the sea."
BACKENDS = ("torch", "llamacpp")


def load(backend: str, threads: int) -> Any:
    if backend == "torch":
        torch.set_num_threads(threads)
        return load_model("smollm2", device="cpu", dtype="float32")
    return load_llamacpp_model("smollm2", threads=threads)


def smc_config(n: int, new_tokens: int, seed: int) -> SMCConfig:
    return SMCConfig(alpha=4.0, n_particles=n, max_new_tokens=new_tokens, seed=seed)


def time_once(model: Any, prompt: list[int], workload: str, n: int, new_tokens: int) -> float:
    wrapped = SuppressEOS(model)
    start = time.perf_counter()
    if workload == "limit":
        decode_limit(wrapped, prompt, n, new_tokens, seed=0)
    else:
        PowerSMC(wrapped, smc_config(n, new_tokens, seed=0)).run(prompt)
    return time.perf_counter() - start


def measure(threads: int, n: int, new_tokens: int, rounds: int) -> dict[str, Any]:
    models = {backend: load(backend, threads) for backend in BACKENDS}
    prompt = models["torch"].encode_prompt(PROMPT)
    seconds: dict[tuple[str, str], list[float]] = {}
    for round_index in range(rounds + 1):  # round 0 warms both up and is discarded
        for workload in ("limit", "smc"):
            for backend in BACKENDS:
                if backend == "torch":
                    torch.set_num_threads(threads)
                took = time_once(models[backend], prompt, workload, n, new_tokens)
                if round_index:
                    seconds.setdefault((workload, backend), []).append(took)
    median = {key: statistics.median(values) for key, values in seconds.items()}

    def ms(workload: str) -> dict[str, float]:
        return {b: round(1000 * median[(workload, b)] / new_tokens, 2) for b in BACKENDS}

    return {
        "threads": threads,
        "limit_ms": ms("limit"),
        "smc_ms": ms("smc"),
        "smc_speedup_llamacpp": round(median[("smc", "torch")] / median[("smc", "llamacpp")], 3),
        "smc_over_limit": {
            b: round(median[("smc", b)] / median[("limit", b)], 3) for b in BACKENDS
        },
    }


def rss_child(backend: str, threads: int) -> None:
    """Load as a server would, run one short SMC, print the peak RSS in MB (child process)."""
    model = load(backend, threads)
    prompt = model.encode_prompt(PROMPT)
    PowerSMC(model, smc_config(8, 16, seed=0)).run(prompt)
    # VmHWM is this process's own peak: ru_maxrss would carry the parent's over fork+exec.
    lines = Path("/proc/self/status").read_text().splitlines()
    status = dict(line.split(":", 1) for line in lines)
    peak_kb = int(status["VmHWM"].split()[0])
    print(json.dumps({"backend": backend, "peak_rss_mb": round(peak_kb / 1024, 1)}))


def measure_rss(threads: int) -> dict[str, float]:
    from powersmc_core.models.loading import prepare_gguf_cache

    prepare_gguf_cache()  # a conversion must not count against the torch process
    peaks = {}
    for backend in BACKENDS:
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", backend, "--threads", str(threads)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        peaks[backend] = json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]
    return {
        "peak_rss_mb": peaks,
        "rss_ratio_torch_over_llamacpp": round(peaks["torch"] / peaks["llamacpp"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rss", action="store_true", help="also measure server-like peak RSS")
    parser.add_argument("--rss-child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.threads[0])
        return
    report: dict[str, Any] = {
        "n": args.n,
        "new_tokens": args.new_tokens,
        "rounds": args.rounds,
        "load_average_before": os.getloadavg(),
        "by_threads": [],
    }
    for threads in args.threads:
        report["by_threads"].append(measure(threads, args.n, args.new_tokens, args.rounds))
        print(json.dumps(report["by_threads"][-1]), file=sys.stderr, flush=True)  # progress
    if args.rss:
        report.update(measure_rss(args.threads[-1]))
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
