"""One session's memory: what it really holds, under one budget.

A session holds three kinds of bulk (``held``): the raw bytes of the files its upload
widgets still hold (Streamlit keeps an uploaded file in memory until the visitor removes
it), its parsed runs (the Runs history and the Live page's last run, each object
counted once: the same entry in both places is held once) and its cached figures
(``explorer.figure_cache``). ``DemoSettings.session_max_bytes`` bounds their sum
(``POWERSMC_SESSION_MAX_MB``: 48 MB in demo mode, 512 MB in full mode). When a new item
would exceed it (``make_room``): cached figures go first, then the oldest runs, each
announced once (``pop_notices``); an upload that cannot fit alone is refused
(``SessionFull``); figures that cannot fit are drawn without being cached
(``figure_room``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from explorer import session_keys as keys
from explorer.figure_cache import FigureCache
from powersmc_core.io.trace import TraceError

__all__ = [
    "Held",
    "SessionFull",
    "entry_bytes",
    "figure_room",
    "held",
    "make_room",
    "mb",
    "pop_notices",
]

# A parsed cell (one particle at one step) holds four floats (a 24-byte object and an
# 8-byte slot each), token, ancestor and root slots and a bool slot: 160 bytes, plus a
# 28-byte object per int outside CPython's small-int cache (token ids, indices > 256).
_CELL_BYTES = 160
_INT_BYTES = 28
_RECORD_BYTES = 900  # a record's own object and dict, its tuples' headers, its scalars


class SessionFull(TraceError):
    """An upload that cannot fit in the session's memory budget even alone."""


@dataclass(frozen=True)
class Held:
    """Bytes one session holds, by kind."""

    uploads: int  # raw files the upload widgets hold
    records: int  # parsed runs
    figures: int  # cached figures

    @property
    def total(self) -> int:
        return self.uploads + self.records + self.figures


def mb(n: int) -> str:
    """Bytes in MiB as messages write them ("48 MB")."""
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MB"


def entry_bytes(entry: Any) -> int:
    """The memory a run's parsed records hold (within 10% of tracemalloc's count): cells,
    ints outside the small-int cache, records and texts (as ``sys.getsizeof``).

    Measured once per entry and remembered on it (``entry.held``), so reruns do not walk
    100,000 texts again.
    """
    records = entry.records
    memo = getattr(entry, "held", None)
    if memo is not None and memo[0] == len(records):
        return memo[1]
    cells = sum(r.n_particles for r in records)
    ints = sum(
        sum(1 for x in values if not -5 <= x <= 256)
        for r in records
        for values in (r.tokens, r.ancestors, r.roots)
    )
    # Each text is its own str object once parsed: its header counts, not only its chars.
    texts = sum(8 + sys.getsizeof(t) for r in records if r.texts for t in r.texts)
    size = cells * _CELL_BYTES + ints * _INT_BYTES + len(records) * _RECORD_BYTES + texts
    if hasattr(entry, "held"):
        entry.held = (len(records), size)
    return size


def _is_entry(value: Any) -> bool:
    return hasattr(value, "run_id") and isinstance(getattr(value, "records", None), list)


def _is_upload(value: Any) -> bool:
    # Streamlit's UploadedFile (a BytesIO with its record's name, id and size).
    return hasattr(value, "file_id") and hasattr(value, "getvalue") and isinstance(value.size, int)


def _items(state: MutableMapping[str, Any]) -> Iterator[Any]:
    """Every top-level value of the state and the members of its lists and tuples."""
    for key in list(state.keys()):
        value = state.get(key)
        if isinstance(value, list | tuple):
            yield from value
        else:
            yield value


def held(state: MutableMapping[str, Any]) -> Held:
    """What the session ``state`` holds now: raw uploads, parsed runs, cached figures."""
    uploads = records = figures = 0
    seen: set[int] = set()
    for value in _items(state):
        if id(value) in seen:
            continue
        seen.add(id(value))
        if _is_upload(value):
            uploads += value.size
        elif _is_entry(value):
            records += entry_bytes(value)
        elif isinstance(value, FigureCache):
            figures += value.nbytes
    return Held(uploads, records, figures)


def _drop_entry(state: MutableMapping[str, Any], victim: Any, budget: int) -> int:
    """Remove ``victim`` from every place the session keeps it; the bytes freed."""
    runs = state.get(keys.HISTORY, [])
    state[keys.HISTORY] = [e for e in runs if e is not victim]
    if state.get(keys.LIVE_LAST) is victim:
        state[keys.LIVE_LAST] = None  # the Live page's last run is the same object
    cache = state.get(keys.FIGURE_CACHE)
    if isinstance(cache, FigureCache):
        cache.drop(lambda k: isinstance(k, tuple) and victim.cache_key in k)
    notices = state.setdefault(keys.RUNS_DROPPED, [])
    notices.append(
        f"Run {victim.run_id} ({len(victim.records)} steps, {victim.status}) was dropped from "
        f"this session to stay within its {mb(budget)} memory budget."
    )
    return entry_bytes(victim)


def make_room(
    state: MutableMapping[str, Any], budget: int, need: int = 0, keep: Any = None
) -> list[Any]:
    """Bring what the session holds plus ``need`` bytes within ``budget``: cached figures
    first (least recently used first), then the oldest runs, never ``keep``.

    Returns the runs dropped (each also announced once, see ``pop_notices``).
    """
    excess = held(state).total + need - budget
    cache = state.get(keys.FIGURE_CACHE)
    while excess > 0 and isinstance(cache, FigureCache) and len(cache):
        excess -= cache.evict_oldest()
    dropped = []
    while excess > 0:
        runs = [e for e in state.get(keys.HISTORY, []) if e is not keep]
        if not runs:
            break
        victim = runs[-1]  # the history is newest first
        excess -= _drop_entry(state, victim, budget)
        dropped.append(victim)
    return dropped


def figure_room(state: MutableMapping[str, Any], budget: int) -> Callable[[int], bool]:
    """A ``FigureCache.get`` ``room``: evicts older cached figures (never runs) until a set
    of ``n`` bytes fits in ``budget``; False when it cannot (the set is drawn uncached)."""

    def room(n: int) -> bool:
        cache = state.get(keys.FIGURE_CACHE)
        excess = held(state).total + n - budget
        while excess > 0 and isinstance(cache, FigureCache) and len(cache):
            excess -= cache.evict_oldest()
        return excess <= 0

    return room


def pop_notices(state: MutableMapping[str, Any]) -> list[str]:
    """The runs dropped since the last call, as sentences; each is returned once."""
    notices = state.get(keys.RUNS_DROPPED) or []
    if notices:
        state[keys.RUNS_DROPPED] = []
    return list(notices)
