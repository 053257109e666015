"""Measured SMC milliseconds per step on torch and llama.cpp: what ``auto`` chooses by.

Two sources, the second overriding the first:

* ``SHIPPED``: tables measured for this project with ``bench --compare-backends`` (the
  machine and date are in each table's ``source``);
* a per-machine calibration, ``python -m powersmc_core bench --calibrate-backends``,
  written to ``calibration_path()`` (under the project's cache dir) with a machine
  fingerprint (CPU model, core count, torch and llama-cpp-python versions). A file
  from another machine or library version is not used; an unreadable one is ignored
  with a warning (auto then falls back to the shipped table or the plain rule).

``lookup`` takes the measured row nearest to the asked (N, threads): N by ratio
(|log N − log N_row|, particles scale the work multiplicatively), then threads.
Importing this module imports neither torch nor ``llama_cpp``.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powersmc_core.models.gguf_cache import cache_root

__all__ = [
    "CALIBRATION_FILE",
    "SHIPPED",
    "TimingRow",
    "TimingTable",
    "calibration_path",
    "load_calibration",
    "lookup",
    "machine_fingerprint",
    "timing_table",
    "write_calibration",
]

CALIBRATION_FILE = "backend-calibration.json"
CALIBRATION_VERSION = 1
CALIBRATE_HINT = "python -m powersmc_core bench --calibrate-backends"


@dataclass(frozen=True)
class TimingRow:
    """SMC ms per step at (N, threads) on each backend (the bench's ``smc_ms``)."""

    n_particles: int
    threads: int
    torch_ms: float
    llamacpp_ms: float


@dataclass(frozen=True)
class TimingTable:
    """Rows measured for one model; ``source`` says where (shown in ``backend_reason``)."""

    source: str
    rows: tuple[TimingRow, ...]


def _rows(values: Iterable[tuple[int, int, float, float]]) -> tuple[TimingRow, ...]:
    return tuple(TimingRow(*v) for v in values)


# Measured on a 2-core x86_64 (AMD EPYC, AVX2) with ``bench --compare-backends``, embedded
# SmolLM2-135M (llama.cpp: the Q4_1 GGUF; torch: its float32 copy); rows (N, threads, torch
# SMC ms/step, llama.cpp SMC ms/step).
# * N = 8 and 32: 2026-12-03 21:01-21:12 UTC, quiet (load 0.3-1.9), `--particles 8,32
#   --threads 1,2 -t 64 -r 3`.
# * Other N, 1 thread: 2026-12-03, `--particles 1,4,8,16,32,64 --threads 1,2 -t 16 -r 2`
#   while other jobs ran (load 7-10), so rough. Its 2-thread rows are not used: with two
#   threads on two busy cores both backends' times were off by up to 10x.
# The crossover: llama.cpp is faster at small N (its quantised GEMM costs per row), torch
# from N = 32 at 1 thread (its float32 GEMM is bound by reading the weights).
# A per-machine calibration (`bench --calibrate-backends`) replaces this table.
SHIPPED: dict[str, TimingTable] = {
    "smollm2": TimingTable(
        "shipped table: 2-core x86 AVX2, 2026-12-03",
        _rows(
            [
                (1, 1, 302.2, 108.7),
                (4, 1, 545.7, 222.1),
                (8, 1, 127.8, 90.5),
                (16, 1, 717.5, 525.2),
                (32, 1, 265.6, 323.4),
                (64, 1, 1612.9, 2325.7),
                (8, 2, 105.8, 46.5),
                (32, 2, 185.1, 168.9),
            ]
        ),
    )
}


def calibration_path() -> Path:
    """Where ``bench --calibrate-backends`` writes and ``auto`` reads the calibration."""
    return cache_root() / CALIBRATION_FILE


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_fingerprint() -> dict[str, Any]:
    """What a calibration is valid for: CPU model, core count and library versions."""
    return {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": _version("torch"),
        "llama_cpp_python": _version("llama-cpp-python") or _version("llama_cpp_python"),
    }


def write_calibration(
    model: str, rows: Iterable[TimingRow], date: str, path: Path | None = None
) -> Path:
    """Store ``rows`` for ``model`` (other models' rows from this machine are kept)."""
    path = calibration_path() if path is None else path
    fingerprint = machine_fingerprint()
    models: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if old.get("fingerprint") == fingerprint and isinstance(old.get("models"), dict):
                models = old["models"]
        except (OSError, ValueError, AttributeError):
            pass  # replaced below: a broken file is what a calibration run repairs
    models[model] = {
        "date": date,
        "rows": [
            {"n_particles": r.n_particles, "threads": r.threads, "torch_ms": r.torch_ms,
             "llamacpp_ms": r.llamacpp_ms}
            for r in rows
        ],
    }  # fmt: skip
    payload = {"version": CALIBRATION_VERSION, "fingerprint": fingerprint, "models": models}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def _parse_rows(entries: Any) -> tuple[TimingRow, ...]:
    rows = []
    for entry in entries:
        row = TimingRow(
            int(entry["n_particles"]),
            int(entry["threads"]),
            float(entry["torch_ms"]),
            float(entry["llamacpp_ms"]),
        )
        if row.n_particles < 1 or row.threads < 1:
            raise ValueError(f"N and threads must be >= 1 in {entry!r}")
        if not all(math.isfinite(v) and v > 0 for v in (row.torch_ms, row.llamacpp_ms)):
            raise ValueError(f"ms per step must be finite and > 0 in {entry!r}")
        rows.append(row)
    if not rows:
        raise ValueError("no rows")
    return tuple(rows)


def load_calibration(model: str, path: Path | None = None) -> TimingTable | None:
    """This machine's calibration for ``model``, or None (absent, other machine, unreadable).

    An unreadable or malformed file warns (``UserWarning``) and counts as absent: the
    backend choice must never fail because of a cache file.
    """
    path = calibration_path() if path is None else path
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, Mapping) or data.get("version") != CALIBRATION_VERSION:
            raise ValueError(f"not a version-{CALIBRATION_VERSION} calibration")
        if data.get("fingerprint") != machine_fingerprint():
            return None  # measured on another machine or with other libraries
        entry = data["models"].get(model)
        if entry is None:
            return None
        rows = _parse_rows(entry["rows"])
        date = str(entry.get("date", "?"))[:10]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        warnings.warn(
            f"ignoring the backend calibration {path} ({type(err).__name__}: {err}); "
            f"rerun `{CALIBRATE_HINT}` to rebuild it",
            UserWarning,
            stacklevel=2,
        )
        return None
    return TimingTable(f"calibration of {date}", rows)


def timing_table(model: str) -> TimingTable | None:
    """The measurements ``auto`` uses for ``model``: this machine's calibration, else shipped."""
    return load_calibration(model) or SHIPPED.get(model)


def lookup(table: TimingTable, n_particles: int, threads: int) -> TimingRow:
    """The row nearest (N, threads): N by ratio first, then threads, ties to the smaller."""
    n_log, t_log = math.log(n_particles), math.log(threads)
    return min(
        table.rows,
        key=lambda r: (
            round(abs(math.log(r.n_particles) - n_log), 9),
            round(abs(math.log(r.threads) - t_log), 9),
            r.n_particles,
            r.threads,
        ),
    )
