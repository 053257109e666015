"""Built figures kept per session, so a rerun with nothing changed builds none.

A page asks ``FigureCache.get(key, build)``: the key names everything the figures depend
on (the kind of view, the run, the step shown, the options that change a figure), so a
hit can never be stale; a live run still decoding is keyed by its step count too. The
cache is a small LRU in session state, its bytes counted in the session's memory budget
(``explorer.session_memory``), and ``builds`` counts the figures built (tests count
builds, not seconds)::

    cache = figure_cache.session_cache(st.session_state)
    figures = cache.get(("replay", run_key, step), lambda: live_figures(...))
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, MutableMapping
from typing import Any

import numpy as np

from explorer import session_keys

__all__ = ["FigureCache", "figure_bytes", "session_cache"]

MAX_ITEMS = 12  # figure sets per session: a slider's recent steps and a few runs


def _value_bytes(value: Any) -> int:
    """Bytes a figure's property tree holds: arrays' buffers, strings, containers."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:  # hover labels: one Python string per cell
            return value.size * 8 + sum(_value_bytes(v) for v in value.flat)
        return value.nbytes
    if isinstance(value, str):
        return sys.getsizeof(value)
    if isinstance(value, Mapping):
        return 64 + sum(50 + _value_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return 56 + sum(8 + _value_bytes(v) for v in value)
    return 24  # a number, a bool, None


def figure_bytes(figure: Any) -> int:
    """A fair estimate of the memory a Plotly figure holds (within 2x of what tracemalloc
    measures; above its JSON size, which leaves out Python's per-object overhead).

    Walks the figure's own property dicts: ``to_dict`` would deep-copy them (about 0.1 s
    at the demo's cell cap), four times the cost of this walk.
    """
    data = getattr(figure, "_data", None)
    layout = getattr(figure, "_layout", None)
    if data is None or layout is None:  # not a plotly Figure: its public dict form
        return _value_bytes(figure.to_dict() if hasattr(figure, "to_dict") else figure)
    return _value_bytes(data) + _value_bytes(layout)


def _set_bytes(figures: Any) -> int:
    if isinstance(figures, Mapping):
        return sum(figure_bytes(f) for f in figures.values())
    return figure_bytes(figures)


class FigureCache:
    """An LRU of built figure sets (a figure, or a dict of them) keyed by what drew them.

    ``builds`` counts figures built since the cache was made; ``nbytes`` is the estimated
    memory of what it holds. ``budget(need)`` is asked before a new set is kept: it may
    evict, and a set it refuses is drawn uncached.
    """

    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self.max_items = max_items
        self.builds = 0
        self._items: OrderedDict[Hashable, tuple[Any, int, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        return sum(size for _, size, _ in self._items.values())

    def get(
        self,
        key: Hashable,
        build: Callable[[], Any],
        room: Callable[[int], bool] | None = None,
        pin: Any = None,
    ) -> Any:
        """The figures under ``key``, built by ``build()`` only when not cached.

        ``room(nbytes)`` says whether the new set may be kept (it may evict from this
        cache to make room); without it, only the item cap bounds the cache. ``pin`` is
        held with the set: a key naming an object by ``id()`` stays unique while cached
        (a freed object's id may be reused; a pinned one is not freed).
        """
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key][0]
        figures = build()
        self.builds += len(figures) if isinstance(figures, Mapping) else 1
        size = _set_bytes(figures)
        if room is None or room(size):
            self._items[key] = (figures, size, pin)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return figures

    def evict_oldest(self) -> int:
        """Drop the least recently used set; the bytes freed (0 when empty)."""
        if not self._items:
            return 0
        _, (_, size, _) = self._items.popitem(last=False)
        return size

    def drop(self, match: Callable[[Hashable], bool]) -> None:
        """Drop every set whose key ``match``es (a run that left the session)."""
        for key in [k for k in self._items if match(k)]:
            del self._items[key]

    def clear(self) -> None:
        self._items.clear()


def session_cache(state: MutableMapping[str, Any]) -> FigureCache:
    """This session's figure cache (created on first use)."""
    cache = state.get(session_keys.FIGURE_CACHE)
    if not isinstance(cache, FigureCache):
        cache = state[session_keys.FIGURE_CACHE] = FigureCache()
    return cache
