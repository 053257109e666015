"""One stored trace file: its list entry, how it is written, read back and compacted.

A run's final trace is written atomically (``atomic_write``: unique temp file, fsync,
rename, fsync of the folder), so a reader never sees half of it. The run list reads
only each file's header line (``read_header``, bounded by ``HEADER_MAX_BYTES``) into a
``StoredRunInfo``. ``thin_texts`` compacts a run by keeping per-particle texts only
every k-th step and at the end. Run ids become file names, so ``check_run_id`` allows
letters and digits only. ``StoreFull`` is what a save raises when the store has no
room for it under its rule (``explorer.store``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from powersmc_core.engine.records import StepRecord

__all__ = [
    "HEADER_MAX_BYTES",
    "STORE_FULL_MESSAGE",
    "StoreFull",
    "StoredRunInfo",
    "atomic_write",
    "check_run_id",
    "info_from_header",
    "read_header",
    "thin_texts",
    "valid_run_id",
]

_RUN_ID = re.compile(r"^[A-Za-z0-9]{4,40}$")
HEADER_MAX_BYTES = 256 * 1024
STORE_FULL_MESSAGE = (
    "The server's run store is full; this run is kept in this browser session only."
)


class StoreFull(RuntimeError):
    """A save refused: the store's total budget has no room for it, even after evicting
    the owner's own older runs. The message is fit to show a visitor as it is."""

    def __init__(self, message: str = STORE_FULL_MESSAGE) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class StoredRunInfo:
    """One line of the run list (read from the trace header only)."""

    run_id: str
    status: str
    created: float
    model: str
    prompt: str
    n_steps: int
    bytes: int
    path: Path
    config: dict[str, Any]


def valid_run_id(run_id: Any) -> bool:
    # Run ids become file names: only letters and digits, so no path can be built from one.
    return isinstance(run_id, str) and bool(_RUN_ID.match(run_id))


def check_run_id(run_id: Any) -> None:
    if not valid_run_id(run_id):
        raise ValueError(f"run id must be 4-40 letters or digits, got {run_id!r}")


def thin_texts(records: Sequence[StepRecord], every: int | None) -> list[StepRecord]:
    last = len(records) - 1
    return [
        r
        if r.texts is None or i == last or (every is not None and i % every == 0)
        else replace(r, texts=None)
        for i, r in enumerate(records)
    ]


def atomic_write(path: Path, text: str) -> None:
    """Write to a unique temp file, fsync, rename over ``path``, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_header(path: Path) -> tuple[dict[str, Any] | None, int]:
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            line = handle.readline(HEADER_MAX_BYTES)
        header = json.loads(line.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None, 0
    return (header if isinstance(header, dict) else None), size


def info_from_header(path: Path, header: dict[str, Any], size: int) -> StoredRunInfo:
    def text(key: str, limit: int = 300) -> str:
        value = header.get(key)
        return "" if value is None else str(value)[:limit]

    try:
        created = float(header.get("created") or 0.0)
        n_steps = int(header.get("n_steps") or 0)
    except (TypeError, ValueError):
        created, n_steps = 0.0, 0
    config = header.get("config")
    return StoredRunInfo(
        run_id=text("run_id", 40),
        status=text("status", 20) or "unknown",
        created=created,
        model=text("model", 100),
        prompt=text("prompt"),
        n_steps=n_steps,
        bytes=size,
        path=path,
        config=config if isinstance(config, dict) else {},
    )
