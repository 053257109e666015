"""``SMCConfig``: every knob of Power-SMC, validated once at construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from .resampling import RESAMPLERS

__all__ = ["SCHEDULES", "SMCConfig"]

SCHEDULES = ("constant", "linear", "adaptive")


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _integer(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")


@dataclass(frozen=True)
class SMCConfig:
    """Settings of one Power-SMC run targeting pi_alpha(y) ∝ p(y)^alpha.

    alpha: final exponent (> 0; > 1 sharpens). n_particles: N >= 1.
    ess_threshold: kappa in [0, 1]; resample when ESS < kappa·N (0 never, 1 always).
    resampling: scheme name. schedule: how alpha_t rises from alpha_start to alpha.
    ramp_tokens: steps of the linear ramp. target_ess: adaptive schedule's CESS/N floor.
    proposal_temperature: tau for q ∝ p^(1/tau); None means the optimal tau_t = 1/alpha_t.
    block_size: resampling is considered only every block_size steps.
    max_new_tokens: hard length cap (a sequence that reaches it is complete).
    seed: seeds the one generator every random draw uses.
    """

    alpha: float = 4.0
    n_particles: int = 16
    ess_threshold: float = 0.5
    resampling: str = "systematic"
    schedule: str = "constant"
    alpha_start: float = 1.0
    ramp_tokens: int = 32
    target_ess: float = 0.5
    proposal_temperature: float | None = None
    block_size: int = 1
    max_new_tokens: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        alpha = _finite("alpha", self.alpha)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0 (alpha > 1 sharpens p), got {alpha}")
        _integer("n_particles", self.n_particles, 1, 100_000)
        kappa = _finite("ess_threshold", self.ess_threshold)
        if not 0.0 <= kappa <= 1.0:
            raise ValueError(f"ess_threshold (kappa) must be in [0, 1], got {kappa}")
        if self.resampling not in RESAMPLERS:
            raise ValueError(
                f"resampling must be one of {sorted(RESAMPLERS)}, got {self.resampling!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        start = _finite("alpha_start", self.alpha_start)
        if start <= 0:
            raise ValueError(f"alpha_start must be > 0, got {start}")
        _integer("ramp_tokens", self.ramp_tokens, 1)
        target = _finite("target_ess", self.target_ess)
        if not 0.0 < target <= 1.0:
            raise ValueError(f"target_ess must be in (0, 1], got {target}")
        if self.proposal_temperature is not None:
            tau = _finite("proposal_temperature", self.proposal_temperature)
            if tau <= 0:
                raise ValueError(
                    f"proposal_temperature must be > 0 (or None for 1/alpha_t), got {tau}"
                )
        _integer("block_size", self.block_size, 1)
        _integer("max_new_tokens", self.max_new_tokens, 1, 1_000_000)
        _integer("seed", self.seed, 0, 2**63 - 1)
        # Store numbers as floats so records and JSON are uniform whatever the caller passed.
        for name in ("alpha", "ess_threshold", "alpha_start", "target_ess"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.proposal_temperature is not None:
            object.__setattr__(self, "proposal_temperature", float(self.proposal_temperature))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SMCConfig:
        """Build from a mapping, rejecting unknown keys by name (e.g. from a trace file)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SMCConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)
