"""Persisted runs: every finished or stopped run saved as a trace file, crashes marked.

Layout under ``root`` (``$POWERSMC_DATA_DIR/runs``)::

    final/<created_ms>-<run_id>.jsonl    one trace per run (header, steps, result)
    running/<run_id>.jsonl               journal of a run in progress

Life of a run (``RunStore.begin`` → ``RunJournal``):

1. ``begin`` writes the journal's header line (``status: "running"``) and keeps the
   file open with an exclusive ``flock``: the lock *is* the "still alive" marker, and
   the kernel drops it when the process dies, however it dies.
2. ``journal.sync(records)`` appends new step records; they are flushed (and fsynced)
   in batches, at most every ``flush_s`` seconds or ``flush_steps`` records, so a
   crash loses at most that much. Per-particle texts are written only on the last
   record of each batch (they are O(N·t) per record, O(N·T²) per run in total).
3. ``journal.finish(...)`` / ``store.save(...)`` writes the final trace atomically
   (unique temp file, fsync, rename) into ``final/`` and removes the journal.

On start-up (``RunStore(...)`` runs ``recover()``), every journal whose lock can be
taken belongs to a dead process: it becomes a final trace with status
``"interrupted"`` holding every record that was flushed (a torn last line is
dropped). A run is therefore never silently lost.

The journal itself is ``explorer.journal``; one trace file's writing, header and
compaction are ``explorer.run_files``. ``RunStore`` stays one class (write, bound, list,
load, recover: about 250 lines) because one lock guards all of them.

The total size of ``final/`` is bounded by ``max_bytes``: after each save the oldest
traces are deleted first. A trace larger than ``max_run_bytes`` is stored compacted
(texts kept every k-th step and at the end) rather than refused, if compaction fits.

Runs belong to an *owner*: a random token the server issues per session (``app.py``;
a ``?owner=…`` link is adopted only when the visitor confirms it), so a reload or a
server restart finds them again through that key while other visitors never see
them. Only a hash of the token is stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from explorer.journal import RunJournal, parse_journal, try_lock
from explorer.run_files import (
    StoredRunInfo,
    atomic_write,
    check_run_id,
    info_from_header,
    read_header,
    thin_texts,
    valid_run_id,
)
from explorer.settings import demo_settings
from explorer.uploads import read_trace_safely
from powersmc_core.engine.records import SMCResult, StepRecord
from powersmc_core.io.trace import FORMAT, VERSION, Trace, dumps_trace

__all__ = [
    "RunJournal",
    "RunSource",
    "RunStore",
    "StoredRun",
    "StoredRunInfo",
    "owner_hash",
    "reset_run_store",
    "run_store",
    "tracked",
]

log = logging.getLogger(__name__)

STATUSES = ("finished", "stopped", "timed out", "interrupted", "running")


def owner_hash(token: str | None) -> str | None:
    """What the store keeps of an owner token: 32 hex digits of its SHA-256."""
    if not token:
        return None
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class StoredRun:
    """A stored trace, read back and validated; ``records`` may be empty (interrupted)."""

    info: StoredRunInfo
    header: dict[str, Any]
    records: list[StepRecord]
    result: dict[str, Any] | None

    def trace(self) -> Trace:
        return Trace(header=self.header, records=self.records, result=self.result)


class RunStore:
    """Traces of finished, stopped and interrupted runs under ``root``, bounded in size."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        max_bytes: int = 200 * 1024 * 1024,
        max_run_bytes: int | None = None,
        flush_s: float = 2.0,
        flush_steps: int = 32,
        recover: bool = True,
    ) -> None:
        self.root = Path(root)
        self.final_dir = self.root / "final"
        self.running_dir = self.root / "running"
        self.final_dir.mkdir(parents=True, exist_ok=True)
        self.running_dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.max_run_bytes = int(max_run_bytes or min(self.max_bytes // 4, 50 * 1024 * 1024))
        self.flush_s = flush_s
        self.flush_steps = flush_steps
        self._lock = threading.RLock()
        self._journals: dict[str, RunJournal] = {}
        self.recovered: list[str] = []
        if recover:
            self.recovered = self.recover()

    # ---- writing -----------------------------------------------------------------------------
    def begin(
        self,
        run_id: str,
        config: Any,
        *,
        owner: str | None,
        model: str,
        prompt: str,
        extra: dict[str, Any] | None = None,
    ) -> RunJournal:
        """Mark a run as running (journal header on disk) and return its journal."""
        check_run_id(run_id)
        config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
        header = {
            "kind": "header",
            "format": FORMAT,
            "version": VERSION,
            "config": config_dict,
            "run_id": run_id,
            "model": model,
            "prompt": prompt,
            "owner": owner_hash(owner),
            "created": time.time(),
            "status": "running",
            "pid": os.getpid(),
            **(extra or {}),
        }
        with self._lock:
            old = self._journals.pop(run_id, None)
            if old is not None:
                old.close()
            journal = RunJournal(self, run_id, header, self.flush_s, self.flush_steps)
            self._journals[run_id] = journal
            return journal

    def save(
        self,
        run_id: str,
        records: Sequence[StepRecord],
        config: Any,
        *,
        status: str,
        owner: str | None,
        model: str,
        prompt: str,
        result: SMCResult | None = None,
        extra: dict[str, Any] | None = None,
        created: float | None = None,
    ) -> StoredRunInfo | None:
        """Save a run's final trace (replacing an earlier save of the same run) and close
        its journal if one is open. Returns None when even a compacted trace is too big."""
        check_run_id(run_id)
        config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
        meta = {
            "run_id": run_id,
            "model": model,
            "prompt": prompt,
            "owner": owner_hash(owner),
            "created": created if created is not None else time.time(),
            **(extra or {}),
        }
        with self._lock:
            journal = self._journals.get(run_id)
        info = self._save_final(run_id, records, config_dict, meta, result, status)
        if journal is not None:
            journal.close(remove=True)
        return info

    def _save_final(
        self,
        run_id: str,
        records: Sequence[StepRecord],
        config: dict[str, Any],
        meta: dict[str, Any],
        result: SMCResult | None,
        status: str,
    ) -> StoredRunInfo | None:
        meta = {**meta, "status": status, "saved": time.time(), "n_steps": len(records)}
        meta.pop("pid", None)
        text = self._fit(records, config, meta, result)
        if text is None:
            log.warning("run %s not persisted: trace over %d bytes", run_id, self.max_run_bytes)
            return None
        created_ms = int(float(meta.get("created") or time.time()) * 1000)
        path = self.final_dir / f"{created_ms:015d}-{run_id}.jsonl"
        with self._lock:
            previous = [p for p in self._final_paths(run_id) if p != path]
            atomic_write(path, text)
            for old in previous:  # an earlier save of the same run (e.g. stopped, then saved)
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
            self._enforce_budget(keep=path)
        header = json.loads(text.split("\n", 1)[0])
        return info_from_header(path, header, len(text.encode("utf-8")))

    def _fit(
        self,
        records: Sequence[StepRecord],
        config: dict[str, Any],
        meta: dict[str, Any],
        result: SMCResult | None,
    ) -> str | None:
        """The trace text, compacted (fewer per-step texts) until under max_run_bytes."""
        text = dumps_trace(records, config, meta=meta, result=result)
        if len(text.encode("utf-8")) <= self.max_run_bytes:
            return text
        for every in (8, 64, None):
            kept = thin_texts(records, every)
            text = dumps_trace(kept, config, meta={**meta, "compacted": True}, result=result)
            if len(text.encode("utf-8")) <= self.max_run_bytes:
                return text
        return None

    def _enforce_budget(self, keep: Path | None = None) -> list[Path]:
        """Delete the oldest final traces until their total size is within max_bytes."""
        removed = []
        with self._lock:
            entries = []
            for path in self.final_dir.glob("*.jsonl"):
                with contextlib.suppress(FileNotFoundError):
                    entries.append((path.name, path, path.stat().st_size))
            entries.sort()  # names start with the creation time in ms: oldest first
            total = sum(size for _, _, size in entries)
            for _, path, size in entries:
                if total <= self.max_bytes:
                    break
                if path == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
                total -= size
        return removed

    def total_bytes(self) -> int:
        total = 0
        for path in self.final_dir.glob("*.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    # ---- reading -----------------------------------------------------------------------------
    def list(self, owner: str | None, limit: int = 200) -> list[StoredRunInfo]:
        """The owner's runs, newest first (header lines only)."""
        wanted = owner_hash(owner)
        if wanted is None:
            return []
        runs = []
        for path in sorted(self.final_dir.glob("*.jsonl"), reverse=True):
            header, size = read_header(path)
            if header is None or header.get("owner") != wanted:
                continue
            runs.append(info_from_header(path, header, size))
            if len(runs) >= limit:
                break
        return runs

    def load(self, run_id: str, owner: str | None) -> StoredRun:
        """A run of this owner, validated; ``KeyError`` if there is none (or not theirs)."""
        check_run_id(run_id)
        wanted = owner_hash(owner)
        for path in self._final_paths(run_id):
            header, size = read_header(path)
            if header is None or wanted is None or header.get("owner") != wanted:
                continue
            trace = read_trace_safely(path.read_bytes(), max_bytes=max(size, 1), allow_empty=True)
            return StoredRun(
                info_from_header(path, header, size), trace.header, trace.records, trace.result
            )
        raise KeyError(f"no stored run {run_id!r}")

    def delete(self, run_id: str, owner: str | None) -> bool:
        check_run_id(run_id)
        wanted = owner_hash(owner)
        deleted = False
        for path in self._final_paths(run_id):
            header, _ = read_header(path)
            if header is not None and wanted is not None and header.get("owner") == wanted:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    deleted = True
        return deleted

    def _final_paths(self, run_id: str) -> list[Path]:
        return sorted(self.final_dir.glob(f"*-{run_id}.jsonl"))

    # ---- crash recovery ----------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Turn journals of dead processes into 'interrupted' final traces; their run ids."""
        recovered = []
        for path in sorted(self.running_dir.glob("*.jsonl")):
            run_id = path.stem
            with self._lock:
                if run_id in self._journals:
                    continue  # ours, alive
            try:
                handle = path.open("r+", encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            with handle:
                if not try_lock(handle):
                    continue  # another live process holds it
                if not valid_run_id(run_id):
                    path.unlink()
                    continue
                if self._final_paths(run_id):
                    path.unlink()  # crashed between the final write and the journal removal
                    continue
                header, records = parse_journal(path.read_bytes())
                if header is None:
                    header = {"run_id": run_id, "model": "unknown", "prompt": "", "config": {}}
                meta = {
                    k: v
                    for k, v in header.items()
                    if k not in ("kind", "format", "version", "config")
                }
                meta["interrupted_note"] = (
                    "the server stopped while this run was decoding; the steps flushed "
                    "before that are kept"
                )
                self._save_final(
                    run_id, records, header.get("config", {}), meta, None, "interrupted"
                )
                path.unlink()
                recovered.append(run_id)
        if recovered:
            log.warning("recovered %d interrupted run(s): %s", len(recovered), recovered)
        return recovered

    def _forget_journal(self, journal: RunJournal) -> None:
        with self._lock:
            if self._journals.get(journal.run_id) is journal:
                del self._journals[journal.run_id]


# ---- process-wide instance -------------------------------------------------------------------
_STORE: RunStore | None = None
_STORE_LOCK = threading.Lock()


def run_store(settings: Any = None) -> RunStore | None:
    """The server's store (``<data_dir>/runs``), created and recovered on first use;
    None when persistence is off (``POWERSMC_PERSIST=0``)."""
    global _STORE
    with _STORE_LOCK:
        if _STORE is None:
            s = settings if settings is not None else demo_settings()
            if not s.persist:
                return None
            _STORE = RunStore(Path(s.data_dir) / "runs", max_bytes=s.store_max_bytes)
        return _STORE


def reset_run_store() -> None:
    """Forget the process-wide store (tests)."""
    global _STORE
    with _STORE_LOCK:
        _STORE = None


class RunSource(Protocol):
    """What ``tracked`` needs of a run in progress: who it is and its records so far.

    ``explorer.live.LiveRun`` is one; the store never imports it (it works on records).
    """

    run_id: str
    config: Any
    model_name: str
    prompt_label: str
    reference: str | None
    toy: bool
    records: list[StepRecord]

    @property
    def done(self) -> bool: ...

    def result(self) -> SMCResult: ...


@contextlib.contextmanager
def tracked(
    run: RunSource, owner: str | None, store: RunStore | None = None
) -> Iterator[RunJournal | None]:
    """Journal a run while the block iterates it; on exit save it as finished or
    stopped (an exception — Stop, a rerun, a closed tab — counts as stopped).

    Inside the block call ``journal.sync(run.records)`` after each update.
    """
    store = store if store is not None else run_store()
    if store is None:
        yield None
        return
    journal = store.begin(
        run.run_id,
        run.config,
        owner=owner,
        model=run.model_name,
        prompt=run.prompt_label,
        extra={"reference": run.reference, "toy": run.toy},
    )
    journal.sync(run.records, force=True)
    try:
        yield journal
    finally:
        status = journal.final_status or ("finished" if run.done else "stopped")
        result = run.result() if run.records else None
        journal.finish(run.records, status, result)
