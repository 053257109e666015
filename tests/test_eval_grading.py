"""Answer extraction and equivalence on the cases that trip graders up."""

from __future__ import annotations

import pytest

from powersmc_core.answers.grading import (
    extract_answer,
    extract_boxed,
    extract_hash,
    extract_last_number,
    is_equivalent,
    normalise,
    to_number,
)

EQUIVALENT = [
    (r"\frac{1}{2}", "0.5"),
    (r"\frac{1}{2}", "1/2"),
    ("0.5", "1/2"),
    (r"\dfrac{1}{2}", "0.5"),
    (r"\tfrac12", r"\frac{1}{2}"),
    (r"\dfrac34", "0.75"),
    ("1,000", "1000"),
    ("1,234,567", "1234567"),
    ("$5", "5"),
    (r"\$5", "5"),
    ("5 dollars", "5"),
    (r"5\text{ dollars}", "5"),
    (r"12\text{ cm}", "12"),
    ("-3", "-3.0"),
    (r"-\frac{3}{4}", "-0.75"),
    ("\u22127", "-7"),  # Unicode minus sign
    ("x = 7", "7"),
    (r"50\%", "50"),
    (r"90^\circ", "90"),
    ("The answer is 12.", "12"),
    (r"\left(1, 2\right)", "(1,2)"),
    (r"\frac{\sqrt3}{2}", r"\dfrac{\sqrt{3}}{2}"),
]

NOT_EQUIVALENT = [
    ("0.333", "1/3"),  # decimals are exact: a rounded value is not the fraction
    ("5x", "5"),  # a single letter glued to a number is not a unit
    ("-3", "3"),
    ("1,000", "1"),
    (r"\frac{1}{3}", "0.3"),
    (None, "5"),
    ("", "5"),
    ("5", None),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent_forms_match_both_ways(a, b):
    assert is_equivalent(a, b)
    assert is_equivalent(b, a)


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_different_answers_do_not_match(a, b):
    assert not is_equivalent(a, b)


def test_numbers_normalise_to_exact_fractions():
    assert normalise(r"\frac{6}{8}") == "3/4"
    assert normalise("2.50") == "5/2"
    assert to_number("1,000") == 1000
    assert to_number("abc") is None
    assert to_number(r"\frac{1}{0}") is None  # division by zero is not a number


def test_boxed_takes_the_last_complete_box_with_nested_braces():
    text = r"first \boxed{2}, then finally \boxed{\frac{3}{4}}."
    assert extract_boxed(text) == r"\frac{3}{4}"
    assert is_equivalent(extract_answer(text, "boxed"), "0.75")
    nested = r"\boxed{\frac{1}{\sqrt{2}}}"
    assert extract_boxed(nested) == r"\frac{1}{\sqrt{2}}"
    # A truncated last box (generation hit max tokens) falls back to the previous one.
    assert extract_boxed(r"\boxed{3} and \boxed{4") == "3"
    assert extract_boxed(r"\boxed 7 done") == "7"
    assert extract_boxed(r"\boxed{} \boxed{ }") is None
    assert extract_boxed("no box here") is None


def test_hash_and_last_number():
    assert extract_hash("Work...\n#### 1,200\n") == "1,200"
    assert extract_hash("no marker") is None
    assert extract_last_number("we get 1,234 apples, then -5.5, and 3/4.") == "3/4"
    assert extract_last_number("so the answer is -12.") == "-12"
    assert extract_last_number("v2 of the file") is None  # digits glued to a word
    assert extract_last_number("no numbers at all") is None


def test_auto_prefers_boxed_then_hash_then_last_number():
    assert extract_answer(r"3 then \boxed{4} then 5", "auto") == "4"
    assert extract_answer("3 then\n#### 4\nthen 5", "auto") == "4"
    assert extract_answer("3 then 5 dollars", "auto") == "5"
    assert extract_answer("nothing", "auto") is None
    assert extract_answer(None, "auto") is None
    assert extract_answer("  B x ", "exact") == "B x"


def test_unknown_extractor_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="boxed"):
        extract_answer("1", "first_number")


def test_a_completion_cut_at_max_new_tokens_is_never_graded():
    # The trap's completions end after two tokens: one token is a truncated "A" that an
    # exact extractor would read as an answer; unfinished particles give none at all.
    from powersmc_core.evaluation.problem_run import EvalSettings, run_one
    from powersmc_core.evaluation.tasks import toy_problems
    from powersmc_core.models.loading import load_model

    model = load_model("toy-trap")
    problem = toy_problems(1, prompt_ids=())[0]
    cut = run_one(model, problem, "smc", EvalSettings(alpha=4, n_particles=8, max_new_tokens=1))
    assert cut["completion"] in ("A", "B") and cut["answer"] is None and not cut["correct"]
    assert cut["answer_weighted"] is None and cut["answer_majority"] is None
    ended = run_one(model, problem, "smc", EvalSettings(alpha=4, n_particles=8, max_new_tokens=4))
    assert ended["answer"] == "B x" and ended["correct"]
