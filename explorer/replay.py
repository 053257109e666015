"""The Runs page's work: import an upload within the session's memory, replay from cache.

``import_upload`` reads a trace through the gate (the mode's size cap), keeps one copy
per file content (a file uploaded six times is held once) and fits it in the session's
memory budget (``explorer.session_memory``: older runs may be dropped, a file that
cannot fit alone is refused with ``SessionFull``). ``replay_figures`` draws a run at a
step from the session's figure cache, so a rerun with nothing changed builds nothing.
``step_view`` is what the replay says at one step (metrics and the leader's text);
``play_frames`` the steps the Play button walks through (at most ``MAX_PLAY_FRAMES``).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from explorer import figure_cache, history, session_memory
from explorer.gate import Gate
from explorer.history import RunEntry
from explorer.session_memory import SessionFull, entry_bytes, mb
from powersmc_core.plotting import live as charts

__all__ = [
    "MAX_PLAY_FRAMES",
    "NEXT_STEP",
    "PLAYING",
    "PLAY_FRAME_S",
    "STEP",
    "Imported",
    "StepView",
    "import_upload",
    "next_frame",
    "replay_figures",
    "step_view",
]

# Session keys of the Runs page's replay (``views.replay_section``): the slider's widget
# key, the run being played, and the frame Play shows next (parked there because a
# slider's value cannot be written once it is drawn; applied before it on the next run).
STEP = "runs_step"
PLAYING = "runs_playing"
NEXT_STEP = "runs_next_step"
# Play walks at most this many frames (a long run skips steps), one per PLAY_FRAME_S.
MAX_PLAY_FRAMES = 120
PLAY_FRAME_S = 0.3


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
    """Parse an upload (``gate.upload``) into the session's history within its budget, as
    a new entry (a fresh run id if its trace's id is already listed, never a replacement).

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
    if any(e.run_id == entry.run_id for e in history.history(state)):
        # The trace of a listed run (downloaded, then uploaded): a second entry beside it,
        # under an id of its own; ``origin`` keeps the trace's id for its label.
        entry.run_id = uuid.uuid4().hex[:8]
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
    state: MutableMapping[str, Any], entry: RunEntry, step: int, budget: int, heavy: bool = True
) -> dict[str, go.Figure]:
    """Every Runs-page chart of ``entry`` at ``step``, built once per (run, step, options).

    ``heavy`` False (a Play frame): only the light charts (ESS, schedule, weights),
    built without the cache, so playing neither waits on O(T·N) charts nor fills it."""
    kappa = entry.config.get("ess_threshold")
    alpha = entry.config.get("alpha")
    if not heavy:
        return charts.live_figures(entry.records[:step], kappa, alpha, heavy=False)
    cache = figure_cache.session_cache(state)
    return cache.get(
        ("replay", entry.cache_key, step, kappa, alpha),
        lambda: charts.live_figures(entry.records[:step], kappa, alpha, heavy=True),
        room=session_memory.figure_room(state, budget),
    )


@dataclass(frozen=True)
class StepView:
    """What the replay shows at one step: the step's metrics and the leader's text."""

    step: int
    n_particles: int
    ess: float
    log_z: float  # log Ẑ so far
    lineages: int
    resampled: bool
    alpha: float  # alpha_t
    tau: float
    leader: int  # the heaviest particle after this step (the chosen one at the end)
    text: str | None  # its decoded text at this step; None when the trace kept none
    finished: bool
    note: str = ""  # where the text came from, or why there is none


def step_view(entry: RunEntry, step: int) -> StepView:
    """The run at ``step`` (1-based, clamped): metrics, and the heaviest particle's text
    then; at the last step of a finished run, the chosen particle's completion."""
    records = entry.records
    step = max(1, min(step, len(records)))
    record = records[step - 1]
    weights = record.log_weights
    leader = max(range(record.n_particles), key=lambda i: (weights[i], -i))
    note = "heaviest particle at this step"
    text = record.texts[leader] if record.texts is not None else None
    result = entry.result
    if step == len(records) and result is not None and 0 <= result.chosen < record.n_particles:
        leader, text, note = result.chosen, result.chosen_text, "the chosen completion"
    elif text is None:
        note = "this trace kept no particle texts at this step (stored runs keep every k-th)"
    return StepView(
        step=record.step,
        n_particles=record.n_particles,
        ess=record.ess,
        log_z=record.log_z,
        lineages=record.n_lineages,
        resampled=bool(record.resampled),
        alpha=record.alpha,
        tau=record.tau,
        leader=leader,
        text=text,
        finished=bool(record.finished[leader]),
        note=note,
    )


def next_frame(step: int, n_steps: int, max_frames: int = MAX_PLAY_FRAMES) -> int | None:
    """The step Play shows after ``step``, or None at the end; a run longer than
    ``max_frames`` steps is walked in strides, and the last step is always shown."""
    if step >= n_steps:
        return None
    stride = max(1, math.ceil(n_steps / max_frames))
    return min(n_steps, step + stride)
