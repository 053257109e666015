"""Answer extraction and grading live in ``powersmc_core.grading`` (the library needs them
without importing the evaluation package); this name is kept for existing imports."""

from ..grading import (
    EXTRACTORS,
    MAX_DIGITS,
    extract_answer,
    extract_boxed,
    extract_hash,
    extract_last_number,
    is_equivalent,
    normalise,
    to_number,
)

__all__ = [
    "EXTRACTORS",
    "MAX_DIGITS",
    "extract_answer",
    "extract_boxed",
    "extract_hash",
    "extract_last_number",
    "is_equivalent",
    "normalise",
    "to_number",
]
