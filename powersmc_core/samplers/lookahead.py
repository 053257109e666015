"""``LookaheadSMC``: Power-SMC with a look-ahead proposal and twisted resampling (an APF).

The maths is in ``engine/lookahead.py``; this is the configuration that hands it to the
engine's step: the same loop, records and result as ``PowerSMC``, plus
``result.extras["lookahead"]`` (the boundaries: candidates, their ζ̂, the offspring).
Token forwards count the rollout rows.

Backends: the rollouts fork the particles' model state into N·K·M rows
(``models.forking.fork``) and advance the forks, which leave the particles' state
untouched. The toy's reorder returns a fresh state; the transformer backend forks a deep
copy of its cache (not a static cache: it has exactly N rows); llama.cpp forks into a new
context by cell-exact copies, up to 256 rows (``models.forking.fork_refusal`` says why not).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.lookahead import Lookahead, LookaheadConfig
from powersmc_core.engine.run import PowerSMC, SMCRun
from powersmc_core.engine.step import Parts
from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.forking import fork_refusal

__all__ = ["LookaheadSMC", "supports_lookahead"]


def supports_lookahead(model: LanguageModel) -> bool:
    """Whether the rollouts can fork this backend's state (see ``fork_refusal``)."""
    return fork_refusal(model) is None


class LookaheadSMC(PowerSMC):
    """Look-ahead SMC targeting pi_alpha ∝ p^alpha; K, M, H in ``lookahead``."""

    method = "lookahead"

    def __init__(
        self,
        model: LanguageModel,
        config: SMCConfig | None = None,
        lookahead: LookaheadConfig | None = None,
        stop: StopRule | None = None,
        track_text: bool = True,
        stream_every: int = 1,
    ) -> None:
        look = lookahead if lookahead is not None else LookaheadConfig()
        n = (config or SMCConfig()).n_particles
        rows = n * min(look.k, getattr(model, "vocab_size", look.k)) * look.m  # N·K·M
        refusal = fork_refusal(model, rows)
        if refusal is not None:
            raise ValueError(refusal)
        super().__init__(model, config, stop=stop, track_text=track_text, stream_every=stream_every)
        self.lookahead = look

    def parts(self) -> Parts:
        """PowerSMC's parts plus a fresh look-ahead strategy (it keeps the run's trace)."""
        return dataclasses.replace(super().parts(), lookahead=Lookahead(self.lookahead))

    def stream(self, prompt: Sequence[int]) -> SMCRun:
        return SMCRun(self, prompt)
