"""The ``eval`` subcommand: run methods on a task set, store rows, print a summary, plot.

    python -m powersmc_core eval --task arithmetic --n 50 --methods base,lowtemp,smc,mh,bon,greedy \\
        --alpha 4 --n-particles 16 --answer chosen,weighted-vote,majority-vote --out results/arith.csv

Sweeps: comma lists for --alpha, --n-particles (alias --particles), --schedule expand to
their product.
Rerunning the same command resumes: rows already in --out are not recomputed.
--answer picks the decision rules shown (every run is graded under all of them), and the
summary ends with exact McNemar tests between every two lines on the same problems.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from powersmc_core.answers.extract import RULES
from powersmc_core.answers.grading import EXTRACTORS
from powersmc_core.cli.args import add_backend_arguments, check_threads
from powersmc_core.evaluation.plots import save_report_figures
from powersmc_core.evaluation.problem_run import METHODS, parse_methods
from powersmc_core.evaluation.runner import run_eval
from powersmc_core.evaluation.summary import (
    format_pairs,
    format_table,
    paired_comparisons,
    summary_table,
)
from powersmc_core.evaluation.sweep import settings_grid
from powersmc_core.evaluation.tasks import TASKS, load_task
from powersmc_core.models.errors import ModelLoadError
from powersmc_core.samplers.registry import default_methods

__all__ = ["add_arguments", "main"]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _rules(text: str) -> list[str]:
    names = _names(text)
    bad = [r for r in names if r not in RULES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown answer rules {bad or names}; choose from {','.join(RULES)}"
        )
    return list(dict.fromkeys(names))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the eval options on ``parser`` (a subparser of the main CLI, or standalone)."""
    task = parser.add_argument_group("task")
    task.add_argument("--task", choices=TASKS, default="arithmetic", help="task set")
    task.add_argument("--data", default=None, help="local file for math500 / gsm8k")
    task.add_argument("--n", type=int, default=20, help="number of problems (default 20)")
    task.add_argument(
        "--difficulty",
        type=int,
        choices=(1, 2, 3),
        default=None,
        help="generated tasks: one level (default: levels 1-3 in turn)",
    )
    task.add_argument("--task-seed", type=int, default=0, help="seed of the task generator")
    task.add_argument(
        "--extractor",
        choices=EXTRACTORS,
        default=None,
        help="answer extraction rule (default: the task's own, 'auto')",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", default="smollm2", help="load_model name: smollm2, toy-trap, toy-random:V,L,seed"
    )
    model.add_argument("--device", default=None, help="torch device (default: auto)")
    model.add_argument("--dtype", default=None, help="torch dtype name (default: the model's)")
    add_backend_arguments(model)

    methods = parser.add_argument_group("methods and sweep")
    methods.add_argument(
        "--methods",
        default=",".join(default_methods()),
        help=f"comma list from {','.join(METHODS)} (default: the ones not marked opt-in)",
    )
    methods.add_argument("--alpha", type=_floats, default=[4.0], help="alpha or a comma list")
    methods.add_argument(
        "--n-particles",
        "--particles",
        dest="n_particles",
        type=_ints,
        default=[16],
        help="N (SMC particles, best-of-N samples) or a comma list",
    )
    methods.add_argument(
        "--schedule",
        type=_names,
        default=["constant"],
        help="SMC schedule(s): constant, linear, adaptive",
    )
    methods.add_argument("--ess-threshold", type=float, default=0.5)
    methods.add_argument("--resampling", default="systematic")
    methods.add_argument("--max-new-tokens", type=int, default=128)
    methods.add_argument("--mh-steps", type=int, default=4, help="MH steps per block")
    methods.add_argument("--mh-block-size", type=int, default=None)
    methods.add_argument("--seed", type=int, default=0, help="base seed of every run")
    methods.add_argument("--block-size", type=int, default=1, help="SMC: resample every B steps")
    rollouts = "lookahead/rollout: {} (default: the method's own)"
    methods.add_argument("--rollout-k", type=int, default=None, help=rollouts.format("K tokens"))
    methods.add_argument("--rollout-m", type=int, default=None, help=rollouts.format("M rollouts"))
    methods.add_argument("--rollout-h", type=int, default=None, help=rollouts.format("depth H"))
    methods.add_argument(
        "--lookahead-epsilon", type=float, default=None, help="lookahead: defensive share ε"
    )
    methods.add_argument(
        "--answer",
        type=_rules,
        default=list(RULES),
        help="answer decision rules to report, comma list from "
        f"{','.join(RULES)} (default: all; every run is graded under each)",
    )

    run = parser.add_argument_group("execution and output")
    run.add_argument(
        "--out",
        default=None,
        help="results .csv or .parquet (default eval-results/<task>.csv); "
        "rows already there are skipped (resume)",
    )
    run.add_argument("--workers", type=int, default=1, help="process-pool size (1: in-process)")
    run.add_argument("--ray", action="store_true", help="run one Ray task per problem-config")
    run.add_argument("--ray-address", default=None, help="existing Ray cluster (implies --ray)")
    run.add_argument(
        "--gpus-per-task",
        type=float,
        default=None,
        help="Ray GPUs per task (default 1 when CUDA is available, else 0)",
    )
    run.add_argument("--chunk-size", type=int, default=8, help="rows per file flush")
    run.add_argument(
        "--plots", default=None, help="folder for HTML/PNG figures (default: <out stem>-plots)"
    )
    run.add_argument("--no-plots", action="store_true")
    run.add_argument("--no-png", action="store_true", help="HTML figures only")
    run.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    """Run the evaluation the arguments describe; 0 on success, 2 on bad input, 130 on Ctrl-C."""
    try:
        methods = parse_methods(args.methods)
        problems = load_task(
            args.task, args.n, args.task_seed, args.difficulty, args.data, args.extractor
        )
        grid = settings_grid(
            args.alpha,
            args.n_particles,
            args.schedule,
            ess_threshold=args.ess_threshold,
            resampling=args.resampling,
            max_new_tokens=args.max_new_tokens,
            mh_steps=args.mh_steps,
            mh_block_size=args.mh_block_size,
            seed=args.seed,
            block_size=args.block_size,
            rollout_k=args.rollout_k,
            rollout_m=args.rollout_m,
            rollout_h=args.rollout_h,
            lookahead_epsilon=args.lookahead_epsilon,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"eval: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("eval-results") / f"{args.task}.csv"
    use_ray = args.ray or args.ray_address is not None
    try:
        check_threads(args)
    except ValueError as err:
        print(f"eval: {err}", file=sys.stderr)
        return 2
    pairs_ = (("device", args.device), ("dtype", args.dtype), ("threads", args.threads))
    options = {k: v for k, v in pairs_ if v is not None}
    options["backend"] = args.backend
    # auto picks the backend measured faster at this N: the grid's largest costs the most.
    options["n_particles"] = max(s.n_particles for s in grid)
    print(
        f"eval: {len(problems)} {args.task} problems × {len(methods)} methods × "
        f"{len(grid)} settings on {args.model} -> {out}",
        file=sys.stderr,
    )
    try:
        rows = run_eval(
            problems,
            methods,
            grid,
            model_spec=args.model,
            model_options=options,
            out=out,
            executor="ray" if use_ray else "local",
            workers=args.workers,
            ray_address=args.ray_address,
            gpus_per_task=args.gpus_per_task,
            progress=not args.no_progress,
            chunk_size=args.chunk_size,
        )
    except KeyboardInterrupt:
        print(f"\neval: interrupted; rows so far are in {out}; rerun to resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(summary_table(rows, args.answer)))
    pairs = paired_comparisons(rows, args.answer)
    if len(pairs):
        print("\nPaired comparisons (exact McNemar, same problems):")
        print(format_pairs(pairs))
    print(f"\nrows: {out}")
    if not args.no_plots:
        folder = Path(args.plots) if args.plots else out.with_name(out.stem + "-plots")
        for saved in save_report_figures(rows, folder, png=not args.no_png, rules=args.answer):
            print(f"plot: {saved.html}" + (f", {saved.png}" if saved.png else ""))
            if saved.png_skipped and not args.no_png:
                print(f"      {saved.png_skipped}", file=sys.stderr)
    return 0
