"""The Runs page's work: import an upload within the session's memory, replay from cache.

``import_upload`` reads a trace through the gate (the mode's size cap), keeps one copy
per file content (a file uploaded six times is held once) and fits it in the session's
memory budget (``explorer.session_memory``: older runs may be dropped, a file that
cannot fit alone is refused with ``SessionFull``). ``replay_figures`` draws a run at a
step from the session's figure cache, so a rerun with nothing changed builds nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from explorer import figure_cache, history, session_memory
from explorer.gate import Gate
from explorer.history import RunEntry
from explorer.session_memory import SessionFull, entry_bytes, mb
from powersmc_core.plotting import live as charts

__all__ = ["Imported", "import_upload", "replay_figures"]


@dataclass(frozen=True)
class Imported:
    """An upload in the session's history: ``fresh`` is False when it was already held."""

    entry: RunEntry
    fresh: bool


def _raw(data: Any, cap: int) -> bytes | None:
    """The upload's bytes, or None when it is not a file or is over the upload cap (then
    ``gate.upload`` refuses it with its own message, without it being read here)."""
    size = getattr(data, "size", None)
    if isinstance(size, int) and size > cap:  # Streamlit's UploadedFile: size known unread
        return None
    value = data.getvalue() if hasattr(data, "getvalue") else data
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) > cap:
        return None
    return bytes(value)


def import_upload(gate: Gate, state: MutableMapping[str, Any], data: Any, name: str) -> Imported:
    """Parse an upload (``gate.upload``) into the session's history within its budget.

    The same bytes already held are not parsed again. Raises ``TraceError`` for a bad
    file and ``SessionFull`` for one that alone exceeds the session's memory budget.
    """
    budget = gate.settings.session_max_bytes
    raw = _raw(data, gate.settings.max_upload_bytes)
    digest = hashlib.sha256(raw).hexdigest() if raw is not None else None
    for entry in history.history(state):
        if digest is not None and entry.digest == digest:
            return Imported(entry, fresh=False)
    size = len(raw) if raw is not None else 0
    if size > budget:  # refused before parsing: parsing costs about twice the file again
        raise SessionFull(_too_big(name, size, budget))
    entry = gate.upload(data, name)
    entry.digest = digest
    need = size + entry_bytes(entry)
    if need > budget:
        raise SessionFull(_too_big(name, need, budget))
    history.remember(state, entry, budget)
    return Imported(entry, fresh=True)


def _too_big(name: str, need: int, budget: int) -> str:
    return (
        f"{name} needs about {mb(need)} of memory once read (the file and its parsed "
        f"records); one session may hold {mb(budget)}. Upload a shorter trace (fewer steps "
        "or particles)."
    )


def replay_figures(
    state: MutableMapping[str, Any], entry: RunEntry, step: int, budget: int
) -> dict[str, go.Figure]:
    """Every Runs-page chart of ``entry`` at ``step``, built once per (run, step, options)."""
    kappa = entry.config.get("ess_threshold")
    alpha = entry.config.get("alpha")
    cache = figure_cache.session_cache(state)
    return cache.get(
        ("replay", entry.cache_key, step, kappa, alpha),
        lambda: charts.live_figures(entry.records[:step], kappa, alpha, heavy=True),
        room=session_memory.figure_room(state, budget),
    )
