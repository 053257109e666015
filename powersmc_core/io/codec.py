"""The JSON codec of records and traces: JSON has no NaN or infinity, so they travel as strings.

``to_json_safe`` turns every non-finite float (in nested dicts, lists and tuples) into
``"nan"``, ``"inf"`` or ``"-inf"``; ``from_json_safe`` reads those strings back as
floats (in nested lists; a dict's values are read back field by field by its owner,
who knows which fields hold text). Standard library only::

    json.dumps(to_json_safe({"x": [1.0, float("-inf")]}), allow_nan=False)
    # '{"x": [1.0, "-inf"]}'
    from_json_safe([1.0, "-inf"])  # [1.0, -inf]
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["NON_FINITE", "from_json_safe", "to_json_safe"]

# The strings that stand for the non-finite floats.
NON_FINITE = ("nan", "inf", "-inf")


def to_json_safe(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by its string; tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: to_json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_safe(v) for v in value]
    return value


def from_json_safe(value: Any) -> Any:
    """The inverse of ``to_json_safe`` on a value or (nested) list: "nan"/"inf"/"-inf" -> float."""
    if isinstance(value, str) and value in NON_FINITE:
        return float(value)
    if isinstance(value, list):
        return [from_json_safe(v) for v in value]
    return value
