"""Power-SMC Explorer core: sequence-level power sampling pi_alpha ∝ p^alpha by SMC.

from powersmc_core import PowerSMC, SMCConfig, ToyLM
model = ToyLM.random(vocab_size=4, max_len=4, seed=0)
result = PowerSMC(model, SMCConfig(alpha=4.0, n_particles=64, seed=0)).run(prompt=[])
"""

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.records import SMCResult, StepRecord
from powersmc_core.engine.run import PowerSMC, SMCRun
from powersmc_core.engine.stopping import BoxedAnswer, StopStrings, make_stop_rule
from powersmc_core.models import LanguageModel, ToyLM
from powersmc_core.samplers.baselines import (
    BestOfN,
    BestOfNRun,
    MHPowerSampler,
    MHRecord,
    MHRun,
    TemperatureSampling,
)
from powersmc_core.samplers.greedy import GreedyDecoding, GreedyRun

__all__ = [
    "BestOfN",
    "BestOfNRun",
    "BoxedAnswer",
    "GreedyDecoding",
    "GreedyRun",
    "LanguageModel",
    "MHPowerSampler",
    "MHRecord",
    "MHRun",
    "PowerSMC",
    "SMCConfig",
    "SMCResult",
    "SMCRun",
    "StepRecord",
    "StopStrings",
    "TemperatureSampling",
    "ToyLM",
    "make_stop_rule",
]

__version__ = "0.1.0"
