"""Command line: ``python -m powersmc_core {run,bench,eval,arena}`` (also ``powersmc``).

run    decode one prompt with Power-SMC (or a baseline), print the chosen completion
       on stdout and a summary (ESS min, resamples, log Ẑ, tokens/s) on stderr;
       ``--json`` writes the whole result, ``--trace`` the step records (JSON lines).
       ``--answer RULE`` reads the particles as answers: the summary (and the JSON)
       add the weighted answer posterior P̂(a) = Σ_i W_i·1[a(y_i) = a] and the answer
       the rule decides (``powersmc_core.answers.extract``).
bench  side-by-side latency of plain decoding, bare batched sampling, Power-SMC and
       MH power sampling (see ``powersmc_core.bench``).
eval   delegated to ``powersmc_core.evaluation.cli`` (imported only when used).
arena  every registered sampler against the exact pi_alpha on toy suites, error against
       token forwards (``powersmc_core.cli.arena``, ``theory.arena``; docs/arena.md).

Bad input — alpha <= 0, N = 0, an empty prompt, an unknown model, an unwritable path
— prints one ``error: ...`` line on stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from powersmc_core.answers.extract import (
    NO_ANSWER,
    RULES,
    AnswerPosterior,
    decide,
    result_posterior,
)
from powersmc_core.answers.grading import EXTRACTORS
from powersmc_core.cli.args import (
    CONFIG_FLAGS,
    EXIT_USAGE,
    Parser,
    add_backend_arguments,
    add_config_arguments,
    add_model_arguments,
    check_writable,
    config_from_args,
    load_model_from_args,
    parse_prompt,
)
from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.stopping import make_stop_rule
from powersmc_core.models.backends import backend_of
from powersmc_core.samplers.registry import METHODS, make_sampler

__all__ = [
    "CONFIG_FLAGS",
    "METHODS",
    "build_parser",
    "check_writable",
    "config_from_args",
    "load_model_from_args",
    "main",
    "parse_prompt",
]


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input: reported as one line, exit 2."""
    from powersmc_core.io.trace import TraceError
    from powersmc_core.models.errors import ModelLoadError

    return (ValueError, TraceError, FloatingPointError, OSError, ModelLoadError)


# ---- parser ------------------------------------------------------------------------------
def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", "-p", help="prompt text (toy models: token names or ids)")
    # The registry as it is when the parser is built (a method registered later is a choice).
    parser.add_argument(
        "--method", choices=list(METHODS), default="smc", help="sampler (default smc)"
    )
    add_model_arguments(parser)
    add_backend_arguments(parser)
    add_config_arguments(parser.add_argument_group("Power-SMC settings (SMCConfig)"))
    other = parser.add_argument_group("stopping, baselines, output")
    other.add_argument("--raw", action="store_true", help="no chat template")
    other.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)"
    )
    other.add_argument("--boxed", action="store_true", help="stop at a closed \\boxed{...}")
    other.add_argument("--mh-steps", type=int, default=10, help="MH steps per block (mh)")
    other.add_argument("--mh-block-size", type=int, help="MH block size (default T/16)")
    other.add_argument(
        "--stream-every",
        type=int,
        default=1,
        metavar="K",
        help="read the particles back every K steps (records arrive K at a time; no host "
        "sync in between on a GPU; needs no --stop/--boxed); default 1",
    )
    other.add_argument(
        "--answer",
        choices=RULES,
        help="decide an answer from the particles: the sampler's draw (chosen), the weighted "
        "vote or the majority vote; the summary and --json show the answer posterior",
    )
    other.add_argument(
        "--extractor",
        choices=EXTRACTORS,
        help="how --answer reads an answer from a completion (default auto: \\boxed{}, "
        "then ####, then the last number; exact: the whole text)",
    )
    other.add_argument("--json", metavar="PATH", help="write the whole result as JSON")
    other.add_argument("--trace", metavar="PATH", help="write step records as JSON lines")
    other.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="powersmc",
        description="Sequence-level power sampling p(y|x)^alpha of LLMs with Power-SMC.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{run,bench,eval,arena}")
    sub.required = True
    run = sub.add_parser(
        "run",
        help="decode one prompt",
        description="Decode one prompt with Power-SMC or a baseline; the chosen completion "
        "goes to stdout, the summary and progress bar to stderr.",
    )
    _add_run_arguments(run)
    bench_parser = sub.add_parser("bench", help="latency benchmark (see docs/bench.md)")
    from powersmc_core import bench  # light: the model stack is imported only when the bench runs

    bench.add_arguments(bench_parser)
    from powersmc_core.cli import arena

    arena.add_arguments(
        sub.add_parser(
            "arena",
            help="samplers against the exact target on toys (see docs/arena.md)",
            description="Every registered sampler on toy suites (random, trap, pivotal): "
            "error to the exact pi_alpha against token forwards; CSV, JSON and HTML.",
        )
    )
    # eval's flags belong to powersmc_core.evaluation; they are parsed there, lazily.
    sub.add_parser("eval", help="evaluation suite (powersmc eval --help)", add_help=False)
    return parser


# ---- run ---------------------------------------------------------------------------------
def _decode(sampler: Any, prompt: list[int], total: int, quiet: bool) -> tuple[list, Any]:
    """Consume the sampler's records under a progress bar (stderr); return (records, result)."""
    from tqdm import tqdm

    records: list = []
    bar = tqdm(
        total=total,
        file=sys.stderr,
        disable=True if quiet else None,  # None: no bar when stderr is not a terminal
        unit="step" if sampler.method == "mh" else "tok",
        dynamic_ncols=True,
        leave=False,
    )
    with bar:
        # Every sampler's stream is a run object: iterate its records, then ask its result.
        run = sampler.stream(prompt)
        for record in run:
            records.append(record)
            if sampler.method == "mh":
                bar.set_postfix(block=record.block, acc=record.acceptance_rate, refresh=False)
            else:
                bar.set_postfix(ess=f"{record.ess:.1f}", resamples=run.n_resamples, refresh=False)
            bar.update(1)
    return records, run.result()


def _summary(
    result: Any,
    method: str,
    config: SMCConfig,
    model_name: str,
    timing: dict,
    backend: tuple[str, str] = ("torch", "torch backend"),
) -> str:
    n = len(result.weights)
    lines = [f"--- {method} · {model_name} · alpha={config.alpha:g} · N={n} ---"]
    lines.append(f"backend      {backend[0]}  ({backend[1]})")
    if method == "mh":
        lines.append(f"acceptance   {result.extras['acceptance_rate']:.3f}")
    else:
        lines.append(f"ESS min      {result.ess_min:.2f} / {n}")
        lines.append(f"resamples    {result.n_resamples}")
        if method == "smc":
            lines.append(f"log Ẑ        {result.log_z:.4f}")
    lines.append(
        f"log p(y|x)   {result.log_p[result.chosen]:.4f}  (chosen: particle {result.chosen})"
    )
    lines.append(f"steps        {result.n_steps}  (finished {sum(result.finished)}/{n})")
    lines.append(
        f"forwards     {timing['tokens']}  (token forwards: model rows evaluated, prompt "
        "prefill once; equal compute = equal forwards)"
    )
    lines.append(
        f"time         {timing['elapsed_s']:.2f} s · {timing['tokens_per_s']:.1f} tokens/s "
        f"({timing['tokens']} tokens, all particles) · {timing['steps_per_s']:.1f} steps/s"
    )
    return "\n".join(lines)


def _answer_report(posterior: AnswerPosterior, rule: str, extractor: str) -> dict[str, Any]:
    """The decided answer and the posterior rows (answer, probability, count); the
    no-answer bucket is its own row, and ``no_answer`` its mass (0 when all answered)."""
    return {
        "rule": rule,
        "extractor": extractor,
        "decided": decide(posterior, rule),
        "posterior": posterior.rows(),
        "no_answer": posterior.no_answer,
    }


def _shown(label: str, width: int = 40) -> str:
    """One line of at most ``width`` characters (answers may span lines)."""
    text = " ".join(label.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _answer_lines(report: dict[str, Any]) -> list[str]:
    decided = report["decided"]
    shown = "(none: no particle has an answer)" if decided is None else _shown(decided, 120)
    lines = [
        f"answer       {shown}  ({report['rule']}, extractor {report['extractor']})",
        f"posterior    {'answer':<40} {'probability':>11} {'count':>6}",
    ]
    rows = list(report["posterior"])
    if not any(row["answer"] == NO_ANSWER for row in rows):  # the bucket is always shown
        rows.append({"answer": NO_ANSWER, "probability": 0.0, "count": 0})
    for row in rows:
        lines.append(
            f"             {_shown(str(row['answer'])):<40} {row['probability']:>11.4f} "
            f"{row['count']:>6d}"
        )
    return lines


def _run(args: argparse.Namespace) -> int:
    from powersmc_core.io.trace import write_trace

    config = config_from_args(args)
    stop = make_stop_rule(args.stop, boxed=args.boxed)
    if args.trace and args.method == "mh":
        raise ValueError("--trace records SMC steps; mh streams MH steps (use --json instead)")
    if args.extractor and not args.answer:
        raise ValueError(
            "--extractor applies to --answer: add --answer weighted-vote (or chosen, majority-vote)"
        )
    for path, flag in ((args.json, "--json"), (args.trace, "--trace")):
        if path:
            check_writable(path, flag)
    model = load_model_from_args(args)
    backend = backend_of(model)
    if args.threads is not None and backend[0] == "torch":
        import torch  # llama.cpp took --threads at load; torch reads it here

        torch.set_num_threads(args.threads)
    prompt = parse_prompt(model, args.prompt, raw=args.raw)
    # The registry's sampler; base/lowtemp draw N independent sequences on the command line.
    sampler = make_sampler(
        args.method,
        model,
        config,
        stop=stop,
        n_particles=config.n_particles,
        mh_steps=args.mh_steps,
        mh_block_size=args.mh_block_size,
        stream_every=args.stream_every,
    )
    total = (
        -(-config.max_new_tokens // sampler.block_size) * (sampler.mh_steps + 1)
        if args.method == "mh"
        else config.max_new_tokens
    )
    records, result = _decode(sampler, prompt, total, args.quiet)

    tokens = METHODS[args.method].cost(result)  # token forwards, the registry's accounting
    elapsed = max(result.elapsed, 1e-9)
    timing = {
        "elapsed_s": result.elapsed,
        "tokens": tokens,
        "tokens_per_s": tokens / elapsed,
        "steps_per_s": result.n_steps / elapsed,
    }
    text = result.chosen_text
    if text is None:
        text = model.decode_batch([result.chosen_completion])[0]
    print(text)
    answer = None
    if args.answer:
        extractor = args.extractor or "auto"
        posterior = result_posterior(result, model.decode_batch, extractor)
        answer = _answer_report(posterior, args.answer, extractor)
    if not args.quiet:
        summary = _summary(result, args.method, config, model.name, timing, backend)
        if answer is not None:
            summary = "\n".join([summary, *_answer_lines(answer)])
        print(summary, file=sys.stderr)

    meta = {
        "model": model.name,
        "method": args.method,
        "prompt": args.prompt,
        "prompt_ids": prompt,
        "token_forwards": tokens,
    }
    if args.json:
        payload = {
            **result.to_dict(),
            **meta,
            "config": config.to_dict(),
            "mh": (
                {"block_size": sampler.block_size, "mh_steps": sampler.mh_steps}
                if args.method == "mh"
                else None
            ),
            "timing": timing,
            "text": text,
            "answer": answer,
            "device": str(model.device),
            "backend": backend[0],
            "backend_reason": backend[1],
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, allow_nan=False) + "\n", encoding="utf-8")
    if args.trace:
        write_trace(args.trace, records, config=config, meta=meta, result=result)
    return 0


def _eval(rest: Sequence[str]) -> int:
    try:
        evaluation = importlib.import_module("powersmc_core.evaluation.cli")
    except ImportError as exc:
        raise ValueError(f"the eval subcommand is not available ({exc})") from None
    parser = Parser(prog="powersmc eval", description="Evaluate samplers on a task suite.")
    evaluation.add_arguments(parser)
    args = _parse(parser, rest)
    return args if isinstance(args, int) else int(evaluation.main(args) or 0)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace | int:
    """Parsed arguments, or the exit status argparse chose (--help: 0, a usage error: 2)."""
    try:
        return parser.parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    errors = _usage_errors()
    try:
        if argv and argv[0] == "eval":
            return _eval(argv[1:])
        args = _parse(build_parser(), argv)
        if isinstance(args, int):
            return args
        args.argv = argv
        if args.command == "run":
            return _run(args)
        if args.command == "arena":
            from powersmc_core.cli import arena

            return arena.main(args)
        from powersmc_core import bench

        return bench.main(args)
    except errors as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
