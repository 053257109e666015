"""Persisted runs: every finished or stopped run saved as a trace file, crashes marked.

Layout under ``root`` (``$POWERSMC_DATA_DIR/runs``)::

    final/<owner_hash>/<created_ms>-<run_id>.jsonl   one trace per run (header, steps, result)
    final/unowned/<created_ms>-<run_id>.jsonl        runs without an owner (never listed)
    running/<run_id>.jsonl                           journal of a run in progress

Traces of the older flat layout (``final/<created_ms>-<run_id>.jsonl``) are moved into
their owner's folder when the store opens.

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
dropped). A run is therefore never silently lost, unless the store is full (below).

**Index.** Opening the store scans ``final/`` once and keeps, in memory, each owner's
runs (run id → file, size, cached header line) and byte totals. ``save``, ``list``,
``load``, ``delete`` and ``recover`` then use and update the index: none of them scans
the folder, and ``list`` reads no file, so their cost does not grow with the number of
stored runs. The index belongs to one ``RunStore``: one server process per data folder
(files changed behind its back are seen at the next start).

**Bounds.** A trace larger than ``max_run_bytes`` (at most the owner quota) is stored
compacted (texts kept every k-th step and at the end) rather than refused, if
compaction fits. Each owner holds at most ``owner_max_bytes``
(``POWERSMC_STORE_OWNER_MAX_MB``) and all owners together at most ``max_bytes``
(``POWERSMC_STORE_MAX_MB``). A save evicts the saving owner's *own* oldest runs until
both bounds hold; **another owner's run is never evicted**. When even evicting all of
the owner's older runs would not bring the total within ``max_bytes``, the save is
refused with ``StoreFull`` (nothing is deleted, a warning is logged); ``tracked`` then
keeps the run in the visitor's session only and hands the message on in
``journal.save_error``.

The journal itself is ``explorer.journal``; one trace file's writing, header and
compaction are ``explorer.run_files``. ``RunStore`` stays one class (index, write,
bound, list, load, recover) because one lock guards all of them.

Runs belong to an *owner*: a random token the server issues per session (``app.py``;
a ``?owner=…`` link is adopted only when the visitor confirms it), so a reload or a
server restart finds them again through that key while other visitors never see
them. Only a hash of the token is stored; two owners' runs never share a file name.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import logging
import os
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from explorer.journal import RunJournal, parse_journal, try_lock
from explorer.run_files import (
    StoredRunInfo,
    StoreFull,
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
    "StoreFull",
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


@dataclass(frozen=True)
class _Entry:
    """One stored run in the index: its file, size and cached list line."""

    name: str  # "<created_ms:015d>-<run_id>.jsonl": sorts oldest first
    size: int
    info: StoredRunInfo

    @property
    def path(self) -> Path:
        return self.info.path


@dataclass
class _OwnerRuns:
    """One owner's runs (run id → entry) and their total size."""

    runs: dict[str, _Entry] = field(default_factory=dict)
    bytes: int = 0


class RunStore:
    """Traces of finished, stopped and interrupted runs under ``root``, bounded in size
    per owner (``owner_max_bytes``) and in total (``max_bytes``)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        max_bytes: int = 200 * 1024 * 1024,
        max_run_bytes: int | None = None,
        flush_s: float = 2.0,
        flush_steps: int = 32,
        recover: bool = True,
        owner_max_bytes: int | None = None,
        address_max_bytes_per_day: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.final_dir = self.root / "final"
        self.running_dir = self.root / "running"
        self.final_dir.mkdir(parents=True, exist_ok=True)
        self.running_dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.owner_max_bytes = min(int(owner_max_bytes or self.max_bytes), self.max_bytes)
        # A run over the owner's quota could only be stored by refusing it: compact it to fit.
        self.max_run_bytes = min(
            int(max_run_bytes or min(self.max_bytes // 4, 50 * 1024 * 1024)),
            self.owner_max_bytes,
        )
        self.flush_s = flush_s
        self.flush_steps = flush_steps
        # Owners are per session, so a script can have many: bytes saved per client
        # address in the last day are bounded too (in memory; a restart forgets them).
        self.address_max_bytes_per_day = address_max_bytes_per_day
        self.clock = clock
        self._by_address: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._lock = threading.RLock()
        self._journals: dict[str, RunJournal] = {}
        self._owners: dict[str | None, _OwnerRuns] = {}
        self._total = 0
        self._dirs: set[str] = set()  # owner folders known to exist
        self._open_index()
        self.recovered: list[str] = []
        if recover:
            self.recovered = self.recover()

    # ---- the index ---------------------------------------------------------------------------
    def _open_index(self) -> None:
        """Index ``final/`` by one scan: owner folders, then traces of the old flat layout
        (moved into their owner's folder). Each owner is then brought within its quota."""
        nested: list[Path] = []
        flat: list[Path] = []
        with os.scandir(self.final_dir) as top:
            for item in top:
                if item.is_dir(follow_symlinks=False):
                    self._dirs.add(item.name)
                    with os.scandir(item.path) as inner:
                        nested.extend(
                            Path(f.path) for f in inner if f.is_file(follow_symlinks=False)
                        )
                elif item.is_file(follow_symlinks=False):
                    flat.append(Path(item.path))
        for path in nested + flat:
            self._index_file(path)
        for owner in list(self._owners):
            self._evict(owner, self._plan_eviction(owner, None, 0, global_budget=False))

    def _index_file(self, path: Path) -> None:
        match = _FINAL_NAME.match(path.name)
        if match is None:
            return  # a temp file of a write cut short, or not ours
        run_id = match.group(2)
        header, size = read_header(path)
        if header is None:  # unreadable: kept in the budget as an unowned stub, never listed
            try:
                size = path.stat().st_size
            except OSError:
                return
            header = {"run_id": run_id}
        owner = _owner_key(header.get("owner"))
        earlier = self._owners.get(owner, _OwnerRuns()).runs.get(run_id)
        if earlier is not None:
            # Two saves of one run (a crash between writing one and removing the other):
            # keep the later save.
            if _saved(read_header(earlier.path)[0]) >= _saved(header):
                _unlink(path)
                return
            self._drop(owner, run_id)
            _unlink(earlier.path)
        home = self._owner_dir(owner)
        if path.parent != home and not (home / path.name).exists():
            with contextlib.suppress(OSError):
                self._ensure_dir(owner)
                os.replace(path, home / path.name)
                path = home / path.name
        self._add(owner, run_id, path, header, size)

    def _owner_dir(self, owner: str | None) -> Path:
        return self.final_dir / (owner or _UNOWNED)

    def _ensure_dir(self, owner: str | None) -> Path:
        folder = self._owner_dir(owner)
        if folder.name not in self._dirs:
            folder.mkdir(exist_ok=True)
            self._dirs.add(folder.name)
        return folder

    def _add(
        self, owner: str | None, run_id: str, path: Path, header: dict[str, Any], size: int
    ) -> None:
        info = replace(info_from_header(path, header, size), run_id=run_id)
        runs = self._owners.setdefault(owner, _OwnerRuns())
        runs.runs[run_id] = _Entry(path.name, size, info)
        runs.bytes += size
        self._total += size

    def _drop(self, owner: str | None, run_id: str) -> _Entry | None:
        runs = self._owners.get(owner)
        entry = runs.runs.pop(run_id, None) if runs is not None else None
        if runs is None or entry is None:
            return None
        runs.bytes -= entry.size
        self._total -= entry.size
        if not runs.runs:
            del self._owners[owner]
        return entry

    def _plan_eviction(
        self, owner: str | None, run_id: str | None, size: int, global_budget: bool = True
    ) -> list[_Entry] | None:
        """The owner's oldest runs to delete so that a new save of ``size`` bytes (replacing
        ``run_id``'s earlier save) fits the owner's quota and, if asked, the total budget;
        None when even deleting all of them would not do. Other owners are never touched."""
        runs = self._owners.get(owner, _OwnerRuns())
        replaced = runs.runs.get(run_id) if run_id is not None else None
        freed = replaced.size if replaced is not None else 0
        owner_after = runs.bytes - freed + size
        total_after = self._total - freed + size
        victims: list[_Entry] = []
        candidates = sorted(
            (e for rid, e in runs.runs.items() if rid != run_id), key=lambda e: e.name
        )
        for entry in candidates:  # oldest first
            if owner_after <= self.owner_max_bytes and (
                not global_budget or total_after <= self.max_bytes
            ):
                break
            victims.append(entry)
            owner_after -= entry.size
            total_after -= entry.size
        if owner_after > self.owner_max_bytes or (global_budget and total_after > self.max_bytes):
            return None
        return victims

    def _evict(self, owner: str | None, victims: list[_Entry] | None) -> None:
        for entry in victims or ():
            self._drop(owner, entry.info.run_id)
            _unlink(entry.path)
        if victims:
            log.info(
                "evicted %d run(s) of owner %s (its quota or the store's budget)",
                len(victims),
                (owner or _UNOWNED)[:8],
            )

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
        address: str | None = None,
    ) -> RunJournal:
        """Mark a run as running (journal header on disk) and return its journal; its final
        save counts against ``address``'s daily bytes (the address is not written)."""
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
            journal.address = address
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
        address: str | None = None,
    ) -> StoredRunInfo | None:
        """Save a run's final trace (replacing an earlier save of the same run) and close
        its journal if one is open. Returns None when even a compacted trace is too big;
        raises ``StoreFull`` (nothing deleted) when the store has no room for it."""
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
        try:
            info = self._save_final(run_id, records, config_dict, meta, result, status, address)
        except StoreFull:
            if journal is not None:  # nothing will be stored: not an 'interrupted' run later
                journal.close(remove=True)
            raise
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
        address: str | None = None,
    ) -> StoredRunInfo | None:
        owner = _owner_key(meta.get("owner"))
        meta = {**meta, "owner": owner, "status": status, "saved": time.time()}
        meta["n_steps"] = len(records)
        meta.pop("pid", None)
        text = self._fit(records, config, meta, result)
        if text is None:
            log.warning("run %s not persisted: trace over %d bytes", run_id, self.max_run_bytes)
            return None
        size = len(text.encode("utf-8"))
        created_ms = int(float(meta.get("created") or time.time()) * 1000)
        name = f"{created_ms:015d}-{run_id}.jsonl"
        with self._lock:
            saved_today = self._address_bytes(address)
            if (
                address is not None
                and self.address_max_bytes_per_day is not None
                and saved_today + size > self.address_max_bytes_per_day
            ):
                log.warning(
                    "run %s not persisted: its address saved %d bytes today", run_id, saved_today
                )
                raise StoreFull(
                    f"Your network address has saved {saved_today / 2**20:.1f} MB of runs in "
                    "the last day, the most this server keeps per address; this run is kept "
                    "in this browser session only."
                )
            victims = self._plan_eviction(owner, run_id, size)
            if victims is None:
                log.warning(
                    "run %s not persisted: store full (%d of %d bytes used, owner %s holds %d)",
                    run_id,
                    self._total,
                    self.max_bytes,
                    (owner or _UNOWNED)[:8],
                    self._owner_bytes(owner),
                )
                raise StoreFull()
            path = self._ensure_dir(owner) / name
            atomic_write(path, text)
            earlier = self._drop(owner, run_id)  # e.g. stopped, then saved again
            if earlier is not None and earlier.path != path:
                _unlink(earlier.path)
            self._evict(owner, victims)
            self._add(owner, run_id, path, json.loads(text.split("\n", 1)[0]), size)
            if address is not None:
                self._by_address[address].append((self.clock(), size))
            return self._owners[owner].runs[run_id].info

    def _address_bytes(self, address: str | None) -> int:
        """Bytes saved for ``address`` in the last 24 h (0 for None)."""
        if address is None or address not in self._by_address:
            return 0
        saves = self._by_address[address]
        while saves and self.clock() - saves[0][0] > 86_400:
            saves.popleft()
        if not saves:
            del self._by_address[address]
            return 0
        return sum(size for _, size in saves)

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

    def total_bytes(self) -> int:
        """The size of every stored trace, from the index (no file is read)."""
        with self._lock:
            return self._total

    def owner_bytes(self, owner: str | None) -> int:
        """The size of this owner token's stored traces, from the index."""
        return self._owner_bytes(owner_hash(owner))

    def _owner_bytes(self, owner: str | None) -> int:
        with self._lock:
            runs = self._owners.get(owner)
            return runs.bytes if runs is not None else 0

    # ---- reading -----------------------------------------------------------------------------
    def list(self, owner: str | None, limit: int = 200) -> list[StoredRunInfo]:
        """The owner's runs, newest first, from the index: no file is read, and the time
        grows with this owner's runs only."""
        wanted = owner_hash(owner)
        if wanted is None:
            return []
        with self._lock:
            runs = self._owners.get(wanted)
            entries = list(runs.runs.values()) if runs is not None else []
        newest = heapq.nlargest(limit, entries, key=lambda e: e.name)
        return [e.info for e in newest]

    def load(self, run_id: str, owner: str | None) -> StoredRun:
        """A run of this owner, validated; ``KeyError`` if there is none (or not theirs)."""
        check_run_id(run_id)
        wanted = owner_hash(owner)
        with self._lock:
            runs = self._owners.get(wanted) if wanted is not None else None
            entry = runs.runs.get(run_id) if runs is not None else None
        if entry is None:
            raise KeyError(f"no stored run {run_id!r}")
        try:
            data = entry.path.read_bytes()
        except FileNotFoundError:
            raise KeyError(f"no stored run {run_id!r}") from None
        trace = read_trace_safely(data, max_bytes=max(len(data), 1), allow_empty=True)
        if trace.header.get("owner") != wanted:  # the file was changed behind the index
            raise KeyError(f"no stored run {run_id!r}")
        return StoredRun(entry.info, trace.header, trace.records, trace.result)

    def delete(self, run_id: str, owner: str | None) -> bool:
        """Delete one of this owner's runs; False if they have none by that id."""
        check_run_id(run_id)
        wanted = owner_hash(owner)
        if wanted is None:
            return False
        with self._lock:
            entry = self._drop(wanted, run_id)
            if entry is None:
                return False
            _unlink(entry.path)
            if wanted not in self._owners:  # their last run: drop the empty folder too
                with contextlib.suppress(OSError):
                    self._owner_dir(wanted).rmdir()
                    self._dirs.discard(wanted)
        return True

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
                header, records = parse_journal(path.read_bytes())
                if header is None:
                    header = {"run_id": run_id, "model": "unknown", "prompt": "", "config": {}}
                owner = _owner_key(header.get("owner"))
                with self._lock:
                    saved = run_id in self._owners.get(owner, _OwnerRuns()).runs
                if saved:
                    path.unlink()  # crashed between the final write and the journal removal
                    continue
                meta = {
                    k: v
                    for k, v in header.items()
                    if k not in ("kind", "format", "version", "config")
                }
                meta["interrupted_note"] = (
                    "the server stopped while this run was decoding; the steps flushed "
                    "before that are kept"
                )
                # StoreFull is logged; retrying at every start would not make room.
                with contextlib.suppress(StoreFull):
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


_FINAL_NAME = re.compile(r"^(\d{1,20})-([A-Za-z0-9]{4,40})\.jsonl$")
_OWNER_HASH = re.compile(r"^[0-9a-f]{32}$")
_UNOWNED = "unowned"  # the folder of runs without an owner (never listed); not a hex hash


def _owner_key(value: Any) -> str | None:
    """An owner hash as the index and the folder names use it; anything else is unowned."""
    return value if isinstance(value, str) and _OWNER_HASH.match(value) else None


def _saved(header: dict[str, Any] | None) -> float:
    try:
        return float((header or {}).get("saved") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


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
            _STORE = RunStore(
                Path(s.data_dir) / "runs",
                max_bytes=s.store_max_bytes,
                owner_max_bytes=s.store_owner_max_bytes,
                address_max_bytes_per_day=s.store_address_max_bytes_per_day,
            )
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
    run: RunSource, owner: str | None, store: RunStore | None = None, address: str | None = None
) -> Iterator[RunJournal | None]:
    """Journal a run while the block iterates it; on exit save it as finished or
    stopped (an exception — Stop, a rerun, a closed tab — counts as stopped).

    Inside the block call ``journal.sync(run.records)`` after each update. A full store
    (``StoreFull``) never ends the run with an error: the run stays in the session and
    ``journal.save_error`` holds the message to show.
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
        # How the run is made (stop rule, backend, preset), where the run says: restored
        # runs keep it.
        extra={
            "reference": run.reference,
            "toy": run.toy,
            **{k: v for k, v in getattr(run, "context", {}).items() if v is not None},
        },
        address=address,
    )
    journal.sync(run.records, force=True)
    try:
        yield journal
    finally:
        status = journal.final_status or ("finished" if run.done else "stopped")
        result = run.result() if run.records else None
        with contextlib.suppress(StoreFull):  # logged by the store; see journal.save_error
            journal.finish(run.records, status, result)
