"""Power is not temperature, computed exactly by enumeration.

pi_alpha(y) ∝ p(y)^alpha differs from token-level sampling at T = 1/alpha,
q(y) = prod_t p(y_t|y_<t)^alpha / sum_v p(v|y_<t)^alpha (``power_vs_temperature``, ``tv_curves``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from powersmc_core.models.base import LanguageModel
from powersmc_core.theory.common import labels as _labels
from powersmc_core.theory.exact import (
    SequenceTable,
    TemperatureLaws,
    enumerate_sequences,
    exact_log_z,
    power_distribution,
    temperature_distribution,
    total_variation,
)

__all__ = ["PowerComparison", "power_vs_temperature", "tv_curves"]


@dataclass(frozen=True)
class PowerComparison:
    """p, exact pi_alpha and exact token-level temperature 1/alpha over every sequence."""

    alpha: float
    labels: list[str]  # decoded sequences (EOS excluded)
    p: np.ndarray  # (S,) p(y|x)
    pi_alpha: np.ndarray  # (S,) p(y)^alpha / Z_alpha
    token_temperature: np.ndarray  # (S,) prod_t softmax(alpha·log p(.|y_<t))[y_t]
    tv_power_vs_temperature: float
    tv_power_vs_p: float
    tv_temperature_vs_p: float
    log_z: float  # log Z_alpha = log sum_y p(y)^alpha

    def frame(self) -> pd.DataFrame:
        """One row per sequence, sorted by pi_alpha (largest first)."""
        df = pd.DataFrame(
            {
                "sequence": self.labels,
                "p": self.p,
                "pi_alpha": self.pi_alpha,
                "token_temperature": self.token_temperature,
            }
        )
        return df.sort_values("pi_alpha", ascending=False, ignore_index=True)


def power_vs_temperature(
    model: LanguageModel,
    alpha: float,
    prompt: Sequence[int] = (),
    table: SequenceTable | None = None,
) -> PowerComparison:
    """Exact p, pi_alpha ∝ p^alpha and token-level temperature T = 1/alpha, with their TVs."""
    table = table if table is not None else enumerate_sequences(model, prompt)
    p = table.log_p.exp()
    pi = power_distribution(table, alpha)
    temp = temperature_distribution(table, 1.0 / alpha)
    return PowerComparison(
        alpha=float(alpha),
        labels=_labels(model, table),
        p=p.numpy(),
        pi_alpha=pi.numpy(),
        token_temperature=temp.numpy(),
        tv_power_vs_temperature=total_variation(pi, temp),
        tv_power_vs_p=total_variation(pi, p),
        tv_temperature_vs_p=total_variation(temp, p),
        log_z=exact_log_z(table, alpha),
    )


def tv_curves(
    model: LanguageModel,
    alphas: Iterable[float],
    prompt: Sequence[int] = (),
    table: SequenceTable | None = None,
) -> pd.DataFrame:
    """Exact TVs as alpha grows: columns alpha, tv_power_vs_temperature, tv_power_vs_p,
    tv_temperature_vs_p (temperature = 1/alpha). One enumeration serves every alpha."""
    table = table if table is not None else enumerate_sequences(model, prompt)
    steps = TemperatureLaws(table)
    p = table.log_p.exp()
    rows = []
    for alpha in alphas:
        pi = power_distribution(table, alpha)
        temp = steps.temperature(1.0 / alpha)
        rows.append(
            {
                "alpha": float(alpha),
                "tv_power_vs_temperature": total_variation(pi, temp),
                "tv_power_vs_p": total_variation(pi, p),
                "tv_temperature_vs_p": total_variation(temp, p),
            }
        )
    return pd.DataFrame(rows)
