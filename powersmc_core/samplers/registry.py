"""Method name -> sampler: the one place the CLI, the app and the evaluation agree on.

``base``: ancestral sampling (T = 1); ``lowtemp``: token-level temperature 1/alpha;
``smc``: Power-SMC; ``mh``: MH power sampling (Karan & Du); ``bon``: best-of-N by log p;
``greedy``: argmax p token by token (the T -> 0 limit, ``greedy.py``); ``rollout``:
rollout power sampling (Ji et al. 2026), approximate (``rollout_power.py``); ``lookahead``:
look-ahead SMC, rollout estimates of the future power mass twisting the proposal and the
resampling (``samplers/lookahead.py``; toy, transformer and llama.cpp backends). Both
rollout methods read K, M, H from ``SMCConfig.rollout_k/m/h`` (look-ahead also ε and the
block size), None meaning the method's defaults (``rollout_knobs``).

Each method is declared once, as a ``Method``: its name, a one-line description, its
builder, the evaluation settings it reads, its chart colour and its compute accounting
(token forwards, so samplers compare at equal cost). The CLI's ``--method`` choices, the
evaluation's methods and config hashes, the bench's rows, the app's Compare list and the
charts' colours all read ``METHODS``, so a new method is one module plus one
``register(Method(...))``.

Every sampler has the same run interface (``Sampler``): ``stream(prompt)`` returns a run
object, an iterator of frozen records (``StepRecord``; ``MHRecord`` for MH) whose
``result()`` is the ``SMCResult`` at any time, and ``run(prompt)`` consumes it. A caller that
watches the records iterates the run and then calls ``result()``; it never needs to patch
``stream`` or redo a sampler's choice (best-of-N's argmax lives in its run's ``result()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.lookahead import LookaheadConfig
from powersmc_core.engine.records import SMCResult
from powersmc_core.engine.run import PowerSMC
from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.toy import ToyLM
from powersmc_core.samplers.baselines import BestOfN, MHPowerSampler, TemperatureSampling
from powersmc_core.samplers.greedy import GreedyDecoding
from powersmc_core.samplers.lookahead import LookaheadSMC
from powersmc_core.samplers.rollout_power import RolloutPowerSampler

__all__ = [
    "DESCRIPTIONS",
    "METHODS",
    "Method",
    "Run",
    "Sampler",
    "default_methods",
    "make_sampler",
    "method_colors",
    "method_view",
    "register",
    "rollout_knobs",
    "token_forwards",
    "unavailable",
    "unregister",
]


class Run(Protocol):
    """What ``stream(prompt)`` returns: records one at a time, and the result so far."""

    def __iter__(self) -> Iterator[Any]: ...

    def __next__(self) -> Any: ...

    def result(self) -> SMCResult: ...


class Sampler(Protocol):
    """The run interface every method shares."""

    method: str

    def stream(self, prompt: Sequence[int]) -> Run: ...

    def run(self, prompt: Sequence[int]) -> SMCResult: ...


class Builder(Protocol):
    """``(model, config, *, stop, n_particles, mh_steps, mh_block_size, stream_every,
    track_text) -> Sampler``: a fresh sampler (see ``make_sampler`` for each argument)."""

    def __call__(
        self,
        model: LanguageModel,
        config: SMCConfig,
        *,
        stop: StopRule | None,
        n_particles: int,
        mh_steps: int,
        mh_block_size: int | None,
        stream_every: int,
        track_text: bool,
    ) -> Sampler: ...


def token_forwards(result: SMCResult) -> int:
    """Tokens pushed through the model by one run (every method reports it in ``extras``)."""
    forwards = (result.extras or {}).get("token_forwards")
    if forwards is None:
        raise ValueError("the result reports no token_forwards in its extras")
    return int(forwards)


@dataclass(frozen=True)
class Method:
    """One sampling method, declared once.

    ``fields`` are the ``EvalSettings`` fields the method reads (its config hash covers
    these only); ``cost`` is its compute accounting, token forwards of one run.
    ``batches``: its records can be batched (``stream_every`` > 1); ``static_cache``: it
    decodes one growing batch, so a static KV cache serves it (MH restarts from new
    prefixes and does not); ``bench``: the latency bench times it by default; ``default``:
    in the default selection of the evaluation and Compare (False for the rollout methods,
    which cost K·M·H forwards per token); ``forks``: it forks the particles' model state into
    more rows than N (rollouts), which only some backends can (``unavailable``).
    """

    name: str
    description: str
    build: Builder
    fields: tuple[str, ...]
    color: str
    cost: Callable[[SMCResult], int] = token_forwards
    batches: bool = True
    static_cache: bool = True
    bench: bool = True
    default: bool = True
    forks: bool = False


_REGISTRY: dict[str, Method] = {}


class _Methods(Mapping[str, Method]):
    """The registry, read-only and in registration order: ``name in METHODS``,
    ``list(METHODS)`` and ``",".join(METHODS)`` see every method registered so far."""

    def __getitem__(self, name: str) -> Method:
        return _REGISTRY[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(_REGISTRY))

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return f"METHODS({list(_REGISTRY)})"


METHODS: Mapping[str, Method] = _Methods()


class _Derived(Mapping[str, Any]):
    """A live per-method view of the registry (plus fixed extra entries)."""

    def __init__(self, value: Callable[[Method], Any], extra: Mapping[str, Any] | None = None):
        self._value = value
        self._extra = dict(extra or {})

    def __getitem__(self, name: str) -> Any:
        if name in _REGISTRY:
            return self._value(_REGISTRY[name])
        return self._extra[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*_REGISTRY, *(k for k in self._extra if k not in _REGISTRY)])

    def __len__(self) -> int:
        return len(list(iter(self)))

    def __repr__(self) -> str:
        return repr(dict(self))


DESCRIPTIONS: Mapping[str, str] = _Derived(lambda m: m.description)


def method_view(
    value: Callable[[Method], Any], extra: Mapping[str, Any] | None = None
) -> Mapping[str, Any]:
    """name -> ``value(method)`` for every method registered (now or later), plus ``extra``."""
    return _Derived(value, extra)


def method_colors(extra: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """name -> chart colour for every registered method, plus ``extra`` entries."""
    return method_view(lambda m: m.color, extra)


def default_methods() -> list[str]:
    """The methods selected unless a caller names others (registration order)."""
    return [name for name, spec in _REGISTRY.items() if spec.default]


def unavailable(name: str, model: LanguageModel) -> str | None:
    """Why method ``name`` cannot run on ``model`` (None: it can): a method that forks
    rollout rows needs a backend whose state can be forked (``models.forking.fork_refusal``;
    the row count N·K·M is checked when the sampler is built)."""
    from powersmc_core.models.forking import fork_refusal

    return fork_refusal(model) if _REGISTRY[name].forks else None


def register(method: Method) -> Method:
    """Add ``method`` to the registry (a name is registered once)."""
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    if not method.name or "," in method.name:
        raise ValueError(f"method name must be non-empty without commas, got {method.name!r}")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> Method:
    """Remove and return the method ``name`` (tests register their own and take it back)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {list(_REGISTRY)}")
    return _REGISTRY.pop(name)


def make_sampler(
    method: str,
    model: LanguageModel,
    config: SMCConfig,
    *,
    stop: StopRule | None = None,
    n_particles: int = 1,
    mh_steps: int = 10,
    mh_block_size: int | None = None,
    stream_every: int = 1,
    track_text: bool = True,
) -> Sampler:
    """A fresh sampler (stop rules are stateful) with ``run`` and ``stream``.

    ``config`` supplies alpha, N (smc, bon), length, seed and the proposal temperature
    (greedy reads the length only); ``n_particles`` is how many independent sequences
    ``base`` / ``lowtemp`` draw;
    ``stream_every`` batches the particle samplers' records (see ``PowerSMC``);
    ``track_text=False`` skips decoding the particles' text (the bench; a stop rule
    needs the text and keeps it on).
    """
    if method not in _REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose from {list(_REGISTRY)}")
    spec = _REGISTRY[method]
    if stream_every != 1 and not spec.batches:
        batching = [name for name, m in _REGISTRY.items() if m.batches]
        raise ValueError(
            f"stream_every={stream_every} applies to the particle samplers "
            f"({', '.join(batching)}); {method.upper()} streams one record per {method.upper()} step"
        )
    return spec.build(
        model,
        config,
        stop=stop,
        n_particles=n_particles,
        mh_steps=mh_steps,
        mh_block_size=mh_block_size,
        stream_every=stream_every,
        track_text=track_text,
    )


# ---- the built-in methods ----------------------------------------------------------------
def _temperature(kind: str) -> Builder:
    def build(
        model: LanguageModel,
        config: SMCConfig,
        *,
        stop: StopRule | None,
        n_particles: int,
        mh_steps: int,
        mh_block_size: int | None,
        stream_every: int,
        track_text: bool,
    ) -> Sampler:
        temperature = 1.0 if kind == "base" else 1.0 / config.alpha
        return TemperatureSampling(
            model,
            temperature,
            n_particles=n_particles,
            max_new_tokens=config.max_new_tokens,
            seed=config.seed,
            stop=stop,
            track_text=track_text,
            stream_every=stream_every,
        )

    return build


def _smc(
    model: LanguageModel,
    config: SMCConfig,
    *,
    stop: StopRule | None,
    stream_every: int,
    track_text: bool,
    **_: Any,
) -> Sampler:
    return PowerSMC(model, config, stop=stop, track_text=track_text, stream_every=stream_every)


def _mh(
    model: LanguageModel,
    config: SMCConfig,
    *,
    stop: StopRule | None,
    mh_steps: int,
    mh_block_size: int | None,
    stream_every: int,
    **_: Any,
) -> Sampler:
    return MHPowerSampler(
        model,
        alpha=config.alpha,
        max_new_tokens=config.max_new_tokens,
        block_size=mh_block_size,
        mh_steps=mh_steps,
        seed=config.seed,
        proposal_temperature=config.proposal_temperature,
        stop=stop,
    )


def _bon(
    model: LanguageModel,
    config: SMCConfig,
    *,
    stop: StopRule | None,
    stream_every: int,
    track_text: bool,
    **_: Any,
) -> Sampler:
    return BestOfN(
        model,
        n_particles=config.n_particles,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        stop=stop,
        track_text=track_text,
        stream_every=stream_every,
    )


def _greedy(
    model: LanguageModel,
    config: SMCConfig,
    *,
    stop: StopRule | None,
    stream_every: int,
    track_text: bool,
    **_: Any,
) -> Sampler:
    return GreedyDecoding(
        model,
        max_new_tokens=config.max_new_tokens,
        stop=stop,
        track_text=track_text,
        stream_every=stream_every,
    )


# The rollout methods' defaults where ``SMCConfig.rollout_*`` is None (K, M, H).
ROLLOUT_DEFAULTS = {"rollout": (8, 8, 8), "lookahead": (4, 4, 4)}
LOOKAHEAD_EPSILON = LookaheadConfig().epsilon
# Toys: M = 1, H = 2, epsilon = 0.5 (docs/arena.md): a third of M = 4, H = 4's forwards; at
# equal forwards it keeps the pivotal tables' rare branch and, with half of Power-SMC's own
# proposal mixed in, stays within error bars of Power-SMC on the random tables.
TOY_LOOKAHEAD_MH = (1, 2)
TOY_LOOKAHEAD_EPSILON = 0.5


def rollout_knobs(method: str, model: LanguageModel, config: SMCConfig) -> tuple[int, int, int]:
    """(K, M, H) that ``method`` runs with: ``config.rollout_*``, else the method's defaults.

    One boundary costs at most N·K·M·H rollout forwards (K·M·H per particle). On a toy,
    look-ahead SMC looks at every next token by default (K = V): a rare token is found at all
    only if it is looked at, and a toy's vocabulary is small enough to look at all of it
    (with M = 1, H = 2: ``TOY_LOOKAHEAD_MH``).
    """
    if method not in ROLLOUT_DEFAULTS:
        raise ValueError(f"{method!r} runs no rollouts; rollout methods: {list(ROLLOUT_DEFAULTS)}")
    k, m, h = ROLLOUT_DEFAULTS[method]
    if method == "lookahead" and isinstance(model, ToyLM):
        k, (m, h) = min(model.vocab_size, 64), TOY_LOOKAHEAD_MH
    given = (config.rollout_k, config.rollout_m, config.rollout_h)
    k, m, h = (d if v is None else v for v, d in zip(given, (k, m, h), strict=True))
    return k, m, h


def _rollout(
    model: LanguageModel,
    config: SMCConfig,
    *,
    stop: StopRule | None,
    track_text: bool,
    **_: Any,
) -> Sampler:
    k, m, h = rollout_knobs("rollout", model, config)
    return RolloutPowerSampler(
        model,
        alpha=config.alpha,
        n_samples=config.n_particles,
        candidates=k,
        rollouts=m,
        depth=h,
        jackknife=m >= 2,  # the jackknife leaves one rollout out: M = 1 is the plain ratio
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        stop=stop,
        track_text=track_text,
    )


def _lookahead(
    model: LanguageModel,
    config: SMCConfig,
    *,
    stop: StopRule | None,
    stream_every: int,
    track_text: bool,
    **_: Any,
) -> Sampler:
    k, m, h = rollout_knobs("lookahead", model, config)
    eps = config.lookahead_epsilon
    if eps is None:
        eps = TOY_LOOKAHEAD_EPSILON if isinstance(model, ToyLM) else LOOKAHEAD_EPSILON
    looked = LookaheadConfig(k=k, m=m, h=h, epsilon=eps)
    return LookaheadSMC(
        model, config, stop=stop, track_text=track_text, stream_every=stream_every, lookahead=looked
    )


_SMC_FIELDS = ("alpha", "n_particles", "schedule", "ess_threshold", "resampling", "block_size")
_ROLLOUT_FIELDS = ("rollout_k", "rollout_m", "rollout_h")
for _method in (
    Method(
        "base",
        "ancestral sampling at T = 1",
        _temperature("base"),
        ("max_new_tokens", "seed"),
        "#7f7f7f",
    ),
    Method(
        "lowtemp",
        "token-level temperature T = 1/alpha",
        _temperature("lowtemp"),
        ("alpha", "max_new_tokens", "seed"),
        "#1f77b4",
        bench=False,  # the cost of base: the bench times base
    ),
    Method(
        "smc",
        "Power-SMC targeting pi_alpha ∝ p^alpha",
        _smc,
        (*_SMC_FIELDS, "max_new_tokens", "seed"),
        "#d62728",
    ),
    Method(
        "mh",
        "Metropolis–Hastings power sampling (Karan & Du)",
        _mh,
        ("alpha", "mh_steps", "mh_block_size", "max_new_tokens", "seed"),
        "#2ca02c",
        batches=False,
        static_cache=False,
    ),
    Method(
        "bon",
        "best-of-N: the highest log p(y|x) of N samples",
        _bon,
        ("n_particles", "max_new_tokens", "seed"),
        "#9467bd",
        bench=False,  # N plain samples in one batch: the bench's limit row
    ),
    Method(
        "greedy",
        "greedy decoding: argmax p token by token (the T -> 0 limit)",
        _greedy,
        ("max_new_tokens",),
        "#8c564b",
        bench=False,  # the cost of base
    ),
    Method(
        "rollout",
        "rollout power sampling (Ji et al. 2026): p^alpha·zeta_hat per token, approximate",
        _rollout,
        ("alpha", "n_particles", *_ROLLOUT_FIELDS, "max_new_tokens", "seed"),
        "#e377c2",
        batches=False,  # one record per token
        static_cache=False,  # the batch fans out to N·K·M rollout rows
        bench=False,
        default=False,  # K·M·H forwards per token: chosen on purpose, not by default
        forks=True,
    ),
    Method(
        "lookahead",
        "look-ahead SMC: rollout estimates of the future power mass twist proposal and "
        "resampling (exact for pi_alpha)",
        _lookahead,
        (*_SMC_FIELDS, *_ROLLOUT_FIELDS, "lookahead_epsilon", "max_new_tokens", "seed"),
        "#17becf",
        static_cache=False,  # the rollouts fork N·K·M rows; a static cache holds N
        bench=False,  # K·M·H forwards per boundary: timed on purpose, not in every bench
        default=False,  # K·M·H forwards per boundary and particle: chosen on purpose
        forks=True,
    ),
):
    register(_method)
del _method
