"""Method name -> sampler: the one place the CLI, the app and the evaluation agree on.

``base``: ancestral sampling (T = 1); ``lowtemp``: token-level temperature 1/alpha;
``smc``: Power-SMC; ``mh``: MH power sampling (Karan & Du); ``bon``: best-of-N by log p;
``greedy``: argmax p token by token (the T -> 0 limit, ``greedy.py``).

Every sampler has the same run interface (``Sampler``): ``stream(prompt)`` returns a run
object, an iterator of frozen records (``StepRecord``; ``MHRecord`` for MH) whose
``result()`` is the ``SMCResult`` at any time, and ``run(prompt)`` consumes it. A caller that
watches the records iterates the run and then calls ``result()``; it never needs to patch
``stream`` or redo a sampler's choice (best-of-N's argmax lives in its run's ``result()``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.records import SMCResult
from powersmc_core.engine.run import PowerSMC
from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel
from powersmc_core.samplers.baselines import BestOfN, MHPowerSampler, TemperatureSampling
from powersmc_core.samplers.greedy import GreedyDecoding

__all__ = ["DESCRIPTIONS", "METHODS", "Run", "Sampler", "make_sampler"]

METHODS = ("base", "lowtemp", "smc", "mh", "bon", "greedy")
DESCRIPTIONS = {
    "base": "ancestral sampling at T = 1",
    "lowtemp": "token-level temperature T = 1/alpha",
    "smc": "Power-SMC targeting pi_alpha ∝ p^alpha",
    "mh": "Metropolis–Hastings power sampling (Karan & Du)",
    "bon": "best-of-N: the highest log p(y|x) of N samples",
    "greedy": "greedy decoding: argmax p token by token (the T -> 0 limit)",
}


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


def make_sampler(
    method: str,
    model: LanguageModel,
    config: SMCConfig,
    *,
    stop: StopRule | None = None,
    samples: int = 1,
    mh_steps: int = 10,
    mh_block_size: int | None = None,
    stream_every: int = 1,
) -> Sampler:
    """A fresh sampler (stop rules are stateful) with ``run`` and ``stream``.

    ``config`` supplies alpha, N (smc, bon), length, seed and the proposal temperature
    (greedy reads the length only); ``samples`` is how many independent sequences
    ``base`` / ``lowtemp`` draw;
    ``stream_every`` batches the particle samplers' records (see ``PowerSMC``).
    """
    n, t, seed = config.n_particles, config.max_new_tokens, config.seed
    if method == "smc":
        return PowerSMC(model, config, stop=stop, stream_every=stream_every)
    if method in ("base", "lowtemp"):
        temperature = 1.0 if method == "base" else 1.0 / config.alpha
        return TemperatureSampling(
            model,
            temperature,
            n_particles=samples,
            max_new_tokens=t,
            seed=seed,
            stop=stop,
            stream_every=stream_every,
        )
    if method == "bon":
        return BestOfN(
            model, n_particles=n, max_new_tokens=t, seed=seed, stop=stop, stream_every=stream_every
        )
    if method == "greedy":
        return GreedyDecoding(model, max_new_tokens=t, stop=stop, stream_every=stream_every)
    if method == "mh":
        if stream_every != 1:
            raise ValueError(
                f"stream_every={stream_every} applies to the particle samplers "
                "(smc, base, lowtemp, bon, greedy); MH streams one record per MH step"
            )
        return MHPowerSampler(
            model,
            alpha=config.alpha,
            max_new_tokens=t,
            block_size=mh_block_size,
            mh_steps=mh_steps,
            seed=seed,
            proposal_temperature=config.proposal_temperature,
            stop=stop,
        )
    raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
