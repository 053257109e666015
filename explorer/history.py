"""Run history: finished, stopped, stored and uploaded runs, their summaries and files.

A ``RunEntry`` is what the Runs page lists: records, result, status and where it came
from. The session keeps the newest ``MAX_HISTORY`` entries (``history`` / ``remember``),
one copy per run id and per uploaded file's content, within the session's one memory
budget (``DemoSettings.session_max_bytes``, shared with the raw uploads and cached
figures: ``explorer.session_memory``; ``entry_bytes`` measures an entry: about 200
bytes per particle per step plus its texts, about twice the trace file's size), so
uploads cannot grow a session without bound; an entry downloads as a trace (JSON
lines) and a summary (CSV) and is rebuilt from any trace (``entry_from_trace``), be it
an upload or a run the store kept.

An entry also says how its run was made: stop rule (and stop strings), backend and
preset id, written to the trace header and read back validated (``run_context``; a
trace without them, an older one, reads back as unknown). An upload is a new entry
beside the run it came from (``replay.import_upload`` gives it a fresh run id when its
trace's id is already listed; ``origin`` keeps that id and the label says "upload of
<run id>"), never a replacement of it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from explorer import session_keys, session_memory
from explorer.inputs import STOP_RULES
from explorer.presets import TEXT_PRESETS, grade
from explorer.session_memory import entry_bytes
from explorer.settings import demo_settings
from powersmc_core.engine.records import SMCResult, StepRecord
from powersmc_core.io.cells import csv_text
from powersmc_core.io.codec import from_json_safe as _json_restore
from powersmc_core.io.trace import Trace, dumps_trace, run_context
from powersmc_core.models.backends import BACKENDS

__all__ = [
    "MAX_HISTORY",
    "RunEntry",
    "context_line",
    "entry_bytes",
    "entry_from_stored",
    "entry_from_trace",
    "entry_summary_csv",
    "entry_trace_text",
    "history",
    "preset_id",
    "remember",
    "run_summary",
    "safe_summary",
    "settings_line",
    "summary_frame",
]

MAX_HISTORY = 20


@dataclass
class RunEntry:
    """A run in the session's history: live (finished or stopped) or uploaded."""

    run_id: str
    model: str
    prompt: str
    config: dict[str, Any]
    records: list[StepRecord]
    result: SMCResult | None
    status: str  # finished | stopped | uploaded
    reference: str | None = None
    toy: bool = False
    created: float = field(default_factory=time.time)
    source: str = "live"
    compute_s: float | None = None  # sampling time without redraws (live runs only)
    digest: str | None = None  # SHA-256 of the uploaded file (uploads only): one copy each
    # (len(records), bytes) measured by ``entry_bytes``, so reruns need not walk the texts.
    held: tuple[int, int] | None = field(default=None, repr=False, compare=False)
    # How the run was made; None: unknown (a trace from before these were recorded).
    stop_rule: str | None = None  # one of inputs.STOP_RULES
    stop_strings: str | None = None  # the stop-strings field as typed (rule "stop strings")
    backend: str | None = None  # the backend that ran it: torch or llamacpp
    preset: str | None = None  # the preset problem's name (its id), if the prompt was one
    origin: str | None = None  # an upload: the run id its trace names (its own may differ)

    @property
    def cache_key(self) -> tuple[str, float]:
        """Names this entry in figure-cache keys: a later upload reusing the run id differs."""
        return (self.run_id, self.created)

    @property
    def label(self) -> str:
        cfg = self.config
        stamp = time.strftime("%H:%M:%S", time.localtime(self.created))
        name = self.run_id
        if self.digest is not None:  # an upload: say which run its file came from
            name = f"upload of {self.origin}" if self.origin else f"upload {self.run_id}"
            if self.origin and self.origin != self.run_id:
                name += f" as {self.run_id}"
        return (
            f"{stamp} · {self.model} · α={cfg.get('alpha')} N={cfg.get('n_particles')} · "
            f"{len(self.records)} steps · {self.status} [{name}]"
        )


def context_line(entry: RunEntry) -> str:
    """'stop rule: … · backend: … · preset: …' (unknown where the trace did not say);
    plain text, escape it for Markdown."""
    rule = entry.stop_rule
    if rule == "stop strings" and entry.stop_strings:
        rule = f"stop strings ({entry.stop_strings})"
    backend = {"llamacpp": "llama.cpp"}.get(entry.backend or "", entry.backend)
    parts = [f"stop rule: {rule or 'unknown'}", f"backend: {backend or 'unknown'}"]
    if entry.preset is not None:
        parts.append(f"preset: {entry.preset}")
    return " · ".join(parts)


def settings_line(entry: RunEntry) -> str:
    """'ran with N = 8 · α = 4 · max new tokens 24 · …': the settings the run used (after
    the caps), so the page states what ran, not what a widget asked for; plain text."""
    c = entry.config
    parts = [
        f"ran with N = {c.get('n_particles', '?')}",
        f"α = {c.get('alpha', '?'):g}" if isinstance(c.get("alpha"), int | float) else "α = ?",
        f"max new tokens {c.get('max_new_tokens', '?')}",
        f"schedule {c.get('schedule', '?')}",
        f"resampling {c.get('resampling', '?')} (κ = {c.get('ess_threshold', '?')})",
        f"seed {c.get('seed', '?')}",
    ]
    return " · ".join(str(p) for p in parts)


def preset_id(prompt: object, reference: object) -> str | None:
    """The name of the preset problem with this prompt and known answer, else None."""
    for preset in TEXT_PRESETS:
        if prompt == preset.prompt and reference == preset.answer:
            return preset.name
    return None


HISTORY_KEY = session_keys.HISTORY


def history(state: MutableMapping[str, Any]) -> list[RunEntry]:
    """The session's runs, newest first (created on first use)."""
    if HISTORY_KEY not in state:
        state[HISTORY_KEY] = []
    return state[HISTORY_KEY]


def remember(
    state: MutableMapping[str, Any], entry: RunEntry, budget: int | None = None
) -> list[RunEntry]:
    """Add a run, newest first, replacing one with the same id or the same uploaded file
    (``replay.import_upload`` gives an upload of a listed run its own id: a second entry);
    keep ``MAX_HISTORY`` runs, and the session within ``budget`` bytes (default: the
    settings' ``session_max_bytes``) by dropping cached figures, then the oldest runs
    (never this one). Returns the runs dropped for memory (each announced once)."""
    if budget is None:
        budget = demo_settings().session_max_bytes

    def same(e: RunEntry) -> bool:
        return e.run_id == entry.run_id or (entry.digest is not None and e.digest == entry.digest)

    runs = [entry, *(e for e in history(state) if not same(e))]
    state[HISTORY_KEY] = runs[:MAX_HISTORY]
    return session_memory.make_room(state, budget, keep=entry)


def run_summary(entry: RunEntry) -> dict[str, Any]:
    """One row describing a run: chosen completion, log p, log Ẑ, latency, answer.

    The answer is graded only when the chosen completion finished (``finished``: EOS or
    the stop rule); an unfinished one has answer and correct None."""
    last = entry.records[-1] if entry.records else None
    result = entry.result
    finished: bool | None = None  # did the chosen particle end (EOS or stop rule)?
    if result is not None:
        chosen, text = result.chosen, result.chosen_text
        if 0 <= chosen < len(result.finished):
            finished = bool(result.finished[chosen])
        log_p, log_z, elapsed = result.log_p[chosen], result.log_z, result.elapsed
        if entry.compute_s is not None:
            elapsed = entry.compute_s
        n_tokens = len(result.completions[chosen])
        resamples = result.n_resamples
    elif last is not None:  # an uploaded trace without a result line: the heaviest particle
        chosen = max(range(last.n_particles), key=last.log_weights.__getitem__)
        text = last.texts[chosen] if last.texts else None
        finished = bool(last.finished[chosen])
        log_p, log_z, elapsed = last.log_p[chosen], last.log_z, last.elapsed
        n_tokens = sum(1 for r in entry.records if r.tokens[chosen] >= 0)
        resamples = sum(r.resampled for r in entry.records)
    else:
        chosen = text = log_p = log_z = elapsed = None
        n_tokens = resamples = 0
    # A completion that did not end (stopped run, max new tokens) is not graded: its
    # last number may be an operand or an echo of the question, never a final answer.
    answer, correct = (None, None) if finished is False else grade(text, entry.reference, entry.toy)
    return {
        "run": entry.run_id,
        "status": entry.status,
        "model": entry.model,
        "prompt": entry.prompt,
        "alpha": entry.config.get("alpha"),
        "N": entry.config.get("n_particles"),
        "schedule": entry.config.get("schedule"),
        "steps": len(entry.records),
        "chosen particle": chosen,
        "completion": text,
        "log p": log_p,
        "log p / token": (log_p / max(1, n_tokens)) if log_p is not None else None,
        "log Z-hat": log_z,
        "latency [s]": elapsed,  # sampling time; live redraws excluded
        "tokens/s": (len(entry.records) / elapsed) if elapsed else None,
        "resamples": resamples,
        "min ESS": min((r.ess for r in entry.records), default=None),
        "answer": answer,
        "reference": entry.reference,
        "correct": correct,
        "finished": finished,
    }


def safe_summary(entry: RunEntry) -> dict[str, Any]:
    """``run_summary``, or a row that says why an entry cannot be summarised.

    A trace that passed validation can still hold values no summary anticipated; one
    such entry must not break the table of every other run (or the session's Runs page).
    """
    try:
        return run_summary(entry)
    except (ArithmeticError, ValueError, TypeError, IndexError, KeyError) as err:
        return {
            "run": entry.run_id,
            "status": f"{entry.status} (summary failed: {type(err).__name__})",
            "model": entry.model,
            "prompt": entry.prompt,
            "steps": len(entry.records),
        }


def summary_frame(entries: Sequence[RunEntry]) -> pd.DataFrame:
    return pd.DataFrame([safe_summary(e) for e in entries])


def entry_summary_csv(entry: RunEntry) -> str:
    """The run's summary row as CSV; text cells a spreadsheet would run as a formula (a
    prompt or completion starting with ``=``, ``+``, ``-``, ``@``) are prefixed with ``'``."""
    return csv_text(summary_frame([entry]))


def entry_trace_text(entry: RunEntry) -> str:
    """The run as a trace file (JSON lines: header, one line per step, result)."""
    meta = {
        "model": entry.model,
        "prompt": entry.prompt,
        "status": entry.status,
        "run_id": entry.run_id,
        "reference": entry.reference,
        "toy": entry.toy,
        "compute_s": entry.compute_s,
    }
    # How the run was made, where known (an absent field reads back as unknown).
    context = {
        "stop_rule": entry.stop_rule,
        "stop_strings": entry.stop_strings if entry.stop_rule == "stop strings" else None,
        "backend": entry.backend,
        "preset": entry.preset,
    }
    meta.update({k: v for k, v in context.items() if v is not None})
    return dumps_trace(entry.records, entry.config, meta=meta, result=entry.result)


def _result_from_dict(data: dict[str, Any] | None) -> SMCResult | None:
    if not isinstance(data, dict):
        return None
    names = {f.name for f in fields(SMCResult)}
    try:
        return SMCResult(**{k: _json_restore(v) for k, v in data.items() if k in names})
    except TypeError:
        return None  # a result line from another version: the records still replay


def _context(header: dict[str, Any]) -> dict[str, str | None]:
    """The header's stop rule, stop strings, backend and preset, each dropped (unknown)
    unless it is one this app knows: an upload's header is a stranger's text."""
    ctx = run_context(header)
    rule = ctx["stop_rule"] if ctx["stop_rule"] in STOP_RULES else None
    preset = ctx["preset"] if ctx["preset"] in {p.name for p in TEXT_PRESETS} else None
    return {
        "stop_rule": rule,
        "stop_strings": ctx["stop_strings"] if rule == "stop strings" else None,
        "backend": ctx["backend"] if ctx["backend"] in BACKENDS else None,
        "preset": preset,
    }


def entry_from_trace(trace: Trace, name: str = "upload") -> RunEntry:
    """A history entry from a trace (an upload, or a run the store kept)."""
    header = trace.header
    reference = header.get("reference")
    named = header.get("run_id")
    return RunEntry(
        run_id=str(named or uuid.uuid4().hex[:8]),
        origin=str(named) if named else None,
        model=str(header.get("model", "unknown model")),
        prompt=str(header.get("prompt", name)),
        config=dict(trace.config),
        records=list(trace.records),
        result=_result_from_dict(trace.result),
        status="uploaded",
        reference=str(reference) if reference is not None else None,
        toy=bool(header.get("toy", False)),
        source=name,
        compute_s=header.get("compute_s") if isinstance(header.get("compute_s"), float) else None,
        **_context(header),
    )


def entry_from_stored(trace: Trace, run_id: str, status: str, created: float) -> RunEntry:
    """A run the store kept (``RunStore.load(...).trace()``), with its stored status."""
    entry = entry_from_trace(trace, name=f"stored run {run_id}")
    entry.status = status
    entry.source = "stored"
    entry.created = created
    return entry
