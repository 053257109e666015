"""``powersmc arena``: every registered sampler against the exact pi_alpha on toy suites.

Writes ``arena.csv`` (one row per toy, line and budget), ``arena_matched.csv`` (every line
read at Power-SMC N = 32's forwards and at 4x), ``arena.json`` (both, the settings and the
skipped methods) and ``arena.html`` (the figure) under ``--out``; prints the matched table
on stdout and a progress line on stderr. Defaults (3 random tables, the trap, 4 pivotal
tables, 20 runs, N = 8..128) take about a minute on one core (``theory.arena``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from powersmc_core.engine.config import SCHEDULES
from powersmc_core.theory.arena import BUDGETS, SUITES, ArenaEvent, ArenaSettings, run_arena

__all__ = ["add_arguments", "main"]


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _names(text))
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--suite",
        default=",".join(SUITES),
        help=f"comma-separated suites: {', '.join(SUITES)} (default all)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="TOY",
        help="toy names instead of the suites, space-separated (e.g. toy-pivotal:5 "
        "toy-random:4,4,1)",
    )
    parser.add_argument(
        "--methods", help="comma-separated registered methods (default: every registered one)"
    )
    parser.add_argument("--runs", type=int, default=20, help="seeded runs per point (default 20)")
    parser.add_argument("--alpha", type=float, default=4.0, help="power alpha (default 4)")
    parser.add_argument(
        "--budgets",
        default=",".join(str(b) for b in BUDGETS),
        help="N per run for particle methods (default 8,16,32,64,128; mh: K = 1,4,16,64)",
    )
    parser.add_argument(
        "--schedules",
        default=",".join(SCHEDULES),
        help="schedules of schedule-reading methods, one line each (default all three)",
    )
    parser.add_argument("--seed", type=int, default=0, help="first run's seed (default 0)")
    parser.add_argument(
        "--metric",
        choices=("tv", "rare_mass_error", "tv_of_mean"),
        default="tv",
        help="the figure's y axis (default tv)",
    )
    parser.add_argument("--out", default="arena-results", help="output folder")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line")


def _progress(quiet: bool):
    def show(event: ArenaEvent) -> None:
        if quiet:
            return
        what = ""
        if event.row is not None:
            row = event.row
            what = f"{row['model']} · {row['line']} · {row['knob']}={row['budget']}"
        elif event.skipped is not None:
            what = f"skipped {event.skipped['method']} on {event.skipped['model']}"
        print(f"\rarena {event.done}/{event.total} {what:<60}", end="", file=sys.stderr)
        if event.done == event.total:
            print(file=sys.stderr)

    return show


def main(args: argparse.Namespace) -> int:
    models = tuple(args.models) if args.models else None
    settings = ArenaSettings(
        suites=_names(args.suite),
        methods=_names(args.methods) if args.methods else None,
        runs=args.runs,
        alpha=args.alpha,
        budgets=_ints(args.budgets),
        schedules=_names(args.schedules),
        seed=args.seed,
        models=models,
    )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file, not a folder")
    result = run_arena(settings, progress=_progress(args.quiet))
    paths = result.write(out)
    from powersmc_core.plotting.arena import arena_figure  # plotly only when writing

    html = out / "arena.html"
    arena_figure(result.frame, args.metric).write_html(html, include_plotlyjs=True)
    matched = result.matched()
    shown = lambda v: f"{v:.3f}"  # noqa: E731
    if matched.empty:  # no Power-SMC N = 32 cell: every cell instead
        cells = ["model", "line", "budget", "forwards", "tv", "tv_se", "rare_mass_error"]
        print(result.frame[cells].to_string(index=False, float_format=shown))
    else:
        print(matched.to_string(index=False, float_format=shown))
    for skip in result.skipped:
        print(f"skipped {skip['method']} on {skip['model']}: {skip['reason']}", file=sys.stderr)
    written = ", ".join(str(p) for p in [*paths.values(), html])
    print(f"wrote {written}", file=sys.stderr)
    return 0
