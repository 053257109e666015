"""The particle table: the top K particles by weight, and how many more there are.

``particle_table(record, top_k)`` returns a ``ParticleTable``: a DataFrame of at most
``top_k`` rows (the leader first, finished particles marked) and ``n_more``, the
particles left out, so a page can write "and M more". The weights are recomputed
from the log-weights with a stable softmax, W = exp(log w − logsumexp(log w)): a
trace's raw values (log w = 800) can neither overflow nor leave weights that do not
sum to 1. Cost: O(N) numpy work plus O(K) rows, whatever N is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting.style import particle_color

__all__ = ["PARTICLE_COLUMNS", "ParticleTable", "particle_table", "style_particle_table"]

# st.dataframe column widths for ``style_particle_table`` (plain dicts: no Streamlit import).
PARTICLE_COLUMNS: dict[str, dict[str, Any]] = {
    "particle": {"width": 56},
    "weight": {"width": 72},
    "log p": {"width": 72},
    "status": {"width": 130},
    "text": {"width": "large"},
}


@dataclass(frozen=True)
class ParticleTable:
    """The top rows of a step's particle table and the count of the rows left out."""

    frame: pd.DataFrame
    n_more: int

    @property
    def more_caption(self) -> str:
        """``"and M more particles"`` ("" when every particle is shown)."""
        return f"and {self.n_more:,} more particles" if self.n_more else ""


def normalised_weights(log_weights: Any) -> np.ndarray:
    """W_i = exp(log w_i − logsumexp(log w)); non-finite entries get weight 0."""
    log_w = np.asarray(log_weights, dtype=np.float64)
    finite = np.isfinite(log_w)
    if not finite.any():
        return np.zeros_like(log_w)
    shifted = np.where(finite, log_w - log_w[finite].max(), -np.inf)
    weights = np.exp(shifted)
    return weights / weights.sum()


def particle_table(record: StepRecord, top_k: int = 50, max_chars: int = 240) -> ParticleTable:
    """The ``top_k`` particles of ``record`` by weight (leader first) and how many are left."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    n = record.n_particles
    weights = normalised_weights(record.log_weights)
    k = min(top_k, n)
    # argpartition then a stable sort of the k: O(N + k log k); ties keep slot order.
    top = np.argpartition(-weights, k - 1)[:k] if k < n else np.arange(n)
    top = top[np.lexsort((top, -weights[top]))]
    leader = int(top[0])
    finished = np.asarray(record.finished, dtype=bool)
    texts = record.texts or ("",) * n
    log_p = np.asarray(record.log_p, dtype=np.float64)
    rows = []
    for i in top.tolist():
        marks = (["★ leader"] if i == leader else []) + (
            ["✓ finished"] if finished[i] else ["decoding"]
        )
        text = texts[i]
        rows.append(
            {
                "particle": i,
                "weight": float(weights[i]),
                "log p": float(log_p[i]),
                "status": " · ".join(marks),
                "text": text if len(text) <= max_chars else "…" + text[-max_chars:],
            }
        )
    return ParticleTable(pd.DataFrame(rows), n - k)


def style_particle_table(frame: pd.DataFrame) -> Any:
    """Colour the slot cell with the particle colour and highlight the leading particle.

    ``frame`` is ``particle_table(...).frame`` (columns particle, status, ...).
    """

    def slot_color(value: Any) -> str:
        return f"background-color: {particle_color(int(value))}; color: white; font-weight: 600"

    def leader(row: pd.Series) -> list[str]:
        style = "background-color: rgba(255, 215, 0, 0.35)" if "leader" in row["status"] else ""
        return [style] * len(row)

    return frame.style.apply(leader, axis=1).map(slot_color, subset=["particle"])
