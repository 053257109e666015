"""Small helpers shared by the theory modules: standard errors, labels, length limits."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from powersmc_core.models.base import LanguageModel
from powersmc_core.theory.exact import SequenceTable


def standard_error(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of the mean, sd(ddof=1)/sqrt(n); NaN below two values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return math.nan
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def labels(model: LanguageModel, table: SequenceTable) -> list[str]:
    texts = model.decode_batch([list(s) for s in table.sequences])
    return [t if t else "(empty)" for t in texts]


def max_new_tokens(model: LanguageModel, prompt: Sequence[int], max_new_tokens: int | None) -> int:
    if max_new_tokens is not None:
        return max_new_tokens
    max_len = getattr(model, "max_len", None)
    if max_len is None:
        raise ValueError("max_new_tokens is required for a model without max_len")
    return max(1, max_len - len(prompt))
