"""torch vs llama.cpp on the embedded SmolLM2 GGUF: ``bench --compare-backends`` for several
thread counts, and server-like RSS.

The timing is the bench's own (``powersmc_core.bench.compare_backends``: ``limit`` and
``smc`` on both backends, interleaved, EOS suppressed, medians; keys ``limit_ms``,
``smc_ms``, ``smc_speedup_llamacpp = smc_s[torch] / smc_s[llamacpp]``,
``smc_over_limit_llamacpp``); this script only loops over thread counts. ``--rss`` also
starts one fresh process per backend that loads the model as a server would, runs one
short SMC, and reports its peak RSS (``VmHWM``, Linux); the torch cache folder is
prepared beforehand so no conversion inflates it.

    python docs/measurements/measure_llamacpp.py --n 8 --new-tokens 64 --threads 1 2 --rounds 5 --rss

The issue's targets (quiet machine): speedup >= 1.7 at 1 thread, >= 2.5 at 2 threads,
llama.cpp smc/limit <= 1.10, RSS torch / llama.cpp >= 3.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from powersmc_core import PowerSMC, SMCConfig
from powersmc_core.bench import run_bench
from powersmc_core.cli.main import build_parser
from powersmc_core.models.backends import load_model_with_backend

PROMPT = "Write one sentence about the sea."
BACKENDS = ("torch", "llamacpp")


def measure(threads: int, n: int, new_tokens: int, rounds: int) -> dict[str, Any]:
    """``bench --compare-backends`` at one thread count (its JSON summary)."""
    argv = ["bench", "--compare-backends", "-n", str(n), "-t", str(new_tokens), "-r",
            str(rounds), "--threads", str(threads), "--prompt", PROMPT, "--quiet"]  # fmt: skip
    args = build_parser().parse_args(argv)
    args.argv = argv
    summary = run_bench(args)
    summary.pop("times")
    return summary


def rss_child(backend: str, threads: int) -> None:
    """Load as a server would, run one short SMC, print the peak RSS in MB (child process)."""
    model = load_model_with_backend("smollm2", backend, threads=threads, device="cpu")
    prompt = model.encode_prompt(PROMPT)
    PowerSMC(model, SMCConfig(alpha=4.0, n_particles=8, max_new_tokens=16, seed=0)).run(prompt)
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
