"""``SMCConfig``: every knob of Power-SMC, validated once at construction.

Each field carries its own description in ``dataclasses.field(metadata=...)``: the
command-line flag, a help line, the kind of value and its bounds (``Knob``). The CLI
builds its flags from them (``config_knobs``) and the app clamps its widgets with
them (``config_field_bounds``), so a field is described once, here. A test checks
that every bound written here is the one ``__post_init__`` enforces.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from powersmc_core.engine.resampling import CHOPTHIN_ETA, RESAMPLERS

__all__ = [
    "SCHEDULES",
    "Knob",
    "SMCConfig",
    "config_field_bounds",
    "config_knobs",
    "range_message",
]

SCHEDULES = ("constant", "linear", "adaptive")
# The rollout knobs' bounds: look-ahead SMC's own (``engine.lookahead.LookaheadConfig``);
# ε < 1 keeps a share of the twisted proposal (ε = 1 would be Power-SMC at K·M·H the cost).
ROLLOUT_K_MAX, ROLLOUT_M_MAX, ROLLOUT_H_MAX = 64, 256, 64
EPSILON_MAX = 0.99


@dataclass(frozen=True)
class Knob:
    """How one ``SMCConfig`` field is shown to users: flag, help, kind and bounds.

    kind: ``"int"``, ``"float"`` or ``"choice"``. low/high: inclusive bounds (None:
    unbounded), except that ``low_open`` makes the lower one strict (alpha > 0).
    optional: None is a valid value (proposal_temperature: None means 1/alpha_t).
    """

    flag: str
    help: str
    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    short: str | None = None
    optional: bool = False

    @property
    def dest(self) -> str:
        """The argparse attribute of the flag (``--ess-threshold`` -> ``ess_threshold``)."""
        return self.flag.lstrip("-").replace("-", "_")


def _knob(default: Any, **kwargs: Any) -> Any:
    return field(default=default, metadata={"knob": Knob(**kwargs)})


def _number(value: Any) -> str:
    """A bound or value as a message writes it: ints exactly, floats in ``%g``."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def range_message(
    name: str,
    value: Any,
    low: float | None,
    high: float | None = None,
    *,
    low_open: bool = False,
    using: Any = None,
) -> str:
    """The one wording of a value outside its range: ``"N must be in [1, 256]; got 500"``.

    One-sided ranges read ``"alpha must be > 0; got -1"`` (``>=`` when ``low`` is allowed);
    ``low_open`` writes ``(low, high]``. A value clamped rather than refused says what is
    used instead: ``"N must be in [1, 256]; got 500; using 256"`` (the app's notes).
    """
    if high is None:
        bound = f"{'>' if low_open else '>='} {_number(low)}"
    else:
        bound = f"in {'(' if low_open else '['}{_number(low)}, {_number(high)}]"
    message = f"{name} must be {bound}; got {_number(value)}"
    return message if using is None else f"{message}; using {_number(using)}"


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    return value


def _integer(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(range_message(name, value, low, high))


@dataclass(frozen=True)
class SMCConfig:
    """Settings of one Power-SMC run targeting pi_alpha(y) ∝ p(y)^alpha.

    alpha: final exponent (> 0; > 1 sharpens). n_particles: N >= 1.
    ess_threshold: kappa in [0, 1]; resample when ESS < kappa·N (0 never, 1 always).
    resampling: scheme name. chopthin_eta: chopthin's bound eta >= 4 on the ratio of the
    largest to the smallest weight after resampling (the other schemes ignore it).
    schedule: how alpha_t rises from alpha_start to alpha.
    ramp_tokens: steps of the linear ramp. target_ess: adaptive schedule's CESS/N floor.
    proposal_temperature: tau for q ∝ p^(1/tau); None means the optimal tau_t = 1/alpha_t.
    block_size: resampling is considered only every block_size steps.
    max_new_tokens: hard length cap (a sequence that reaches it is complete).
    seed: seeds the one generator every random draw uses.
    rollout_k, rollout_m, rollout_h: the rollout methods' K candidate tokens per particle,
    M rollouts per candidate and depth H (look-ahead SMC and rollout power sampling); one
    boundary costs up to N·K·M·H rollout forwards. None: the method's own default
    (``samplers.registry.rollout_knobs``). lookahead_epsilon: look-ahead SMC's defensive
    share ε of p^a in its proposal q = (1 − ε)·ψ/S + ε·p^a/Σp^a (None: its default 0.1).
    """

    alpha: float = _knob(
        4.0, flag="--alpha", short="-a", help="power alpha > 0", kind="float", low=0, low_open=True
    )
    n_particles: int = _knob(
        16, flag="--particles", short="-n", help="N particles", kind="int", low=1, high=100_000
    )
    ess_threshold: float = _knob(
        0.5, flag="--ess-threshold", help="resample when ESS < kappa·N", kind="float", low=0, high=1
    )
    resampling: str = _knob(
        "systematic",
        flag="--resampling",
        help="resampling scheme",
        kind="choice",
        choices=tuple(sorted(RESAMPLERS)),
    )
    chopthin_eta: float = _knob(
        CHOPTHIN_ETA,
        flag="--chopthin-eta",
        help="chopthin: max/min weight after resampling (>= 4)",
        kind="float",
        low=CHOPTHIN_ETA,
    )
    schedule: str = _knob(
        "constant", flag="--schedule", help="alpha_t schedule", kind="choice", choices=SCHEDULES
    )
    alpha_start: float = _knob(
        1.0, flag="--alpha-start", help="alpha_1", kind="float", low=0, low_open=True
    )
    ramp_tokens: int = _knob(32, flag="--ramp-tokens", help="linear ramp length", kind="int", low=1)
    target_ess: float = _knob(
        0.5,
        flag="--target-ess",
        help="adaptive CESS/N",
        kind="float",
        low=0,
        high=1,
        low_open=True,
    )
    proposal_temperature: float | None = _knob(
        None,
        flag="--proposal-temperature",
        help="tau of q ∝ p^(1/tau) (default 1/alpha_t)",
        kind="float",
        low=0,
        low_open=True,
        optional=True,
    )
    block_size: int = _knob(
        1, flag="--block-size", help="resample only every B steps", kind="int", low=1
    )
    max_new_tokens: int = _knob(
        128,
        flag="--max-new-tokens",
        short="-t",
        help="hard length cap (a sequence that reaches it is complete)",
        kind="int",
        low=1,
        high=1_000_000,
    )
    seed: int = _knob(
        0, flag="--seed", help="seed of the one generator", kind="int", low=0, high=2**63 - 1
    )
    # The rollout methods' knobs (lookahead, rollout): read by their registry builders only.
    rollout_k: int | None = _knob(
        None,
        flag="--rollout-k",
        help="lookahead/rollout: K candidate tokens per particle (default: the method's)",
        kind="int",
        low=1,
        high=ROLLOUT_K_MAX,
        optional=True,
    )
    rollout_m: int | None = _knob(
        None,
        flag="--rollout-m",
        help="lookahead/rollout: M rollouts per candidate (default: the method's)",
        kind="int",
        low=1,
        high=ROLLOUT_M_MAX,
        optional=True,
    )
    rollout_h: int | None = _knob(
        None,
        flag="--rollout-h",
        help="lookahead/rollout: rollout depth H in tokens (default: the method's)",
        kind="int",
        low=1,
        high=ROLLOUT_H_MAX,
        optional=True,
    )
    lookahead_epsilon: float | None = _knob(
        None,
        flag="--lookahead-epsilon",
        help="lookahead: defensive share of p^a in the proposal (default 0.1)",
        kind="float",
        low=0,
        high=EPSILON_MAX,
        optional=True,
    )

    def __post_init__(self) -> None:
        alpha = _finite("alpha", self.alpha)
        if alpha <= 0:
            raise ValueError(range_message("alpha", alpha, 0, low_open=True))
        _integer("n_particles", self.n_particles, 1, 100_000)
        kappa = _finite("ess_threshold", self.ess_threshold)
        if not 0.0 <= kappa <= 1.0:
            raise ValueError(range_message("ess_threshold", kappa, 0, 1))
        if self.resampling not in RESAMPLERS:
            raise ValueError(
                f"resampling must be one of {sorted(RESAMPLERS)}; got {self.resampling!r}"
            )
        eta = _finite("chopthin_eta", self.chopthin_eta)
        if eta < CHOPTHIN_ETA:
            raise ValueError(f"chopthin_eta must be >= {CHOPTHIN_ETA:g}; got {eta}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}; got {self.schedule!r}")
        start = _finite("alpha_start", self.alpha_start)
        if start <= 0:
            raise ValueError(range_message("alpha_start", start, 0, low_open=True))
        _integer("ramp_tokens", self.ramp_tokens, 1)
        target = _finite("target_ess", self.target_ess)
        if not 0.0 < target <= 1.0:
            raise ValueError(range_message("target_ess", target, 0, 1, low_open=True))
        if self.proposal_temperature is not None:
            tau = _finite("proposal_temperature", self.proposal_temperature)
            if tau <= 0:
                raise ValueError(range_message("proposal_temperature", tau, 0, low_open=True))
        _integer("block_size", self.block_size, 1)
        _integer("max_new_tokens", self.max_new_tokens, 1, 1_000_000)
        _integer("seed", self.seed, 0, 2**63 - 1)
        for name, high in (
            ("rollout_k", ROLLOUT_K_MAX),
            ("rollout_m", ROLLOUT_M_MAX),
            ("rollout_h", ROLLOUT_H_MAX),
        ):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), 1, high)
        if self.lookahead_epsilon is not None:
            eps = _finite("lookahead_epsilon", self.lookahead_epsilon)
            if not 0.0 <= eps <= EPSILON_MAX:
                raise ValueError(range_message("lookahead_epsilon", eps, 0, EPSILON_MAX))
            object.__setattr__(self, "lookahead_epsilon", eps)
        # Store numbers as floats so records and JSON are uniform whatever the caller passed.
        for name in ("alpha", "ess_threshold", "chopthin_eta", "alpha_start", "target_ess"):
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


def config_knobs() -> dict[str, Knob]:
    """SMCConfig field name -> its ``Knob``, in field order (every field has one)."""
    return {f.name: f.metadata["knob"] for f in fields(SMCConfig)}


def config_field_bounds() -> dict[str, dict[str, Any]]:
    """Field -> {kind, low, high, low_open, choices, optional, default}: what a UI clamps to.

    The same bounds ``SMCConfig`` enforces; a deployment's caps (e.g. a demo's N <= 32)
    are tighter and are applied on top by the app.
    """
    defaults = SMCConfig()
    return {
        name: {
            "kind": knob.kind,
            "low": knob.low,
            "high": knob.high,
            "low_open": knob.low_open,
            "choices": knob.choices,
            "optional": knob.optional,
            "default": getattr(defaults, name),
        }
        for name, knob in config_knobs().items()
    }
