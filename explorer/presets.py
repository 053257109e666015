"""Problems with known answers, toy prompts, and grading.

For a text model the presets are small problems with a reference answer, graded with
``powersmc_core.answers.grading``. For a toy model the known answer is exact: the mode of p, which
is the mode of pi_alpha ∝ p^alpha for every alpha > 0 (``toy_reference``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

from powersmc_core.answers.grading import extract_answer, is_equivalent
from powersmc_core.models.toy import ToyLM
from powersmc_core.theory.exact import enumerate_sequences

__all__ = [
    "TEXT_PRESETS",
    "Preset",
    "grade",
    "prefix_label",
    "toy_prefix_options",
    "toy_reference",
]


def toy_prefix_options(model: ToyLM, max_options: int = 64) -> list[tuple[int, ...]]:
    """Token prefixes a toy run can start from, shortest first (leaving >= 2 tokens to decode)."""
    letters = range(model.vocab_size - 1)  # every id but EOS
    out: list[tuple[int, ...]] = []
    for length in range(max(0, model.max_len - 2) + 1):
        for prefix in product(letters, repeat=length):
            if len(out) >= max_options:
                return out
            out.append(prefix)
    return out


def prefix_label(model: ToyLM, prefix: Sequence[int]) -> str:
    return " ".join(model.token_names[t] for t in prefix) if prefix else "(empty prompt)"


# ---- presets and grading ---------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A problem with a known answer (graded with ``powersmc_core.answers.grading``)."""

    name: str
    prompt: str
    answer: str


_BOXED = " Put the final answer in \\boxed{}."
TEXT_PRESETS: tuple[Preset, ...] = (
    Preset("Addition: 17 + 25", "What is 17 + 25?" + _BOXED, "42"),
    Preset("Order of operations: 6 × 7 − 5", "What is 6 * 7 - 5?" + _BOXED, "37"),
    Preset(
        "Word problem: apples",
        "Tom has 3 bags with 4 apples in each bag. He eats 2 apples. "
        "How many apples does he have left?" + _BOXED,
        "10",
    ),
    Preset(
        "Capital of France",
        "What is the capital of France? Answer with one word." + _BOXED,
        "Paris",
    ),
    Preset("Days in a week", "How many days are there in two weeks?" + _BOXED, "14"),
)


def toy_reference(model: ToyLM, prefix: Sequence[int]) -> str | None:
    """Exact known answer of a toy prompt: argmax_y p(y|prefix), the mode of every pi_alpha;
    None when that mode is the empty completion (EOS first), which grading reads as no
    answer: then the page shows no known answer and grades nothing."""
    table = enumerate_sequences(model, prefix)
    best = int(table.log_p.argmax())
    text = model.decode_batch([table.sequences[best]])[0]
    return text if text.strip() else None


def grade(
    text: str | None, reference: str | None, toy: bool = False
) -> tuple[str | None, bool | None]:
    """(extracted answer, correct?) — None, None without a reference (an empty one too).

    ``text`` must be a finished completion (callers check the particle's finished flag;
    an unfinished one is not graded). Toy text is compared whole; LLM text by the "auto"
    extractor and ``is_equivalent`` (math-verify, else the exact grader)."""
    if text is None:
        return None, None
    answer = (text.strip() or None) if toy else extract_answer(text, "auto")
    if reference is None or not reference.strip():
        return answer, None
    if toy:
        return answer, answer == reference.strip()
    return answer, is_equivalent(answer, reference)
