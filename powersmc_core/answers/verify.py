r"""Math-aware answer comparison through ``math-verify`` (Hugging Face), bounded and optional.

``math_equivalent(prediction, reference)`` asks math-verify whether two *extracted*
answers are the same mathematical object (\frac{1}{2} = 0.5, 1,000 = 1000, x = 5 = 5,
-3 ≠ 3). It returns True or False only when math-verify parsed both into SymPy, and
None otherwise, so the caller (``grading.is_equivalent``) falls back to the exact
grader. None is also returned, without calling math-verify, when:

- math-verify is not installed (it is pinned in requirements.txt; the library runs
  without it);
- the reference is a word ("Paris"): math-verify reads letters as a product of symbols,
  so "sirap" would equal "Paris"; words are compared by the exact grader;
- either side is longer than ``MAX_CHARS`` characters or ``MAX_DIGITS`` digits, holds an
  exponent other than a short integer, or a factorial: SymPy may take unbounded time on
  such input, and math-verify's own timeout (``signal.alarm``) works only in the main
  thread, never in Streamlit's script threads. Within these bounds one comparison takes
  milliseconds; in the main thread the alarm (``TIMEOUT_S``) is armed as well.

Results are cached per (prediction, reference) pair (``CACHE_SIZE`` pairs).
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

__all__ = ["CACHE_SIZE", "MAX_CHARS", "MAX_DIGITS", "TIMEOUT_S", "available", "math_equivalent"]

MAX_CHARS = 120  # longer answers are not handed to SymPy (see module docstring)
MAX_DIGITS = 40  # a 5,000-digit \boxed{} is compared by the exact grader, never SymPy
TIMEOUT_S = 2  # math-verify's alarm, main thread only (signal.alarm takes whole seconds)
CACHE_SIZE = 4096

_MATHY = re.compile(r"\d|\\(?:frac|dfrac|tfrac|sqrt|pi|infty)")
_EXPONENT = re.compile(r"\^\s*(\{\s*-?\d{1,2}\s*\}|-?\d{1,2}(?!\d))")


def available() -> bool:
    """True when math-verify can be imported (else every comparison falls back)."""
    return _module() is not None


@lru_cache(maxsize=1)
def _module():  # type: ignore[no-untyped-def]
    try:
        import math_verify  # optional and slow to import: on first use only
    except ImportError:
        return None
    # It logs a warning per call when its alarm is off (we bound the input instead).
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return math_verify


def _bounded(text: str) -> bool:
    """Small enough for SymPy to finish fast (see the module docstring)."""
    if len(text) > MAX_CHARS or sum(c.isdigit() for c in text) > MAX_DIGITS:
        return False
    if re.search(r"(?<!\\)!", text):  # factorials grow without bound
        return False
    # Every exponent must be a short integer: 2^{2^{100}} would be evaluated in full.
    return text.count("^") == len(_EXPONENT.findall(text))


def math_equivalent(prediction: str | None, reference: str | None) -> bool | None:
    """Whether math-verify finds the two answers equal; None when it cannot say (then use
    the exact grader): a side missing, a word reference, an unbounded input, no parse."""
    if prediction is None or reference is None:
        return None
    prediction, reference = str(prediction).strip(), str(reference).strip()
    if not prediction or not _MATHY.search(reference):
        return None
    if not (_bounded(prediction) and _bounded(reference)):
        return None
    return _compare(prediction, reference)


@lru_cache(maxsize=CACHE_SIZE)
def _compare(prediction: str, reference: str) -> bool | None:
    mv = _module()
    if mv is None:
        return None
    # The alarm only works in the main thread; elsewhere the input bounds stand in for it.
    main = threading.current_thread() is threading.main_thread()
    timeout = TIMEOUT_S if main else None
    try:
        gold = mv.parse(f"${reference}$", parsing_timeout=timeout)
        pred = mv.parse(f"${prediction}$", parsing_timeout=timeout)
        if not _parsed(gold) or not _parsed(pred):
            return None
        return bool(mv.verify(gold, pred, timeout_seconds=timeout))
    except Exception:  # a parser failure means "cannot say", never a crash
        return None


def _parsed(result: list) -> bool:
    """math-verify returns [sympy object, source string] once it parsed; [] or strings not."""
    return bool(result) and not isinstance(result[0], str)
