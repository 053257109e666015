"""Uploads: reading trace files from strangers, ``read_trace`` plus the checks an upload needs.

``trace.read_trace`` validates the file's structure; a hostile or damaged file can
still get past it with values of the wrong type (a string where a float belongs, an
ancestor index that is not an int, a header config of NaNs) that would only blow up
later inside a chart, or crash the parser itself (JSON nested 100,000 deep raises
``RecursionError``; a 5,000-digit integer raises a bare ``ValueError``). Here every
failure becomes a ``TraceError`` with a message fit to show, and every field is
checked for its type and range before a page sees it.
"""

from __future__ import annotations

import math
from typing import Any

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.records import StepRecord
from powersmc_core.io.trace import Trace, TraceError, TraceLimits, read_trace

__all__ = ["read_trace_safely", "read_upload"]

_HEADER_TEXT_LIMIT = 2000


def read_upload(data: Any, settings: Any, name: str = "upload") -> Trace:
    """Validate an uploaded trace under the settings' size cap; raises ``TraceError``."""
    if data is None:
        raise TraceError("no file received")
    if hasattr(data, "getvalue"):  # Streamlit's UploadedFile
        size = getattr(data, "size", None)
        if isinstance(size, int) and size > settings.max_upload_bytes:
            raise TraceError(_too_big(name, size, settings.max_upload_bytes))
        data = data.getvalue()
    if not isinstance(data, bytes | bytearray):
        raise TraceError("the upload is not a file")
    if len(data) > settings.max_upload_bytes:
        raise TraceError(_too_big(name, len(data), settings.max_upload_bytes))
    return read_trace_safely(
        bytes(data), max_bytes=settings.max_upload_bytes, limits=settings.trace_limits
    )


def _too_big(name: str, size: int, limit: int) -> str:
    # MiB both ways, so the demo's cap reads "5 MB" as the page and docs/deploy.md write it.
    return f"{name} is {size / 2**20:.1f} MB; the upload limit is {limit / 2**20:g} MB"


def read_trace_safely(
    data: bytes, max_bytes: int, allow_empty: bool = False, limits: TraceLimits | None = None
) -> Trace:
    """``read_trace`` that raises only ``TraceError`` and type-checks every value.

    ``limits`` bound the work the trace can cause (a demo passes
    ``DemoSettings.trace_limits``: N, steps, steps × N, text length). ``allow_empty``: a
    header without step records is accepted (an interrupted run that had not flushed a
    step yet).
    """
    if len(data) > max_bytes:
        raise TraceError(f"trace is {len(data)} bytes; the limit is {max_bytes}")
    if data.startswith(b"\xef\xbb\xbf"):  # a BOM added by an editor
        data = data[3:]
    try:
        trace = read_trace(data, max_bytes=max_bytes, limits=limits)
    except TraceError as err:
        if allow_empty and "no step records" in str(err):
            return _header_only(data, max_bytes)
        raise
    except RecursionError:
        raise TraceError("trace is nested too deeply to be a trace file") from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, IndexError) as err:
        raise TraceError(f"trace is malformed ({_short(err)})") from None
    header = _check_header(trace.header)
    n = trace.records[0].n_particles
    if n < 1:
        raise TraceError("line 2: a step record needs at least one particle")
    lines = trace.record_lines  # the file's own numbering (blank lines counted)
    for i, record in enumerate(trace.records):
        problem = _record_problem(record, n)
        if problem:
            raise TraceError(f"line {lines[i] if i < len(lines) else i + 2}: {problem}")
    result, notes = trace.result, []
    if result is not None:
        problem = _result_problem(result, n)
        if problem:
            result, notes = None, [f"result line ignored: {problem}"]
    return Trace(
        header=header, records=trace.records, result=result, meta={**trace.meta, "notes": notes}
    )


def _header_only(data: bytes, max_bytes: int) -> Trace:
    import json

    first = data.split(b"\n", 1)[0]
    try:
        header = json.loads(first.decode("utf-8"))
    except (ValueError, RecursionError):
        raise TraceError("line 1: not valid JSON") from None
    if not isinstance(header, dict):
        raise TraceError("line 1: expected a JSON object")
    return Trace(header=_check_header(header), records=[], result=None)


def _check_header(header: dict[str, Any]) -> dict[str, Any]:
    header = dict(header)
    config = header.get("config", {})
    if not isinstance(config, dict):
        raise TraceError("line 1: header 'config' must be an object")
    try:
        SMCConfig.from_dict(config) if config else None
    except (TypeError, ValueError) as err:
        raise TraceError(f"line 1: header config is invalid ({_short(err)})") from None
    for key in ("model", "prompt", "run_id", "status", "reference"):
        value = header.get(key)
        if value is not None and not isinstance(value, str):
            header[key] = str(value)
        if isinstance(header.get(key), str) and len(header[key]) > _HEADER_TEXT_LIMIT:
            header[key] = header[key][: _HEADER_TEXT_LIMIT - 1] + "…"
    return header


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return (isinstance(x, int | float)) and not isinstance(x, bool)


def _record_problem(record: StepRecord, n: int) -> str | None:
    """Ranges an upload must respect; field types are already checked by ``read_trace``."""
    if record.step < 1:
        return "step must be >= 1"
    if not all(t >= -1 for t in record.tokens):
        return "tokens must be integers >= -1"
    for name in ("ancestors", "roots"):
        if not all(0 <= a < n for a in getattr(record, name)):
            return f"{name} must be integers in [0, {n})"
    if not all(math.isfinite(w) or w == -math.inf for w in record.log_weights):
        return "log_weights must be finite or -inf"
    if record.texts is not None and len(record.texts) != n:
        return f"texts has {len(record.texts)} entries, expected {n}"
    return None


def _result_problem(result: dict[str, Any], n: int) -> str | None:
    def int_list(x: Any) -> bool:
        return isinstance(x, list) and all(_is_int(t) for t in x)

    completions = result.get("completions")
    if not isinstance(completions, list) or len(completions) != n:
        return "completions must list one token list per particle"
    if not all(int_list(c) for c in completions):
        return "completions must hold integer token ids"
    for key in ("weights", "log_p"):
        values = result.get(key)
        if not isinstance(values, list) or len(values) != n:
            return f"{key} must hold one value per particle"
        # NaN/inf come back as strings from JSON; a non-finite weight is unusable.
        if not all(_is_number(v) or v in ("nan", "inf", "-inf") for v in values):
            return f"{key} must hold numbers"
    if not all(_is_number(w) and math.isfinite(w) and w >= 0 for w in result["weights"]):
        return "weights must be finite and >= 0"
    chosen = result.get("chosen")
    if not _is_int(chosen) or not 0 <= chosen < n:
        return f"chosen must be a particle index in [0, {n})"
    texts = result.get("texts")
    if texts is not None and (
        not isinstance(texts, list) or len(texts) != n or not all(isinstance(t, str) for t in texts)
    ):
        return "texts must be one string per particle"
    for key in ("n_resamples", "n_steps"):
        if key in result and not _is_int(result[key]):
            return f"{key} must be an integer"
    for key in ("log_z", "elapsed"):
        if key in result and not (_is_number(result[key]) or result[key] in ("nan", "inf", "-inf")):
            return f"{key} must be a number"
    return None


def _short(err: BaseException, limit: int = 160) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
