"""Trace files: a run's step records as JSON lines, written and read back safely.

Every line is one JSON object with a ``kind``: one ``header`` (format version,
config, model, prompt), then one ``step`` per decoding step, then an optional
``result``. Reading validates size, JSON, schema and consistency, and reports
the first bad line by number, because traces come from users' uploads.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .records import SMCResult, StepRecord, _json_safe

__all__ = [
    "FORMAT",
    "MAX_TRACE_BYTES",
    "Trace",
    "TraceError",
    "dumps_trace",
    "read_trace",
    "write_trace",
]

FORMAT = "powersmc-trace"
VERSION = 1
MAX_TRACE_BYTES = 50 * 1024 * 1024


class TraceError(ValueError):
    """A trace file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Trace:
    header: dict[str, Any]
    records: list[StepRecord]
    result: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return self.header.get("config", {})


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
    handle.write(json.dumps(_json_safe(_header(config, meta)), allow_nan=False) + "\n")
    for record in records:
        handle.write('{"kind": "step", ' + record.to_json()[1:] + "\n")
    if result is not None:
        handle.write(json.dumps({"kind": "result", **result.to_dict()}, allow_nan=False) + "\n")


def read_trace(source: str | os.PathLike[str] | bytes, max_bytes: int = MAX_TRACE_BYTES) -> Trace:
    """Parse and validate a trace from a path or raw bytes (e.g. an upload)."""
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
    objects = []
    for number, line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"line {number}: not valid JSON ({exc.msg})") from None
        except (RecursionError, ValueError):  # absurd nesting or a 5,000-digit number
            raise TraceError(
                f"line {number}: not a trace line (nested or sized absurdly)"
            ) from None
        if not isinstance(obj, dict):
            raise TraceError(f"line {number}: expected a JSON object")
        objects.append((number, obj))
    number, header = objects[0]
    if header.get("kind") != "header" or header.get("format") != FORMAT:
        raise TraceError(f"line {number}: not a {FORMAT} file (missing header line)")
    if header.get("version") != VERSION:
        raise TraceError(f"line {number}: unsupported trace version {header.get('version')!r}")
    records: list[StepRecord] = []
    result = None
    for number, obj in objects[1:]:
        kind = obj.pop("kind", None)
        if kind == "result":
            result = obj
            continue
        if kind != "step":
            raise TraceError(f"line {number}: unknown line kind {kind!r}")
        try:
            record = StepRecord.from_dict(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TraceError(f"line {number}: {exc}") from None
        if records:
            if record.n_particles != records[0].n_particles:
                raise TraceError(f"line {number}: particle count changed mid-trace")
            if record.step != records[-1].step + 1:
                raise TraceError(
                    f"line {number}: step {record.step} follows step {records[-1].step}"
                )
        if any(not 0 <= a < record.n_particles for a in record.ancestors):
            raise TraceError(f"line {number}: ancestor index out of range")
        records.append(record)
    if not records:
        raise TraceError("trace has a header but no step records")
    return Trace(header=header, records=records, result=result)
