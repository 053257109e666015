"""``LookaheadSMC``: Power-SMC with a look-ahead proposal and twisted resampling (an APF).

The maths is in ``engine/lookahead.py``; this is the configuration that hands it to the
engine's step: the same loop, records and result as ``PowerSMC``, plus
``result.extras["lookahead"]`` (the boundaries: candidates, their ζ̂, the offspring).
Token forwards count the rollout rows.

Backends: the rollouts fork the particles' model state into N·K·M rows with ``reorder``
and advance the forks, which must leave the particles' state untouched. The toy's reorder
returns a fresh state; the transformer backend's rewrites one shared KV cache in place, so
the rollouts fork a deep copy of it (not with a static cache: it has exactly N rows);
llama.cpp's context holds a fixed number of sequences (N) and is refused with a message
(``engine.lookahead.fork_refusal``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.lookahead import Lookahead, LookaheadConfig, fork_refusal
from powersmc_core.engine.run import PowerSMC, SMCRun
from powersmc_core.engine.step import Parts
from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel

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
        refusal = fork_refusal(model)
        if refusal is not None:
            raise ValueError(refusal)
        super().__init__(model, config, stop=stop, track_text=track_text, stream_every=stream_every)
        self.lookahead = lookahead if lookahead is not None else LookaheadConfig()

    def parts(self) -> Parts:
        """PowerSMC's parts plus a fresh look-ahead strategy (it keeps the run's trace)."""
        return dataclasses.replace(super().parts(), lookahead=Lookahead(self.lookahead))

    def stream(self, prompt: Sequence[int]) -> SMCRun:
        return SMCRun(self, prompt)
