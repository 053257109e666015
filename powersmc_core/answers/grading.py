r"""Answer extraction and grading: exact, dependency-free, and strict about numbers.

``extract_answer(text, how)`` pulls the final answer out of a completion:

- ``"boxed"``: content of the last complete ``\boxed{...}`` (nested braces allowed);
- ``"hash"``: what follows the last ``#### `` (GSM8K's convention);
- ``"last_number"``: the last number in the text (integers, decimals, 1,000-style, a/b)
  that is not an operand: "6 * 7 - 5 =" (a question echoed) has none;
- ``"auto"``: boxed, else ``####``, else the last number;
- ``"exact"``: the whole stripped text (toy tasks, whose answers are token strings).

``is_equivalent(pred, ref)`` is true when math-verify (``powersmc_core.answers.verify``,
where it parses both answers) or ``exact_equivalent`` says so; the latter compares
``normalise``d strings: anything that parses as a
number becomes its exact ``fractions.Fraction`` (so \frac{1}{2} = \dfrac12 = 1/2 = 0.5 and
1,000 = 1000), with currency, percent, degree and unit words stripped; anything else is
compared as LaTeX with spacing, ``\left``/``\right`` and ``\dfrac``/``\tfrac`` normalised.
Decimals are exact too: 0.333 is not 1/3. A number longer than ``MAX_DIGITS`` digits is
never parsed (Python refuses int strings over 4,300 digits, and a runaway
``\boxed{777...}`` should not cost a bignum): it is compared as its cleaned string.

This module is the library's (``powersmc_core.answers.extract`` groups particles by it); the
evaluation harness imports it from here.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from powersmc_core.answers.verify import math_equivalent

__all__ = [
    "EXTRACTORS",
    "MAX_DIGITS",
    "exact_equivalent",
    "extract_answer",
    "extract_boxed",
    "extract_hash",
    "extract_last_number",
    "is_equivalent",
    "normalise",
    "to_number",
]

EXTRACTORS = ("auto", "boxed", "hash", "last_number", "exact")
# Longer numbers are compared as strings, never parsed (see the module docstring).
MAX_DIGITS = 1000

_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(rf"(?<![\w.])(?:(?:{_NUMBER})\s*/\s*\d+(?:\.\d+)?|{_NUMBER})(?![\d])")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")


def _balanced(text: str, start: int) -> str | None:
    """Content of the brace group opening at text[start] == '{', or None if never closed."""
    depth = 0
    for k in range(start, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : k]
    return None


def extract_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` (or ``\boxed 5``); None if there is none."""
    for match in reversed(list(_BOX_RE.finditer(text))):
        end = match.end()
        if end < len(text) and text[end] == "{":
            content = _balanced(text, end)
            if content is not None and content.strip():
                return content.strip()
        else:  # "\boxed 5": one bare token
            bare = re.match(r"[^\s$]+", text[end:])
            if bare:
                return bare.group(0)
    return None


def extract_hash(text: str) -> str | None:
    """What follows the last ``####`` on its line (GSM8K), or None."""
    hits = re.findall(r"####\s*([^\n]+)", text)
    return hits[-1].strip() if hits and hits[-1].strip() else None


# A number followed by an operator or "=" is an operand ("6 * 7 - 5 =" echoes a question).
_OPERAND_AFTER = re.compile(r"\s*(?:[-=+*/^×÷<>]|\\(?:times|cdot|div)\b)")


def extract_last_number(text: str) -> str | None:
    """The last number in the text that is not an operand (followed by an operator or
    '='), as written (sign, commas, decimals, a/b kept), or None. "6 * 7 - 5 =" has none:
    an echoed question is not an answer; "6 * 7 - 5 = 37" gives 37."""
    clean = text.replace("\u2212", "-")
    for match in reversed(list(_NUMBER_RE.finditer(clean))):
        if not _OPERAND_AFTER.match(clean, match.end()):
            return match.group(0).replace(" ", "")
    return None


def extract_answer(text: str | None, how: str = "auto") -> str | None:
    """Final answer of a completion by the named rule (see module docstring); None if absent."""
    if how not in EXTRACTORS:
        raise ValueError(f"unknown answer extractor {how!r}; choose one of {list(EXTRACTORS)}")
    if text is None:
        return None
    if how == "boxed":
        return extract_boxed(text)
    if how == "hash":
        return extract_hash(text)
    if how == "last_number":
        return extract_last_number(text)
    if how == "exact":
        return text.strip() or None
    for rule in (extract_boxed, extract_hash, extract_last_number):
        found = rule(text)
        if found is not None:
            return found
    return None


# ---- normalisation ----------------------------------------------------------------------
_REMOVE = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\displaystyle", "\\$", "$")
_UNIT_RE = re.compile(
    rf"^(?P<num>{_NUMBER}|\\frac\{{[^{{}}]+\}}\{{[^{{}}]+\}})"
    r"(?:\s+[A-Za-z][A-Za-z .]*|[A-Za-z]{2,}[A-Za-z .]*)$"
)


def _latex_clean(text: str) -> str:
    s = text.strip().replace("\u2212", "-")
    for token in _REMOVE:
        s = s.replace(token, "")
    s = s.replace(r"\ ", " ")
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox|textnormal)\s*\{([^{}]*)\}", r" \1", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    # \frac12, \frac1{2}, \frac{1}2 -> \frac{1}{2}; \sqrt3 -> \sqrt{3}
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d)", r"\\frac\1{\2}", s)
    s = re.sub(r"\\sqrt\s*(\d+)", r"\\sqrt{\1}", s)
    s = re.sub(r"\^\s*\{?\\circ\}?|°", "", s)
    s = s.replace(r"\%", "").replace("%", "")
    # "x = 5", "The answer is 5": keep what follows the last '=' / "answer is".
    s = re.split(r"(?i)answer\s+is\s*:?", s)[-1]
    if s.count("=") == 1 and re.match(r"^\s*[A-Za-z]\w*\s*=", s):
        s = s.split("=", 1)[1]
    s = s.strip().rstrip(".").strip()
    return s


def _plain_number(s: str) -> Fraction | None:
    s = s.strip()
    if sum(c.isdigit() for c in s) > MAX_DIGITS:
        return None
    m = re.fullmatch(r"(-?)\\frac\{\s*(" + _NUMBER + r")\s*\}\{\s*(" + _NUMBER + r")\s*\}", s)
    if m:
        num, den = _plain_number(m.group(2)), _plain_number(m.group(3))
        if num is None or den is None or den == 0:
            return None
        return (-1 if m.group(1) else 1) * num / den
    m = re.fullmatch(r"(" + _NUMBER + r")\s*/\s*(" + _NUMBER + r")", s)
    if m:
        num, den = _plain_number(m.group(1)), _plain_number(m.group(2))
        return None if num is None or den is None or den == 0 else num / den
    if re.fullmatch(_NUMBER, s):
        return Fraction(s.replace(",", ""))
    return None


def to_number(text: str | None) -> Fraction | None:
    r"""Exact value of a numeric answer (\frac, a/b, decimals, 1,000, $, %, units), else None."""
    if text is None:
        return None
    s = _latex_clean(str(text))
    value = _plain_number(s)
    if value is None:
        unit = _UNIT_RE.match(s)
        if unit:
            value = _plain_number(unit.group("num"))
    return value


def normalise(text: str | None) -> str | None:
    """Canonical form: the exact value ``p/q`` of a number, else whitespace-free cleaned LaTeX."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    value = to_number(text)
    if value is not None:
        return str(value)
    cleaned = re.sub(r"\s+", "", _latex_clean(str(text)))
    return cleaned or None


def exact_equivalent(prediction: str | None, reference: str | None) -> bool:
    """The exact grader: both ``normalise`` to the same canonical form (missing: never right)."""
    a, b = normalise(prediction), normalise(reference)
    return a is not None and b is not None and a == b


def is_equivalent(prediction: str | None, reference: str | None) -> bool:
    """Same answer? True when the exact grader (``exact_equivalent``) or math-verify
    (``answers.verify``: bounded inputs it parses into SymPy) says so; a missing answer is
    never right. math-verify adds what exact forms miss (x = 5, \\sqrt{2}/2 against
    \\frac{\\sqrt2}{2}); it cannot veto the exact grader, because it reads the words of
    "5 dollars" as a product of symbols, and a word it cannot parse falls back to it."""
    if prediction is None or reference is None:
        return False
    return exact_equivalent(prediction, reference) or bool(math_equivalent(prediction, reference))
