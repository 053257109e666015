r"""Reasoning task sets: seeded generators and loaders for local MATH500 / GSM8K files.

A ``Problem`` carries its exact reference answer and the rule that extracts an answer
from a completion. Generated problems also carry the Python ``expression`` whose value
is the answer, so their correctness is checkable by evaluation. Generators draw from
``random.Random(seed)`` only: the same (task, n, seed, difficulty) gives the same set.
Nothing is downloaded; loaders read files the user brings.

The "toy" task exercises the harness mechanics on token-id models: its prompt is a
token-id sequence and its answer a token string (default "B x", the mode of
pi_alpha on the trap model for alpha > ~1.6).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from powersmc_core.answers.grading import EXTRACTORS, extract_hash

__all__ = [
    "TASKS",
    "Problem",
    "arithmetic_problems",
    "load_gsm8k",
    "load_math500",
    "load_task",
    "toy_problems",
    "word_problems",
]

TASKS = ("arithmetic", "word", "mixed", "toy", "math500", "gsm8k")


@dataclass(frozen=True)
class Problem:
    """One problem: text (or token-id) prompt, exact reference answer, grading rule."""

    id: str
    prompt: str
    answer: str
    difficulty: int = 1
    extractor: str = "auto"
    task: str = "arithmetic"
    prompt_ids: tuple[int, ...] | None = None  # token-id prompt (toy models); None: text
    expression: str | None = None  # Python expression equal to the answer (generated)

    def __post_init__(self) -> None:
        if self.extractor not in EXTRACTORS:
            raise ValueError(
                f"problem {self.id!r}: extractor must be one of {list(EXTRACTORS)}, "
                f"got {self.extractor!r}"
            )


def _problem_id(task: str, index: int, prompt: str) -> str:
    # The text hash keeps ids distinct across seeds/difficulties (resume keys rely on it).
    digest = hashlib.sha1(prompt.encode()).hexdigest()[:8]
    return f"{task}-{index:04d}-{digest}"


def _fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else str(value)


# ---- arithmetic ---------------------------------------------------------------------------
def _arith_expression(rng: random.Random, level: int) -> str:
    """A Python expression with an integer value; its shape grows with the level."""
    if level == 1:
        op = rng.choice("+-*")
        a, b = (
            (rng.randint(2, 12), rng.randint(2, 12))
            if op == "*"
            else (
                rng.randint(2, 60),
                rng.randint(2, 60),
            )
        )
        return f"{a} {op} {b}"
    if level == 2:
        a, b, c = rng.randint(2, 30), rng.randint(2, 12), rng.randint(2, 12)
        return rng.choice([f"{a} + {b} * {c}", f"({a} + {b}) * {c}", f"{a} * {b} - {c}"])
    shape = rng.randrange(3)
    if shape == 0:
        a, b, c, d = (rng.randint(2, 20) for _ in range(4))
        return f"({a} + {b}) * ({c} - {d})"
    if shape == 1:
        a, b, c, d = (rng.randint(2, 15) for _ in range(4))
        return f"{a} * {b} - {c} * {d}"
    # (a*b + c) / d with an exact quotient: choose d and q, then c = d*q - a*b > 0.
    while True:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        d, q = rng.randint(2, 9), rng.randint(2, 20)
        c = d * q - a * b
        if c > 0:
            return f"({a} * {b} + {c}) / {d}"


def _evaluate(expression: str) -> Fraction:
    # Only digits, spaces, parentheses and + - * / reach here (built above), so eval is safe;
    # wrapping the literals in Fraction keeps division exact.
    wrapped = "".join(f"Fraction({tok})" if tok.isdigit() else tok for tok in _tokens(expression))
    return eval(wrapped, {"Fraction": Fraction})


def _tokens(expression: str) -> list[str]:
    return re.findall(r"\d+|[()+\-*/ ]", expression)


def _levels(rng: random.Random, n: int, difficulty: int | None) -> list[int]:
    if difficulty is not None:
        if difficulty not in (1, 2, 3):
            raise ValueError(f"difficulty must be 1, 2, 3 or None (mixed), got {difficulty!r}")
        return [difficulty] * n
    return [1 + i % 3 for i in range(n)]


def arithmetic_problems(n: int, seed: int = 0, difficulty: int | None = None) -> list[Problem]:
    """n integer-valued expressions; difficulty 1 (one op), 2 (two ops), 3 (three, parens)."""
    _check_n(n)
    rng = random.Random(seed)
    problems = []
    for i, level in enumerate(_levels(rng, n, difficulty)):
        expression = _arith_expression(rng, level)
        shown = expression.replace("*", "×").replace("/", "÷").replace("-", "−")
        prompt = f"Compute {shown}."
        problems.append(
            Problem(
                id=_problem_id("arithmetic", i, prompt),
                prompt=prompt,
                answer=_fmt(_evaluate(expression)),
                difficulty=level,
                task="arithmetic",
                expression=expression,
            )
        )
    return problems


# ---- word problems ------------------------------------------------------------------------
_NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Iris", "Jonas")
_ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "stamps", "shells")

Template = Callable[[random.Random], tuple[str, str]]


def _w_add(r: random.Random) -> tuple[str, str]:
    name, item, a, b = r.choice(_NAMES), r.choice(_ITEMS), r.randint(3, 40), r.randint(2, 30)
    return (
        f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
        f"{a} + {b}",
    )


def _w_sub(r: random.Random) -> tuple[str, str]:
    name, item, b = r.choice(_NAMES), r.choice(_ITEMS), r.randint(2, 25)
    a = b + r.randint(1, 40)
    return (f"{name} had {a} {item} and gave away {b}. How many {item} are left?", f"{a} - {b}")


def _w_mul(r: random.Random) -> tuple[str, str]:
    item, a, b = r.choice(_ITEMS), r.randint(2, 12), r.randint(2, 12)
    return (
        f"There are {a} boxes with {b} {item} in each box. How many {item} are there?",
        f"{a} * {b}",
    )


def _w_change(r: random.Random) -> tuple[str, str]:
    name, item, price, count = r.choice(_NAMES), r.choice(_ITEMS), r.randint(2, 9), r.randint(2, 8)
    paid = 10 * ((price * count) // 10 + 1 + r.randint(0, 2))
    return (
        f"{name} buys {count} {item} at ${price} each and pays with ${paid}. "
        f"How many dollars of change does {name} get?",
        f"{paid} - {count} * {price}",
    )


def _w_share(r: random.Random) -> tuple[str, str]:
    item, friends, each = r.choice(_ITEMS), r.randint(2, 6), r.randint(2, 9)
    total = friends * each
    extra = r.randint(1, total - 1)  # the bag starts with at least one item
    return (
        f"A bag holds {total - extra} {item}. Someone adds {extra} more, and then the {item} "
        f"are shared equally among {friends} friends. How many does each friend get?",
        f"({total - extra} + {extra}) / {friends}",
    )


def _w_trip(r: random.Random) -> tuple[str, str]:
    s1, h1, s2, h2 = r.randint(20, 80), r.randint(2, 4), r.randint(20, 80), r.randint(2, 4)
    back = r.randint(5, 30)
    return (
        f"A car drives {h1} hours at {s1} km per hour, then {h2} hours at {s2} km per hour, "
        f"then drives {back} km back. How far is it from the start, in km?",
        f"{h1} * {s1} + {h2} * {s2} - {back}",
    )


def _w_average(r: random.Random) -> tuple[str, str]:
    name, k, mean = r.choice(_NAMES), r.randint(3, 5), r.randint(50, 90)
    scores = [mean + r.randint(-8, 8) for _ in range(k - 1)]
    joined = ", ".join(str(s) for s in scores)
    return (
        f"{name} scored {joined} on {k - 1} tests. What must {name} score on the next test "
        f"to average exactly {mean} over all {k} tests?",
        f"{k} * {mean} - ({' + '.join(str(s) for s in scores)})",
    )


_WORD_TEMPLATES: dict[int, tuple[Template, ...]] = {
    1: (_w_add, _w_sub, _w_mul),
    2: (_w_change, _w_share),
    3: (_w_trip, _w_average),
}


def word_problems(n: int, seed: int = 0, difficulty: int | None = None) -> list[Problem]:
    """n multi-step word problems with integer answers; steps grow with the difficulty."""
    _check_n(n)
    rng = random.Random(seed)
    problems = []
    for i, level in enumerate(_levels(rng, n, difficulty)):
        text, expression = rng.choice(_WORD_TEMPLATES[level])(rng)
        problems.append(
            Problem(
                id=_problem_id("word", i, text),
                prompt=text,
                answer=_fmt(_evaluate(expression)),
                difficulty=level,
                task="word",
                expression=expression,
            )
        )
    return problems


def toy_problems(
    n: int, answer: str = "B x", prompt_ids: tuple[int, ...] = (), seed: int = 0
) -> list[Problem]:
    """n copies of one token-id problem (distinct ids, hence distinct sampling seeds)."""
    _check_n(n)
    return [
        Problem(
            id=f"toy-{seed}-{i:04d}",
            prompt="",
            answer=answer,
            extractor="exact",
            task="toy",
            prompt_ids=tuple(prompt_ids),
        )
        for i in range(n)
    ]


# ---- loaders --------------------------------------------------------------------------------
def _read_records(path: Path, allow_json: bool) -> list[tuple[int, dict]]:
    """(line number, object) pairs from JSONL, or from a JSON list when allowed."""
    if not path.is_file():
        raise FileNotFoundError(f"task file not found: {path}")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if allow_json and stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        records = list(enumerate(data, start=1))
    elif allow_json and stripped.startswith("{") and "\n" not in stripped.strip():
        records = [(1, json.loads(text))]
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}, line {number}: not valid JSON ({err.msg}); expected one JSON "
                    "object per line (JSONL)"
                ) from None
    if not records:
        raise ValueError(f"{path}: no problems found (empty file)")
    for where, record in records:
        if not isinstance(record, dict):
            raise ValueError(f"{path}, record {where}: expected a JSON object, got {record!r:.60}")
    return records


def _need(path: Path, where: int, record: dict, key: str, fmt: str) -> str:
    if key not in record or record[key] is None or not str(record[key]).strip():
        raise ValueError(
            f"{path}, record {where}: missing {key!r} (a {fmt} record needs "
            f"{'problem/answer' if fmt == 'MATH500' else 'question/answer'}); "
            f"keys present: {sorted(record)}"
        )
    return str(record[key])


def _take(items: list[Problem], n: int | None) -> list[Problem]:
    if n is not None:
        _check_n(n)
        return items[:n]
    return items


def load_math500(path: str | Path, n: int | None = None, extractor: str = "auto") -> list[Problem]:
    """MATH500-style JSON list or JSONL of {problem, answer[, unique_id, level]}."""
    path = Path(path)
    problems = []
    for i, (where, record) in enumerate(_read_records(path, allow_json=True)):
        text = _need(path, where, record, "problem", "MATH500")
        answer = _need(path, where, record, "answer", "MATH500")
        level = record.get("level", 1)
        try:
            level = int(str(level).split()[-1])
        except ValueError:
            level = 1
        pid = str(record.get("unique_id") or _problem_id(path.stem, i, text))
        problems.append(Problem(pid, text, answer.strip(), level, extractor, "math500"))
    return _take(problems, n)


def load_gsm8k(path: str | Path, n: int | None = None, extractor: str = "auto") -> list[Problem]:
    """GSM8K JSONL of {question, answer} where the answer's solution ends in ``#### n``."""
    path = Path(path)
    problems = []
    for i, (where, record) in enumerate(_read_records(path, allow_json=False)):
        text = _need(path, where, record, "question", "GSM8K")
        solution = _need(path, where, record, "answer", "GSM8K")
        final = extract_hash(solution)
        if final is None:
            raise ValueError(
                f"{path}, line {where}: the answer does not end in '#### <number>' "
                f"(GSM8K format): {solution[-60:]!r}"
            )
        problems.append(
            Problem(
                _problem_id(path.stem, i, text), text, final.replace(",", ""), 1, extractor, "gsm8k"
            )
        )
    return _take(problems, n)


def load_task(
    task: str,
    n: int | None = None,
    seed: int = 0,
    difficulty: int | None = None,
    data: str | Path | None = None,
    extractor: str | None = None,
) -> list[Problem]:
    """One entry point for the CLI and the app: a generated or loaded task set."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
    if task in ("math500", "gsm8k"):
        if data is None:
            raise ValueError(f"task {task!r} reads a local file: pass its path (--data PATH)")
        loader = load_math500 if task == "math500" else load_gsm8k
        return loader(data, n, extractor or "auto")
    count = 20 if n is None else n
    if task == "toy":
        problems = toy_problems(count, seed=seed)
    elif task == "arithmetic":
        problems = arithmetic_problems(count, seed, difficulty)
    elif task == "word":
        problems = word_problems(count, seed, difficulty)
    else:  # mixed: alternate the two generators, each seeded on its own stream
        half = arithmetic_problems(count - count // 2, seed, difficulty)
        other = word_problems(count // 2, seed + 1, difficulty)
        problems = [p for pair in zip(half, other, strict=False) for p in pair]
        problems += half[len(other) :]
    if extractor is not None:
        problems = [replace(p, extractor=extractor) for p in problems]
    return problems


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
