"""``python -m powersmc_core bench``: its flags, the set-up, and the run.

``add_arguments`` declares the flags; ``run_bench`` loads the model, applies the
speed switches (static cache, ``--compile``), times every method and returns the JSON
summary; ``main`` prints the table and writes ``--json``. Shared argument helpers come
from ``cli_args`` (never from ``cli``, which imports this package).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from powersmc_core.bench.summary import DEFAULT_PROMPT, BenchSettings, format_table, summarise
from powersmc_core.bench.timing import (
    generate_method,
    load_reference,
    make_methods,
    reference_method,
    time_methods,
)
from powersmc_core.bench.wrappers import Clock, SuppressEOS, Timed
from powersmc_core.cli.args import (
    add_backend_arguments,
    check_writable,
    load_model_from_args,
    parse_prompt,
)
from powersmc_core.models.backends import backend_of
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.toy import ToyLM
from powersmc_core.samplers.registry import METHODS

__all__ = ["add_arguments", "main", "parse_variant", "run_bench"]


def parse_variant(text: str) -> tuple[int, int]:
    """'B:K' -> (block_size, stream_every), for ``--smc-variant``."""
    try:
        block, every = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected B:K (block size : stream every), e.g. 16:16, got {text!r}"
        ) from None
    return block, every


def count_list(text: str) -> tuple[int, ...]:
    """'8,32' -> (8, 32): one count or a comma-separated list (``--compare-backends`` runs each)."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number or a comma-separated list such as 8,32, got {text!r}"
        ) from None
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``python -m powersmc_core bench``."""
    parser.add_argument("--model", default="smollm2", help="model name, folder or hub id")
    parser.add_argument(
        "--random-init",
        metavar="ARCH",
        help="randomly initialised model of a named size (qwen2-1.5b, llama-1b, "
        "smollm2-135m, tiny): no weights needed",
    )
    parser.add_argument(
        "--n-particles",
        "--particles",
        "-n",
        type=count_list,
        help="N (default 8); with --compare-backends a list such as 8,32 "
        "(--calibrate-backends: default 1,4,8,16,32,64)",
    )
    parser.add_argument(
        "--max-new-tokens", "--new-tokens", "-t", type=int, default=64, help="T (default 64)"
    )
    parser.add_argument("--repeats", "-r", type=int, default=3, help="timed runs per method")
    parser.add_argument("--alpha", type=float, default=4.0, help="power alpha (default 4)")
    parser.add_argument("--mh-steps", type=int, default=10, help="MH steps per block")
    parser.add_argument("--mh-block-size", type=int, help="MH block size (default T/16)")
    parser.add_argument("--prompt", help="prompt text (toy models: token names or ids)")
    parser.add_argument("--raw", action="store_true", help="no chat template")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    parser.add_argument("--dtype", help="float32, bfloat16, float16 (default: per device)")
    parser.add_argument(
        "--static-cache",
        choices=("auto", "on", "off"),
        default="auto",
        help="static KV cache (auto: on for CUDA)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the forward (mode reduce-overhead: CUDA graphs on CUDA)",
    )
    parser.add_argument(
        "--stream-every",
        type=int,
        metavar="K",
        help="SMC reads its particles back every K steps (default 16 on accelerators, 1 on CPU)",
    )
    parser.add_argument(
        "--smc-block-size",
        type=int,
        default=1,
        metavar="B",
        help="SMC (and reference) consider resampling every B steps (default 1)",
    )
    parser.add_argument(
        "--smc-variant",
        type=parse_variant,
        action="append",
        metavar="B:K",
        help="also time SMC with block size B and --stream-every K, as row smc_bB_kK "
        "(repeatable; e.g. 16:16 and 1:1 show what the identity copy and a per-token "
        "host sync cost)",
    )
    add_backend_arguments(
        parser,
        threads_help="CPU threads for both backends (default: torch's own for torch; "
        "$POWERSMC_THREADS, else $OMP_NUM_THREADS, else min(4, CPUs) for llama.cpp); with "
        "--compare-backends a list such as 1,2 (--calibrate-backends: default 1,2,4 up to "
        "the CPU count)",
        threads_type=count_list,
    )
    parser.add_argument(
        "--compare-backends",
        action="store_true",
        help="time torch and llama.cpp interleaved on the same prompt, N, T and seed "
        "(limit and smc rows per backend, smc_speedup_llamacpp); other methods are skipped; "
        "every (N, threads) of the --particles and --threads lists, in one table",
    )
    parser.add_argument(
        "--calibrate-backends",
        action="store_true",
        help="--compare-backends over N 1,4,8,16,32,64 and threads 1,2,4 (or the lists "
        "given), stored for this machine where --backend auto reads it",
    )
    parser.add_argument(
        "--fork-cost",
        action="store_true",
        help="llama.cpp: time one sequence copy against prefix length (32..1024), "
        "seq_cp's whole-stream copy next to the cell-exact copy; other methods are skipped",
    )
    parser.add_argument(
        "--lookahead-cost",
        action="store_true",
        help="time smc and look-ahead SMC on torch and llama.cpp interleaved (ms per token, "
        "lookahead / smc, forwards per token); other methods are skipped",
    )
    for knob in ("k", "m", "h"):
        parser.add_argument(
            f"--rollout-{knob}",
            type=int,
            default=None,
            help=f"--lookahead-cost: look-ahead's {knob.upper()} (default: the method's)",
        )
    parser.add_argument(
        "--numerics",
        nargs="*",
        metavar="PART",
        help="llama.cpp's numerics instead of timings: layout (batch layout), target "
        "(two-token SMC TV vs exact torch), requant (Q4_0 copy); none named: all",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        # Read when the parser is built: a method registered later can be skipped too.
        choices=(*[m for m, spec in METHODS.items() if spec.bench and m != "base"], "generate"),
        help="skip a method (repeatable): a registry row such as mh or smc, or generate "
        "(both generate rows)",
    )
    parser.add_argument(
        "--reference-module",
        metavar="FILE",
        help="local copy of the public Power-SMC reference smc_power_sample_memopt.py",
    )
    parser.add_argument("--json", metavar="PATH", help="write the JSON summary there")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines")


def _speed_setup(model: LanguageModel, args: argparse.Namespace, max_len: int) -> LanguageModel:
    """Static KV cache (fixed shapes; default on CUDA) and, with --compile, CUDA graphs."""
    static = args.static_cache == "on" or (
        args.static_cache == "auto" and model.device.type == "cuda"
    )
    if args.compile and not static:
        where = (
            "off" if args.static_cache == "off" else f"auto, and {model.device.type} is not CUDA"
        )
        raise ValueError(
            f"--compile needs the static KV cache, which is {where}: add --static-cache on"
        )
    if not static:
        return model
    from powersmc_core.models.hf.model import (
        HFModel,  # lazy: only the transformers backend has these switches
    )

    if not isinstance(model, HFModel):
        raise ValueError("--static-cache/--compile need a transformers model, not a toy model")
    # A new wrapper over the same weights: load_model's instance is shared and stays as it was.
    return HFModel(
        model.model,
        model.tokenizer,
        model.name,
        static_cache=True,
        max_cache_len=max_len,
        compile=args.compile,
    )


CALIBRATION_PARTICLES = (1, 4, 8, 16, 32, 64)
CALIBRATION_THREADS = (1, 2, 4)


def _as_counts(value: Any) -> tuple[Any, ...]:
    """A flag's value as a tuple (a list flag, a plain int from an in-process caller, None)."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def run_bench(args: argparse.Namespace, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load, time every method, and return the JSON summary (see ``REQUIRED_KEYS``)."""
    calibrate = getattr(args, "calibrate_backends", False)
    compare = calibrate or getattr(args, "compare_backends", False)
    particles = _as_counts(args.n_particles)
    thread_counts = _as_counts(args.threads)
    if calibrate:
        particles = particles or CALIBRATION_PARTICLES
        cpus = os.cpu_count() or 1
        thread_counts = thread_counts or tuple(k for k in CALIBRATION_THREADS if k <= cpus)
    particles = particles or (8,)
    for k in thread_counts:
        if k < 1:
            raise ValueError(f"--threads must be >= 1, got {k}")
    if not compare and (len(particles) > 1 or len(thread_counts) > 1):
        raise ValueError("lists of --particles or --threads need --compare-backends")
    # Single-valued from here on (the grid goes to compare_backends).
    args = argparse.Namespace(**vars(args))
    args.n_particles = particles[0]
    args.threads = thread_counts[0] if thread_counts else None
    settings = BenchSettings(
        n_particles=args.n_particles,
        max_new_tokens=args.max_new_tokens,
        repeats=args.repeats,
        alpha=args.alpha,
        mh_steps=args.mh_steps,
        mh_block_size=args.mh_block_size,
        warmup=not args.no_warmup,
        seed=args.seed,
        stream_every=1 if args.stream_every is None else args.stream_every,
        smc_block_size=args.smc_block_size,
        smc_variants=tuple(args.smc_variant or ()),
    )
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        if getattr(args, "fork_cost", False):
            from powersmc_core.bench.forks import fork_cost

            return fork_cost(args, log)

        if getattr(args, "lookahead_cost", False):
            from powersmc_core.bench.lookahead_cost import lookahead_cost

            return lookahead_cost(args, settings, log)
        if getattr(args, "numerics", None) is not None:
            from powersmc_core.bench.numerics import PARTS, numerics_report

            return numerics_report(
                args.numerics or PARTS,
                threads=args.threads or 2,
                repeats=args.repeats,
                alpha=args.alpha,
                seed=args.seed,
                prompt=args.prompt,
                log=log,
            )
        if compare:
            from powersmc_core.bench.backends import compare_grid

            return compare_grid(
                args, settings, particles, thread_counts or (None,), log, calibrate=calibrate
            )
        return _run_bench(args, settings, log)
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests) get their setting back


def _run_bench(
    args: argparse.Namespace, settings: BenchSettings, log: Callable[[str], None] | None
) -> dict[str, Any]:
    reference_module = load_reference(args.reference_module) if args.reference_module else None
    model = load_model_from_args(args)
    text = args.prompt
    if text is None:
        text = "" if isinstance(model, ToyLM) else DEFAULT_PROMPT
    prompt = parse_prompt(model, text, raw=args.raw)
    if isinstance(model, ToyLM) and len(prompt) + settings.max_new_tokens >= model.max_len:
        raise ValueError(
            f"{model.name} forces EOS after {model.max_len - 1} tokens: use --max-new-tokens "
            f"<= {model.max_len - 1 - len(prompt)} with this prompt"
        )
    backend, backend_reason = backend_of(model)
    if backend == "llamacpp" and args.reference_module:
        raise ValueError("--reference-module runs the transformers model: use --backend torch")
    plain = model
    model = _speed_setup(plain, args, max_len=len(prompt) + settings.max_new_tokens + 1)
    reference = (
        reference_method(reference_module, plain, prompt, settings)
        if reference_module is not None
        else None
    )
    accelerated = model.device.type != "cpu"
    if args.stream_every is None and accelerated:
        settings = replace(settings, stream_every=16)
    many, single = SuppressEOS(model), SuppressEOS(plain)
    clock = None if accelerated else Clock()
    if clock is not None:
        many, single = Timed(many, clock), Timed(single, clock)
    methods = make_methods(many, prompt, settings, reference, single=single)
    forwards: dict[str, int] = {}
    methods = {name: _counting(name, fn, settings, forwards) for name, fn in methods.items()}
    from powersmc_core.models.hf.model import HFModel

    if "generate" not in args.skip and isinstance(plain, HFModel):
        static = bool(getattr(model, "static_cache", False))
        methods["generate"] = generate_method(plain, prompt, settings.n_particles, static)
        methods["generate1"] = generate_method(plain, prompt, 1, static)
    for name in args.skip:
        methods.pop(name, None)
    with torch.inference_mode():
        times, inside = time_methods(
            methods,
            settings,
            model.device,
            progress=log,
            clock=clock,
            warmup_tokens=settings.max_new_tokens if accelerated else None,
        )
    for name in ("reference", "generate", "generate1"):  # they call the transformers model
        inside.pop(name, None)  # directly: not clocked
    dtype = getattr(model, "dtype", None)
    meta = {
        "device": str(model.device),
        "model": model.name,
        "backend": backend,
        "backend_reason": backend_reason,
        "dtype": str(dtype).removeprefix("torch.") if dtype is not None else None,
        "prompt_tokens": len(prompt),
        "static_cache": bool(getattr(model, "static_cache", False)),
        "compiled": bool(args.compile),
        # Dynamo's counter over the whole run (ours and generate's compiled forwards alike).
        "compile_graph_breaks": _graph_breaks() if args.compile else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
        "gpu": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m powersmc_core " + " ".join(getattr(args, "argv", []) or ["bench"]),
        "eos_suppressed": True,
    }
    return summarise(times, settings, meta, inside, forwards)


def _counting(
    name: str, fn: Callable[[int, int], Any], settings: BenchSettings, forwards: dict[str, int]
) -> Callable[[int, int], Any]:
    """``fn`` that also keeps its full-length run's token forwards in ``forwards[name]``
    (rows whose result reports them: the registry's samplers; not limit or generate)."""

    def run(t: int, seed: int) -> Any:
        result = fn(t, seed)
        counted = (getattr(result, "extras", None) or {}).get("token_forwards")
        if t == settings.max_new_tokens and counted is not None:
            forwards[name] = int(counted)
        return result

    return run


def _graph_breaks() -> int:
    from torch._dynamo.utils import counters

    return int(sum(counters["graph_break"].values()))


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write --json; errors propagate to the CLI."""
    if args.json:
        check_writable(args.json, "--json")

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    summary = run_bench(args, log=log)
    if getattr(args, "fork_cost", False):
        from powersmc_core.bench.forks import format_fork_table

        print(format_fork_table(summary))
    elif getattr(args, "lookahead_cost", False):
        from powersmc_core.bench.lookahead_cost import format_lookahead_table

        print(format_lookahead_table(summary))
    elif getattr(args, "numerics", None) is not None:
        from powersmc_core.bench.numerics import format_numerics, numerics_json

        print(format_numerics(summary))
        summary = numerics_json(summary)
    elif getattr(args, "compare_backends", False) or getattr(args, "calibrate_backends", False):
        from powersmc_core.bench.backends import format_compare_table

        print(format_compare_table(summary))
        if "calibration" in summary:
            log(f"calibration written to {summary['calibration']}")
    else:
        print(format_table(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return 0
