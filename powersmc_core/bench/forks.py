"""``bench --fork-cost``: what one sequence copy costs on llama.cpp, against prefix length.

Two ways to give sequence 1 the cache of sequence 0 (a prefix of L tokens) in a context
whose streams hold C cells each (C = the longest prefix + T + 1, llama.cpp rounds it up
to a multiple of 256), each followed by the one-token decode that uses the copy:

* ``seq_cp``: ``llama_memory_seq_cp``, deferred to that decode, copies the destination
  stream's whole buffer: C cells whatever L;
* ``cell copy``: ``llama_state_seq_get_data``/``set_data`` (``Context.copy``): the L
  cells the prefix uses, at once.

Reported per L, medians over ``repeats`` rounds (interleaved, so load hits both alike):
copy ms = median(copy + decode) − median(decode alone); the ratio seq_cp / cell copy.
On a shared machine the milliseconds are noisy; the cell counts are exact.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from powersmc_core.bench.summary import DEFAULT_PROMPT

__all__ = ["FORK_PREFIXES", "fork_cost", "format_fork_table"]

FORK_PREFIXES = (32, 64, 128, 256, 512, 1024)


def _prefix(model: Any, length: int) -> np.ndarray:
    """``length`` token ids: the default prompt's, repeated (the content does not matter)."""
    ids = model.encode_prompt(DEFAULT_PROMPT)
    return np.resize(np.asarray(ids, dtype=np.int32), length)


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return 1000.0 * (time.perf_counter() - start)


def fork_cost(args: argparse.Namespace, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time both copies for every prefix in ``FORK_PREFIXES``; returns the summary."""
    from powersmc_core.models.llamacpp.context import Context
    from powersmc_core.models.llamacpp.model import load_llamacpp_model
    from powersmc_core.models.llamacpp.runtime import default_threads

    threads = args.threads if args.threads is not None else default_threads()
    model = load_llamacpp_model(args.model, threads=threads)
    repeats = max(5, args.repeats)
    per_seq = max(FORK_PREFIXES) + args.max_new_tokens + 1
    rows: list[dict[str, Any]] = []
    for length in FORK_PREFIXES:
        context = Context(model.weights, per_seq, 2, threads)
        row = _measure(context, _prefix(model, length), repeats)
        rows.append(row)
        if log is not None:
            log(f"prefix {length}: {row}")
    return {
        "bench": "fork-cost",
        "model": model.name,
        "threads": threads,
        "repeats": repeats,
        "rows": rows,
    }


def format_fork_table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table (ms: medians; noisy on a shared machine)."""
    lines = [
        f"fork cost on llama.cpp ({summary['model']}, {summary['threads']} threads, "
        f"median of {summary['repeats']}; copy ms = copy+decode - decode)",
        f"{'prefix':>7} {'stream cells':>12} {'cells copied':>12} {'seq_cp ms':>10} "
        f"{'cell copy ms':>12} {'(alone) ms':>10} {'cp/cell':>7} {'decode ms':>10}",
    ]
    for row in summary["rows"]:
        ratio = row["seq_cp_ms"] / max(row["cell_copy_only_ms"], 1e-6)
        lines.append(
            f"{row['prefix']:>7} {row['stream_cells']:>12} {row['cells_copied']:>12} "
            f"{row['seq_cp_ms']:>10.2f} {row['cell_copy_ms']:>12.2f} "
            f"{row['cell_copy_only_ms']:>10.2f} {ratio:>7.1f} {row['decode_ms']:>10.2f}"
        )
    return "\n".join(lines)


def _measure(context: Any, ids: np.ndarray, repeats: int) -> dict[str, Any]:
    """One prefix's row: ``ids`` decoded into sequence 0, then copied to sequence 1."""
    length, lib = ids.size, context.lib
    for begin in range(0, length, context.capacity):  # the prefix, into sequence 0
        chunk = ids[begin : begin + context.capacity]
        context.decode(chunk, np.arange(begin, begin + chunk.size), np.zeros(chunk.size), False)
    token, seq = ids[:1], np.ones(1, np.int32)

    def decode() -> None:  # the next token of sequence 1: uses (and completes) the copy
        if context.decode(token, length, seq, True) != 0:
            raise RuntimeError("the fork-cost context is too small")

    def alone() -> None:  # sequence 1 holds the prefix already: drop that token, redo it
        lib.llama_memory_seq_rm(context.memory, 1, length, -1)
        decode()

    def stream() -> None:
        context.remove(1)
        context.copy_stream(0, 1)
        decode()

    def cells() -> None:
        context.remove(1)
        context.copy(0, 1)
        decode()

    def copy_only() -> None:
        context.remove(1)
        context.copy(0, 1)

    actions = {"seq_cp": stream, "cells": cells, "decode": alone, "copy": copy_only}
    cells()  # warm-up
    times: dict[str, list[float]] = {key: [] for key in actions}
    for _ in range(repeats):  # interleaved: load on the machine hits every action alike
        for key, action in actions.items():
            times[key].append(_timed(action))
    median = {key: statistics.median(values) for key, values in times.items()}
    before = context.cells_copied
    context.copy(0, 1)
    return {
        "prefix": length,
        "stream_cells": context.per_seq,
        "cells_copied": context.cells_copied - before,
        "decode_ms": median["decode"],
        "seq_cp_ms": max(0.0, median["seq_cp"] - median["decode"]),
        "cell_copy_ms": max(0.0, median["cells"] - median["decode"]),
        "cell_copy_only_ms": median["copy"],
    }
