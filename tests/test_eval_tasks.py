"""Task generators (reproducible, answers right by evaluation) and local-file loaders."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest

from powersmc_core.answers.grading import is_equivalent
from powersmc_core.evaluation.tasks import (
    arithmetic_problems,
    load_gsm8k,
    load_math500,
    load_task,
    toy_problems,
    word_problems,
)


@pytest.mark.parametrize("generate", [arithmetic_problems, word_problems])
def test_generators_are_reproducible_and_seed_dependent(generate):
    first, again = generate(30, seed=7), generate(30, seed=7)
    assert first == again
    other = generate(30, seed=8)
    assert [p.prompt for p in first] != [p.prompt for p in other]
    assert len({p.id for p in first}) == 30


@pytest.mark.parametrize("generate", [arithmetic_problems, word_problems])
@pytest.mark.parametrize("difficulty", [1, 2, 3, None])
def test_answers_equal_the_python_value_of_the_expression(generate, difficulty):
    for problem in generate(40, seed=3, difficulty=difficulty):
        value = eval(problem.expression)  # built from digits and + - * / ( ) only
        assert is_equivalent(problem.answer, str(value)), problem
        assert Fraction(problem.answer) == Fraction(value).limit_denominator(10**6)
        # Every literal in the expression is stated in the problem text.
        for number in re.findall(r"\d+", problem.expression):
            assert number in problem.prompt, (number, problem.prompt)
        if problem.task == "word":  # quantities in a story are never negative
            assert not re.search(r"-\d", problem.prompt), problem.prompt
        if difficulty is not None:
            assert problem.difficulty == difficulty


def test_arithmetic_prompt_is_the_expression_in_math_notation():
    for problem in arithmetic_problems(30, seed=11):
        shown = problem.prompt.removeprefix("Compute ").removesuffix(".")
        python = shown.replace("×", "*").replace("÷", "/").replace("−", "-")
        assert python == problem.expression


def test_mixed_difficulty_cycles_levels_and_bad_levels_are_rejected():
    assert [p.difficulty for p in arithmetic_problems(6)] == [1, 2, 3, 1, 2, 3]
    with pytest.raises(ValueError, match="difficulty"):
        arithmetic_problems(3, difficulty=4)
    with pytest.raises(ValueError, match="n must be"):
        word_problems(0)


def test_load_task_entry_point():
    mixed = load_task("mixed", n=5, seed=2)
    assert [p.task for p in mixed] == ["arithmetic", "word", "arithmetic", "word", "arithmetic"]
    toy = load_task("toy", n=3)
    assert all(p.prompt_ids == () and p.answer == "B x" for p in toy)
    assert toy == toy_problems(3)
    assert all(p.extractor == "last_number" for p in load_task("word", 3, extractor="last_number"))
    with pytest.raises(ValueError, match="--data"):
        load_task("gsm8k", n=3)
    with pytest.raises(ValueError, match="unknown task"):
        load_task("mmlu")


# ---- loaders -----------------------------------------------------------------------------
def test_math500_json_list_and_jsonl(tmp_path):
    records = [
        {"problem": "What is $1+1$?", "answer": "2", "unique_id": "test/a.json", "level": 1},
        {"problem": "Simplify $\\frac{2}{4}$.", "answer": "\\frac{1}{2}", "level": "Level 3"},
    ]
    as_json = tmp_path / "math.json"
    as_json.write_text(json.dumps(records))
    as_jsonl = tmp_path / "math.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    for path in (as_json, as_jsonl):
        problems = load_math500(path)
        assert [p.answer for p in problems] == ["2", "\\frac{1}{2}"]
        assert problems[0].id == "test/a.json"
        assert problems[1].difficulty == 3
        assert problems[0].task == "math500"
    assert len(load_math500(as_json, n=1)) == 1


def test_gsm8k_reference_answer_is_the_number_after_hashes(tmp_path):
    path = tmp_path / "gsm.jsonl"
    lines = [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=7\n#### 7"},
        {"question": "A price of 1,000 doubles.", "answer": "2*1000=2000\n#### 2,000"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in lines))
    problems = load_gsm8k(path)
    assert [p.answer for p in problems] == ["7", "2000"]
    assert problems[0].task == "gsm8k"


@pytest.mark.parametrize(
    ("loader", "content", "message"),
    [
        (load_gsm8k, '{"question": "q", "answer": "#### 1"}\n{not json}\n', "line 2"),
        (load_gsm8k, '{"question": "q", "answer": "no final"}\n', "####"),
        (load_gsm8k, '{"question": "q"}\n', "missing 'answer'"),
        (load_gsm8k, "", "empty"),
        (load_math500, '[{"problem": "p"}]', "missing 'answer'"),
        (load_math500, '[{"problem": "p", "answer": "1"}', "not valid JSON"),
        (load_math500, "[1, 2]", "expected a JSON object"),
        (load_math500, '{"question": "q", "answer": "1"}\n', "missing 'problem'"),
    ],
)
def test_malformed_files_raise_clear_errors(tmp_path, loader, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        loader(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        load_gsm8k(tmp_path / "nope.jsonl")
