"""Immutable records the sampler streams, and the result it returns.

Per-particle arrays in a ``StepRecord`` are indexed by the particle slots *before*
this step's resampling; ``ancestors[j]`` is the slot that slot j continues from at
the next step (the identity when no resampling happened). Arrays are tuples so a
record can be shared between threads and serialised without copying tensors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from powersmc_core.io.codec import from_json_safe, to_json_safe

__all__ = ["PER_PARTICLE_FIELDS", "SMCResult", "StepRecord"]

# StepRecord's arrays with one entry per particle slot (validated together on read-back).
PER_PARTICLE_FIELDS = (
    "tokens",
    "log_weights",
    "log_increment",
    "renyi",
    "log_p",
    "finished",
    "ancestors",
    "roots",
)


@dataclass(frozen=True)
class StepRecord:
    """State of the particle system after decoding token ``step`` (1-based)."""

    step: int
    alpha: float  # alpha_t of the intermediate target p(y_1:t)^alpha_t
    tau: float  # proposal temperature used for this token
    catch_up: float  # alpha - alpha_t applied at the last step (0 elsewhere)
    tokens: tuple[int, ...]  # token appended by each particle, -1 if it had finished before
    log_weights: tuple[float, ...]  # normalised log W_i after the update, before resampling
    log_increment: tuple[float, ...]  # log incremental weight log G_i of this step
    renyi: tuple[float, ...]  # H_{alpha_t}(p(.|prefix_i)); NaN for finished particles
    log_p: tuple[float, ...]  # cumulative log p(y_1:t) of each particle
    finished: tuple[bool, ...]  # particle has emitted EOS or met a stop rule
    ess: float  # 1 / sum W_i^2 of log_weights, in [1, N]
    resampled: bool
    ancestors: tuple[int, ...]
    roots: tuple[int, ...]  # initial particle each slot descends from (before resampling)
    n_lineages: int  # distinct roots surviving after this step's resampling
    n_unique_ancestors: int
    log_z: float  # running log Ẑ, the SMC estimate of log sum_y p(y)^alpha_t-path
    elapsed: float  # seconds since the run started
    texts: tuple[str, ...] | None = None  # decoded text of each particle, if tracked
    done: bool = False  # last record of the run

    @property
    def n_particles(self) -> int:
        return len(self.tokens)

    def to_json(self) -> str:
        return json.dumps(to_json_safe(asdict(self)), allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecord:
        """Rebuild (and validate the shape of) a record read back from a trace file."""
        names = [f.name for f in fields(cls)]
        required = [f.name for f in fields(cls) if f.name not in ("texts", "done")]
        missing = [n for n in required if n not in data]
        if missing:
            raise ValueError(f"step record is missing fields {missing}")
        values = {
            n: data[n] if n == "texts" else from_json_safe(data[n]) for n in names if n in data
        }
        for n in PER_PARTICLE_FIELDS:
            if not isinstance(values[n], list | tuple):
                raise ValueError(f"step record field {n!r} must be a list")
            values[n] = tuple(values[n])
        if values.get("texts") is not None:
            values["texts"] = tuple(str(t) for t in values["texts"])
        _check_types(values)
        n = len(values["tokens"])
        for name in PER_PARTICLE_FIELDS:
            if len(values[name]) != n:
                raise ValueError(
                    f"step record field {name!r} has {len(values[name])} entries, expected {n}"
                )
        return cls(**values)


@dataclass(frozen=True)
class SMCResult:
    """Final weighted particle set approximating pi_alpha, plus run diagnostics."""

    completions: list[list[int]]  # N token-id lists, EOS excluded
    weights: list[float]  # normalised, sum to 1
    chosen: int  # index drawn in proportion to the weights
    log_p: list[float]  # log p(y_i | x) of each completion (EOS included when emitted)
    log_z: float  # log Ẑ, estimate of log sum_y p(y|x)^alpha
    n_resamples: int
    ess_trace: list[float]
    finished: list[bool]  # completion ended by EOS / stop rule (False: hit max_new_tokens)
    n_steps: int
    elapsed: float
    texts: list[str] | None = None
    method: str = "smc"
    extras: dict[str, Any] | None = None  # method-specific diagnostics (e.g. MH acceptance)

    @property
    def chosen_completion(self) -> list[int]:
        return self.completions[self.chosen]

    @property
    def chosen_text(self) -> str | None:
        return None if self.texts is None else self.texts[self.chosen]

    @property
    def ess_min(self) -> float:
        return min(self.ess_trace) if self.ess_trace else float(len(self.weights))

    def to_dict(self) -> dict[str, Any]:
        return to_json_safe(asdict(self))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _check_types(values: dict[str, Any]) -> None:
    """Reject wrongly typed fields here, not later inside a chart (traces come from uploads)."""
    for name in ("step", "n_lineages", "n_unique_ancestors"):
        if not _is_int(values[name]):
            raise ValueError(f"step record field {name!r} must be an integer")
    for name in ("alpha", "tau", "catch_up", "ess", "log_z", "elapsed"):
        if not _is_number(values[name]):
            raise ValueError(f"step record field {name!r} must be a number")
    for name in ("resampled", "done"):
        if name in values and not isinstance(values[name], bool):
            raise ValueError(f"step record field {name!r} must be true or false")
    checks = {
        "tokens": _is_int,
        "ancestors": _is_int,
        "roots": _is_int,
        "finished": lambda x: isinstance(x, bool),
        "log_weights": _is_number,
        "log_increment": _is_number,
        "renyi": _is_number,
        "log_p": _is_number,
    }
    for name, ok in checks.items():
        if not all(ok(x) for x in values[name]):
            raise ValueError(f"step record field {name!r} has a value of the wrong type")
