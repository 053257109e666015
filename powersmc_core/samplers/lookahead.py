"""``LookaheadSMC``: Power-SMC with a look-ahead proposal and twisted resampling (an APF).

The maths is in ``engine/lookahead.py``; this is the configuration that hands it to the
engine's step: the same loop, records and result as ``PowerSMC``, plus
``result.extras["lookahead"]`` (the boundaries: candidates, their ζ̂, the offspring).
Token forwards count the rollout rows.

Backends: the rollouts fork the particles' model state into N·K·M rows with ``reorder``
and advance the forks, so the backend's ``reorder`` must return an independent state and
leave the original untouched. The toy model does; the transformer backend's reorder
remaps or rewrites one shared KV cache in place, and llama.cpp's context has a fixed
number of sequences (N), so both are refused with a message rather than corrupting the
particles.
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
from powersmc_core.models.toy import ToyLM

__all__ = ["LookaheadSMC", "supports_lookahead"]


def supports_lookahead(model: LanguageModel) -> bool:
    """Whether the backend's ``reorder`` forks independent rows (rollouts need it)."""
    return isinstance(model, ToyLM)


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
        if not supports_lookahead(model):
            raise ValueError(
                f"look-ahead SMC forks rollouts with the backend's reorder, which must leave "
                f"the particles' state untouched; {type(model).__name__} ({model.name}) shares "
                "one cache between forks (the transformer backend) or has a fixed number of "
                "sequences (llama.cpp: N), so only the toy model is supported for now"
            )
        super().__init__(model, config, stop=stop, track_text=track_text, stream_every=stream_every)
        self.lookahead = lookahead if lookahead is not None else LookaheadConfig()

    def parts(self) -> Parts:
        """PowerSMC's parts plus a fresh look-ahead strategy (it keeps the run's trace)."""
        return dataclasses.replace(super().parts(), lookahead=Lookahead(self.lookahead))

    def stream(self, prompt: Sequence[int]) -> SMCRun:
        return SMCRun(self, prompt)
