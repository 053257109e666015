"""The pivotal-decision family: toy tables where a myopic proposal misses most of pi_alpha.

Table i (``toy-pivotal:i``, built by ``ToyLM.pivotal``) has a first token r that is rare
under p (p(r) a few per cent) and opens one confident continuation, while every other
first token opens diffuse ones. Sequence-level power favours the one confident path:
at alpha = 4, 65-85% of pi_alpha's mass lies behind r (``exact_rare_mass``), yet a
proposal that only sees the prefix draws r with probability about
p(r)^alpha / sum_v p(v)^alpha, far below 1%. The error in that branch's mass,

    |E[sum_i W_i 1[y_i starts with r]] - pi_alpha(y_1 = r)|,

is the arena's second score (``theory.arena``). ``rare_branch_mass(table, law, token)`` sums
any law over the table's completions whose first generated token is ``token``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from powersmc_core.models.base import LanguageModel
from powersmc_core.models.toy import PIVOTAL_ALPHA, ToyLM
from powersmc_core.theory.exact import SequenceTable, enumerate_sequences, power_distribution

__all__ = [
    "PIVOTAL_ALPHA",
    "PIVOTAL_FAMILY",
    "PivotalTable",
    "pivot_token",
    "pivotal_family",
    "pivotal_table",
    "rare_branch_mass",
]

# The family the arena and the tests use by default: four tables, V = 5 or 6, L = 4 or 5.
PIVOTAL_FAMILY = (0, 1, 2, 3)


def rare_branch_mass(
    table: SequenceTable, law: torch.Tensor | Sequence[float], token: int
) -> float:
    """sum of ``law`` over the completions whose first generated token is ``token``."""
    law = torch.as_tensor(law, dtype=torch.float64)
    behind = torch.tensor([s[:1] == (token,) for s in table.sequences], dtype=torch.bool)
    return float(law[behind].sum())


def pivot_token(model: LanguageModel) -> int | None:
    """The first token whose branch the arena scores: a pivotal table's rare token r;
    on the trap, "B" (the less likely first token that holds the confident path); else None."""
    token = getattr(model, "pivot_token", None)
    if token is not None:
        return int(token)
    if getattr(model, "name", None) == "toy-trap":
        return 1  # "B": p = 0.4, then the confident "x"
    return None


@dataclass(frozen=True)
class PivotalTable:
    """One table of the family with its enumeration (prompt empty, the toy's own length)."""

    index: int
    model: ToyLM
    table: SequenceTable

    @property
    def name(self) -> str:
        return f"toy-pivotal:{self.index}"

    @property
    def rare_token(self) -> int:
        assert self.model.pivot_token is not None
        return self.model.pivot_token

    @property
    def rare_probability(self) -> float:
        """p(y_1 = r): how rarely a myopic proposal at T = 1 starts down the branch."""
        return float(self.model.next_token_logprobs(()).exp()[self.rare_token])

    def rare_branch_mass(self, law: torch.Tensor | Sequence[float]) -> float:
        """The mass ``law`` (over ``table``'s rows) puts behind the rare token."""
        return rare_branch_mass(self.table, law, self.rare_token)

    def exact_rare_mass(self, alpha: float = PIVOTAL_ALPHA) -> float:
        """pi_alpha(y_1 = r), exactly: 0.65-0.85 at alpha = 4 by construction."""
        return self.rare_branch_mass(power_distribution(self.table, alpha))


def pivotal_table(index: int) -> PivotalTable:
    """Table ``index`` of the family, enumerated."""
    model = ToyLM.pivotal(index)
    return PivotalTable(index, model, enumerate_sequences(model))


def pivotal_family(indices: Sequence[int] = PIVOTAL_FAMILY) -> list[PivotalTable]:
    return [pivotal_table(i) for i in indices]
