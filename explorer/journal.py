"""The journal of a run in progress: its "still running" marker and flushed records.

``RunStore.begin`` opens one per live run (``running/<run_id>.jsonl``): a header line,
then step records appended in batches (at most every ``flush_s`` seconds or
``flush_steps`` records, flushed and fsynced; per-particle texts only on the last
record of a batch, since they are O(N·t) per record). The writer holds an exclusive
``flock`` on the file for the run's lifetime: the kernel drops it when the process
dies, however it dies, so a journal whose lock can be taken belongs to a dead run
(``try_lock``) and ``parse_journal`` reads back every complete record it holds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, Protocol

from explorer.run_files import StoreFull
from explorer.uploads import read_trace_safely
from powersmc_core.engine.records import SMCResult, StepRecord
from powersmc_core.io.codec import to_json_safe as _json_safe
from powersmc_core.io.trace import TraceError

try:  # POSIX: the lock dies with the process. Elsewhere: the journal's age (see try_lock).
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["JournalHost", "RunJournal", "lock", "parse_journal", "try_lock"]


class JournalHost(Protocol):
    """What a journal needs of its store (``RunStore``): where to write, how to finish."""

    running_dir: Path

    def _save_final(
        self,
        run_id: str,
        records: Sequence[StepRecord],
        config: dict[str, Any],
        meta: dict[str, Any],
        result: SMCResult | None,
        status: str,
        address: str | None = None,
    ) -> Any: ...

    def _forget_journal(self, journal: RunJournal) -> None: ...


class RunJournal:
    """The 'running' marker and flushed records of one run in progress."""

    def __init__(
        self,
        store: JournalHost,
        run_id: str,
        header: dict[str, Any],
        flush_s: float,
        flush_steps: int,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.header = header
        self.address: str | None = None  # the client address the store charges (not saved)
        self.flush_s = flush_s
        self.flush_steps = flush_steps
        self.path = store.running_dir / f"{run_id}.jsonl"
        self._written = 0  # records handed to sync() so far
        self._pending: list[StepRecord] = []
        self._last_flush = time.monotonic()
        self.closed = False
        self.final_status: str | None = None  # e.g. "timed out"; set before the run ends
        self.save_error: str | None = None  # why finish() stored nothing (StoreFull's message)
        self._handle: IO[str] | None = self.path.open("a", encoding="utf-8")
        lock(self._handle)
        self._handle.truncate(0)
        self._handle.write(json.dumps(_json_safe(header), allow_nan=False) + "\n")
        self._flush_to_disk()

    def sync(self, records: Sequence[StepRecord], force: bool = False) -> None:
        """Journal the records not seen yet (pass the run's whole list each time; O(new))."""
        if self.closed:
            return
        if len(records) > self._written:
            self._pending.extend(records[self._written :])
            self._written = len(records)
        due = (
            force
            or len(self._pending) >= self.flush_steps
            or time.monotonic() - self._last_flush >= self.flush_s
        )
        if self._pending and due:
            self.flush()

    def flush(self) -> None:
        if self.closed or not self._pending or self._handle is None:
            return
        last = len(self._pending) - 1
        lines = []
        for i, record in enumerate(self._pending):
            if i != last and record.texts is not None:
                record = replace(record, texts=None)
            lines.append('{"kind": "step", ' + record.to_json()[1:] + "\n")
        self._handle.write("".join(lines))
        self._flush_to_disk()
        self._pending.clear()
        self._last_flush = time.monotonic()

    def _flush_to_disk(self) -> None:
        assert self._handle is not None
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def finish(
        self,
        records: Sequence[StepRecord],
        status: str,
        result: SMCResult | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Any:
        """Write the final trace (all records, full texts) and drop the journal.

        ``StoreFull`` (no room for the run) also drops the journal, sets ``save_error`` and
        propagates: the run then lives in its session only, not as a later 'interrupted'."""
        meta = {k: v for k, v in self.header.items() if k not in ("kind", "format", "version")}
        meta.pop("config", None)
        meta.update(extra or {})
        try:
            info = self.store._save_final(
                self.run_id,
                records,
                self.header.get("config", {}),
                meta,
                result,
                status,
                self.address,
            )
        except StoreFull as err:
            self.save_error = str(err)
            self.close(remove=True)
            raise
        self.close(remove=True)
        return info

    def close(self, remove: bool = False) -> None:
        """Release the lock; ``remove`` deletes the journal (its run was saved)."""
        if self.closed:
            return
        self.closed = True
        self.store._forget_journal(self)
        if self._handle is not None:
            if remove:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self._handle.close()  # closing releases the flock
            self._handle = None


def parse_journal(data: bytes) -> tuple[dict[str, Any] | None, list[StepRecord]]:
    """Header and every complete, valid record; stops at the first torn or bad line."""
    lines = data.split(b"\n")
    if data and not data.endswith(b"\n"):
        lines = lines[:-1]  # the last write was cut short
    header = None
    records: list[StepRecord] = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            break
        if not isinstance(obj, dict):
            break
        if i == 0:
            header = obj if obj.get("kind") == "header" else None
            if header is None:
                break
            continue
        buffer = io.BytesIO()
        buffer.write(json.dumps(header).encode() + b"\n" + raw + b"\n")
        try:
            trace = read_trace_safely(buffer.getvalue(), max_bytes=len(buffer.getvalue()) + 1)
        except TraceError:
            break
        record = trace.records[0]
        if records and record.step != records[-1].step + 1:
            break
        records.append(record)
    return header, records


def lock(handle: IO[str]) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def try_lock(handle: IO[str]) -> bool:
    """True if nobody holds the journal's lock (its writer is dead)."""
    if fcntl is None:  # pragma: no cover - Windows: a journal untouched for 10 minutes is dead
        return time.time() - os.fstat(handle.fileno()).st_mtime > 600
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
