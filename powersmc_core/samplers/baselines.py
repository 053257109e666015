"""Baselines on the same model protocol and in the same streaming style.

- ``TemperatureSampling``: N independent sequences from q ∝ p^(1/T) token by token
  (T = 1: plain ancestral sampling; T = 1/alpha: token-level low temperature).
  It is the SMC loop with uniform weights and no resampling.
- ``BestOfN``: N ancestral samples, keep the one with the highest log p(y|x).
- ``MHPowerSampler``: Metropolis–Hastings power sampling (Karan & Du, 2025), in ``mh.py``
  (re-exported here).

Both are configurations of the SMC engine, not subclasses of its run: the proposal
``TemperedProposal(T)``, the target ``UnweightedTarget`` (G = 1) and no resampling;
best-of-N only swaps the chooser for ``MaxLogP``. ``stream(prompt)`` returns the same
``SMCRun`` (an iterator of frozen records with ``result()``), so a caller that streams the
records gets the same result as ``run``.
"""

from __future__ import annotations

from powersmc_core.engine.choosers import MaxLogP
from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.proposals import TemperedProposal
from powersmc_core.engine.run import PowerSMC, SMCRun
from powersmc_core.engine.stopping import StopRule
from powersmc_core.engine.targets import UnweightedTarget
from powersmc_core.models.base import LanguageModel
from powersmc_core.samplers.mh import MHPowerSampler, MHRecord, MHRun

__all__ = ["BestOfN", "BestOfNRun", "MHPowerSampler", "MHRecord", "MHRun", "TemperatureSampling"]


# Best-of-N streams the same run as every SMC configuration (its chooser differs).
BestOfNRun = SMCRun


class TemperatureSampling(PowerSMC):
    """Token-level temperature sampling of ``n_particles`` independent sequences.

    q ∝ p^(1/T) per token, G = 1, never resampled: N i.i.d. draws of the proposal.
    """

    method = "temperature"

    def __init__(
        self,
        model: LanguageModel,
        temperature: float = 1.0,
        n_particles: int = 1,
        max_new_tokens: int = 128,
        seed: int = 0,
        stop: StopRule | None = None,
        track_text: bool = True,
        stream_every: int = 1,
    ) -> None:
        config = SMCConfig(
            alpha=1.0,
            n_particles=n_particles,
            ess_threshold=0.0,
            proposal_temperature=temperature,
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
        super().__init__(model, config, stop=stop, track_text=track_text, stream_every=stream_every)
        self.temperature = config.proposal_temperature
        self.method = "base" if self.temperature == 1.0 else "lowtemp"
        self.proposal = TemperedProposal(self.temperature)
        self.target = UnweightedTarget()


class BestOfN(TemperatureSampling):
    """N ancestral samples at temperature 1; ``chosen`` is the argmax of log p(y|x)."""

    method = "bon"

    def __init__(self, model: LanguageModel, n_particles: int = 8, **kwargs) -> None:
        super().__init__(model, temperature=1.0, n_particles=n_particles, **kwargs)
        self.method = "bon"
        self.chooser = MaxLogP()
