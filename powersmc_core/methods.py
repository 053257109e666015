"""Method name -> sampler: the one place the CLI, the app and the evaluation agree on.

``base``: ancestral sampling (T = 1); ``lowtemp``: token-level temperature 1/alpha;
``smc``: Power-SMC; ``mh``: MH power sampling (Karan & Du); ``bon``: best-of-N by log p.
"""

from __future__ import annotations

from typing import Any

from .baselines import BestOfN, MHPowerSampler, TemperatureSampling
from .config import SMCConfig
from .models.base import LanguageModel
from .sampler import PowerSMC
from .stopping import StopRule

__all__ = ["METHODS", "make_sampler"]

METHODS = ("base", "lowtemp", "smc", "mh", "bon")


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
) -> Any:
    """A fresh sampler (stop rules are stateful) with ``run`` and ``stream``.

    ``config`` supplies alpha, N (smc, bon), length, seed and the proposal temperature;
    ``samples`` is how many independent sequences ``base`` / ``lowtemp`` draw;
    ``stream_every`` batches the particle samplers' records (see ``PowerSMC``).
    """
    n, t, seed = config.n_particles, config.max_new_tokens, config.seed
    if method == "smc":
        return PowerSMC(model, config, stop=stop, stream_every=stream_every)
    if method in ("base", "lowtemp"):
        temperature = 1.0 if method == "base" else 1.0 / config.alpha
        return TemperatureSampling(
            model, temperature, samples, t, seed, stop=stop, stream_every=stream_every
        )
    if method == "bon":
        return BestOfN(
            model, n=n, max_new_tokens=t, seed=seed, stop=stop, stream_every=stream_every
        )
    if method == "mh":
        if stream_every != 1:
            raise ValueError(
                f"stream_every={stream_every} applies to the particle samplers "
                "(smc, base, lowtemp, bon); MH streams one record per MH step"
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
