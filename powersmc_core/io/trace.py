"""Trace files: a run's step records as JSON lines, written and read back safely.

Every line is one JSON object with a ``kind``: one ``header`` (format version,
config, model, prompt), then one ``step`` per decoding step, then an optional
``result``. Reading validates size, JSON, schema and consistency, and reports
the first bad line by number, because traces come from users' uploads.

The header may also say how the run was made (``RUN_CONTEXT``: stop rule, stop strings,
backend, preset id); a trace without them (an older one) reads back with each unknown
(``run_context`` gives None). Every error names its line; a header that parses makes
later errors name the broken record's line, never the header.

Reading also bounds the work a trace can cause downstream (charts, tables, replays
cost O(steps × N)): ``TraceLimits`` caps the particle count, the steps, steps × N
and the text lengths, and requires normalised log-weights (finite or -inf, and
log W <= 0 up to rounding: no weight above 1). The defaults are sane for any
deployment; a public demo passes tighter ones.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from powersmc_core.engine.records import SMCResult, StepRecord
from powersmc_core.io.codec import to_json_safe

__all__ = [
    "FORMAT",
    "MAX_TRACE_BYTES",
    "RUN_CONTEXT",
    "Trace",
    "TraceError",
    "TraceLimits",
    "dumps_trace",
    "read_trace",
    "run_context",
    "write_trace",
]

FORMAT = "powersmc-trace"
VERSION = 1
MAX_TRACE_BYTES = 50 * 1024 * 1024
# Optional header fields saying how a run was made; absent (older traces): unknown.
RUN_CONTEXT = ("stop_rule", "stop_strings", "backend", "preset")
_RUN_CONTEXT_CHARS = 2000


class TraceError(ValueError):
    """A trace file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class TraceLimits:
    """What a trace may hold: caps on N, steps, steps × N (the charts' work) and texts."""

    max_particles: int = 100_000  # SMCConfig's own bound on N
    max_steps: int = 1_000_000  # SMCConfig's own bound on max_new_tokens
    max_cells: int = 20_000_000  # steps × N: what every O(T·N) chart and table walks
    max_text_chars: int = 100_000  # one particle's decoded text


# Normalised log-weights are <= 0; float rounding of the normalisation stays far below this.
_LOG_WEIGHT_SLACK = 1e-6


def _limit_problem(record: StepRecord, steps: int, limits: TraceLimits) -> str | None:
    n = record.n_particles
    if n > limits.max_particles:
        return f"{n} particles; the limit is {limits.max_particles}"
    if steps > limits.max_steps:
        return f"more than {limits.max_steps} steps"
    if steps * n > limits.max_cells:
        return f"{steps} steps × {n} particles exceeds the limit of {limits.max_cells:,} cells"
    log_w = np.asarray(record.log_weights, dtype=np.float64)
    if np.isnan(log_w).any() or np.isposinf(log_w).any():
        return "log_weights must be finite or -inf"
    if log_w.size and float(log_w.max()) > _LOG_WEIGHT_SLACK:
        return f"log_weights must be normalised (log W <= 0), got {float(log_w.max()):g}"
    if math.isfinite(record.ess) and not 0 <= record.ess <= n * (1 + 1e-9):
        return f"ess must be in [0, {n}], got {record.ess}"
    if record.texts is not None and any(len(t) > limits.max_text_chars for t in record.texts):
        return f"a particle text is longer than {limits.max_text_chars:,} characters"
    return None


@dataclass(frozen=True)
class Trace:
    header: dict[str, Any]
    records: list[StepRecord]
    result: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return self.header.get("config", {})

    @property
    def record_lines(self) -> list[int]:
        """The file's line number of each record (blank lines counted), for error messages."""
        lines = self.meta.get("record_lines")
        return list(lines) if isinstance(lines, list) else []


def run_context(header: dict[str, Any]) -> dict[str, str | None]:
    """The header's ``RUN_CONTEXT`` fields as bounded text; None where missing (unknown)."""
    out: dict[str, str | None] = {}
    for key in RUN_CONTEXT:
        value = header.get(key)
        out[key] = value[:_RUN_CONTEXT_CHARS] if isinstance(value, str) else None
    return out


def _header(config: Any, meta: dict[str, Any] | None) -> dict[str, Any]:
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    return {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "config": config_dict,
        **(meta or {}),
    }


def dumps_trace(
    records: Iterable[StepRecord],
    config: Any = None,
    meta: dict[str, Any] | None = None,
    result: SMCResult | None = None,
) -> str:
    """The whole trace as one string (for downloads)."""
    buffer = io.StringIO()
    _write(buffer, records, config, meta, result)
    return buffer.getvalue()


def write_trace(
    path: str | os.PathLike[str],
    records: Iterable[StepRecord],
    config: Any = None,
    meta: dict[str, Any] | None = None,
    result: SMCResult | None = None,
) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a trace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", encoding="utf-8") as handle:
        _write(handle, records, config, meta, result)
    tmp.replace(path)
    return path


def _write(handle: IO[str], records, config, meta, result) -> None:
    handle.write(json.dumps(to_json_safe(_header(config, meta)), allow_nan=False) + "\n")
    for record in records:
        handle.write('{"kind": "step", ' + record.to_json()[1:] + "\n")
    if result is not None:
        handle.write(json.dumps({"kind": "result", **result.to_dict()}, allow_nan=False) + "\n")


def _parse_line(number: int, line: str) -> dict[str, Any]:
    """One line as a JSON object, or a ``TraceError`` naming the line and what is wrong."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceError(f"line {number}: not valid JSON ({exc.msg})") from None
    except (RecursionError, ValueError):  # absurd nesting or a 5,000-digit number
        raise TraceError(f"line {number}: not a trace line (nested or sized absurdly)") from None
    if not isinstance(obj, dict):
        raise TraceError(f"line {number}: expected a JSON object")
    return obj


def read_trace(
    source: str | os.PathLike[str] | bytes,
    max_bytes: int = MAX_TRACE_BYTES,
    limits: TraceLimits | None = None,
) -> Trace:
    """Parse and validate a trace from a path or raw bytes (e.g. an upload).

    ``limits`` (default ``TraceLimits()``) bounds what the trace can make its readers do.
    """
    limits = TraceLimits() if limits is None else limits
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise TraceError(f"trace file {path} does not exist")
        if path.stat().st_size > max_bytes:
            raise TraceError(f"trace file is {path.stat().st_size} bytes; the limit is {max_bytes}")
        data = path.read_bytes()
    if len(data) > max_bytes:
        raise TraceError(f"trace is {len(data)} bytes; the limit is {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(f"trace is not UTF-8 text (byte {exc.start})") from None
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise TraceError("trace is empty")
    if len(lines) > limits.max_steps + 2:  # header + steps + result
        raise TraceError(f"trace has more than {limits.max_steps} steps; that is the limit")
    # The header first: a file without one is "not a trace" whatever its body holds, and
    # one with a header gets every later problem named by its own line number.
    objects = [(number, _parse_line(number, line)) for number, line in lines[:1]]
    number, header = objects[0]
    if header.get("kind") != "header" or header.get("format") != FORMAT:
        raise TraceError(f"line {number}: not a {FORMAT} file (missing header line)")
    if header.get("version") != VERSION:
        raise TraceError(f"line {number}: unsupported trace version {header.get('version')!r}")
    objects.extend((number, _parse_line(number, line)) for number, line in lines[1:])
    records: list[StepRecord] = []
    record_lines: list[int] = []
    result = None
    for number, obj in objects[1:]:
        kind = obj.pop("kind", None)
        if kind == "result":
            result = obj
            continue
        if kind == "header":
            raise TraceError(f"line {number}: a second header line (two traces joined?)")
        if kind != "step":
            raise TraceError(f"line {number}: unknown line kind {str(kind)[:40]!r}")
        try:
            record = StepRecord.from_dict(obj)
        except (TypeError, ValueError, OverflowError, KeyError, AttributeError) as exc:
            raise TraceError(f"line {number}: {str(exc)[:300]}") from None
        if records:
            if record.n_particles != records[0].n_particles:
                raise TraceError(f"line {number}: particle count changed mid-trace")
            if record.step != records[-1].step + 1:
                raise TraceError(
                    f"line {number}: step {record.step} follows step {records[-1].step}"
                )
        if any(not 0 <= a < record.n_particles for a in record.ancestors):
            raise TraceError(f"line {number}: ancestor index out of range")
        problem = _limit_problem(record, len(records) + 1, limits)
        if problem is not None:
            raise TraceError(f"line {number}: {problem}")
        records.append(record)
        record_lines.append(number)
    if not records:
        raise TraceError("trace has a header but no step records")
    return Trace(header=header, records=records, result=result, meta={"record_lines": record_lines})
