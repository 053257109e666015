"""The particle table: the top K particles by weight, and how many more there are.

``particle_table(record, top_k)`` returns a ``ParticleTable``: a DataFrame of at most
``top_k`` rows (the leader first, finished particles marked) and ``n_more``, the
particles left out, so a page can write "and M more". The weights are recomputed
from the log-weights with a stable softmax, W = exp(log w − logsumexp(log w)): a
trace's raw values (log w = 800) can neither overflow nor leave weights that do not
sum to 1. Cost: O(N) numpy work plus O(K) rows, whatever N is.

``group_particles`` merges particles that say the same thing: one row per distinct text
(or token sequence) with its particle count, total weight and distinct lineages, the
heaviest first; ``grouped_table`` renders the top rows of that grouping with an
"and M more texts (mass m)" remainder. At N = 256 resampled particles, most slots are
copies of a few texts: one row per slot would repeat the same text dozens of times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting.style import particle_color

__all__ = [
    "GROUP_COLUMNS",
    "PARTICLE_COLUMNS",
    "GroupedTable",
    "ParticleGroups",
    "ParticleTable",
    "group_particles",
    "grouped_table",
    "particle_table",
    "style_particle_table",
]

# st.dataframe column widths for ``style_particle_table`` (plain dicts: no Streamlit import).
PARTICLE_COLUMNS: dict[str, dict[str, Any]] = {
    "particle": {"width": 56},
    "weight": {"width": 72},
    "log p": {"width": 72},
    "status": {"width": 130},
    "text": {"width": "large"},
}


GROUP_COLUMNS: dict[str, dict[str, Any]] = {
    "particle": {"width": 56},
    "copies": {"width": 56},
    "weight": {"width": 72},
    "lineages": {"width": 64},
    "log p": {"width": 64},
    "status": {"width": 120},
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


@dataclass(frozen=True)
class ParticleGroups:
    """Particles merged by an equality key, one entry per group, heaviest group first.

    ``label[i]`` is particle i's group (an index into the other arrays); ``mass`` the
    total normalised weight of each group (sums to 1 when any weight is finite),
    ``count`` its particles, ``lineages`` its distinct roots, ``head`` its heaviest slot.
    """

    label: np.ndarray  # (N,) int
    mass: np.ndarray  # (G,) float
    count: np.ndarray  # (G,) int
    lineages: np.ndarray  # (G,) int
    head: np.ndarray  # (G,) int

    def __len__(self) -> int:
        return int(self.mass.size)


def group_particles(weights: Any, keys: Any, roots: Any | None = None) -> ParticleGroups:
    """Group particle i by ``keys[i]`` (texts or sequence labels), sorted by total weight.

    Mass of group g = sum of W_i over its members; lineages = distinct ``roots`` among
    them (1 per member when no roots are given). Ties in mass keep the order of each
    group's lowest slot. O(N log N) numpy: ``np.unique`` and ``np.bincount``.
    """
    w = np.asarray(weights, dtype=np.float64)
    n = w.size
    if not isinstance(keys, np.ndarray):
        # Object dtype: a fixed-width unicode array would take N × longest text × 4 bytes.
        keys = np.array(list(keys), dtype=object)
    if keys.shape != (n,):
        raise ValueError(f"need one key per particle: {keys.shape} keys for {n} weights")
    if n == 0:
        empty_i = np.zeros(0, dtype=np.int64)
        return ParticleGroups(empty_i, np.zeros(0), empty_i, empty_i, empty_i)
    _, first, raw = np.unique(keys, return_index=True, return_inverse=True)
    raw = raw.reshape(-1)
    n_groups = first.size
    mass = np.bincount(raw, weights=w, minlength=n_groups)
    # Heaviest first; equal masses in slot order of each group's first member.
    order = np.lexsort((first, -mass))
    rank = np.empty(n_groups, dtype=np.int64)
    rank[order] = np.arange(n_groups)
    label = rank[raw]
    root = np.arange(n) if roots is None else np.asarray(roots, dtype=np.int64)
    pairs = np.unique(np.stack([label, root], axis=1), axis=0)
    lineages = np.bincount(pairs[:, 0], minlength=n_groups)
    # Heaviest member of each group: sort slots by (group, -weight, slot), take firsts.
    by = np.lexsort((np.arange(n), -w, label))
    starts = np.searchsorted(label[by], np.arange(n_groups))
    return ParticleGroups(
        label=label,
        mass=mass[order],
        count=np.bincount(label, minlength=n_groups),
        lineages=lineages,
        head=by[starts],
    )


@dataclass(frozen=True)
class GroupedTable:
    """The top groups of a step's particles and what the rows left out hold."""

    frame: pd.DataFrame
    n_groups: int  # distinct texts (or sequences) in all
    n_more: int  # groups left out
    more_mass: float  # their total weight

    @property
    def more_caption(self) -> str:
        """``"and M more texts (mass m)"`` ("" when every group is shown)."""
        if not self.n_more:
            return ""
        noun = "text" if self.n_more == 1 else "texts"
        return f"and {self.n_more:,} more {noun} (total weight {self.more_mass:.3g})"


def grouped_table(
    record: StepRecord, top_k: int = 12, keys: Any | None = None, max_chars: int = 240
) -> GroupedTable:
    """One row per distinct text of ``record`` (or per ``keys`` label), heaviest first.

    Columns: particle (the group's heaviest slot), copies, weight (the group's total W),
    lineages (distinct initial particles among the copies), log p (of that heaviest
    slot), status (★ leader: the heaviest group; finished or decoding) and text.
    Without texts and ``keys`` every particle is its own group.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    n = record.n_particles
    weights = normalised_weights(record.log_weights)
    texts = record.texts or ("",) * n
    if keys is None:
        keys = np.asarray(texts, dtype=object) if record.texts else np.arange(n)
    groups = group_particles(weights, keys, record.roots)
    k = min(top_k, len(groups))
    finished = np.asarray(record.finished, dtype=bool)
    log_p = np.asarray(record.log_p, dtype=np.float64)
    rows = []
    for g in range(k):
        i = int(groups.head[g])
        marks = (["★ leader"] if g == 0 else []) + (["✓ finished"] if finished[i] else ["decoding"])
        text = texts[i]
        rows.append(
            {
                "particle": i,
                "copies": int(groups.count[g]),
                "weight": float(groups.mass[g]),
                "lineages": int(groups.lineages[g]),
                "log p": float(log_p[i]),
                "status": " · ".join(marks),
                "text": text if len(text) <= max_chars else "…" + text[-max_chars:],
            }
        )
    return GroupedTable(
        pd.DataFrame(rows), len(groups), len(groups) - k, float(groups.mass[k:].sum())
    )


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
