"""Greedy decoding, the deterministic baseline: y_t = argmax_v p(v | x, y_<t).

It is the T -> 0 limit of token-level temperature sampling: q_T ∝ p^(1/T) tends to the
point mass on the most likely token. T = 0 is not a proposal a weighted sampler can
score, so greedy is ``TemperatureSampling``'s machinery for one row with the draw
replaced by the argmax (ties go to the lowest token id):

    run = GreedyDecoding(model, max_new_tokens=64).stream(prompt)
    for record in run:          # one StepRecord per token, one row, tau = 0
        ...
    result = run.result()       # one completion of weight 1

Like every sampler (``methods.Sampler``) it streams frozen records from its own run
object and ``run(prompt)`` consumes them. It stops at EOS, at a stop rule (``\\boxed{}``
on text tasks) or after ``max_new_tokens`` tokens; one forward per token.

The result is what greedy decoding has always returned: ``log_z`` is NaN (a point-mass
proposal estimates no normalising constant) and ``ess_trace`` is empty (one
deterministic path has no effective sample size to trace); ``log_p`` includes EOS
when it is emitted, the completion does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from powersmc_core.engine.records import SMCResult
from powersmc_core.engine.run import SMCRun
from powersmc_core.engine.staging import Draw, nan_error
from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel
from powersmc_core.samplers.baselines import TemperatureSampling

__all__ = ["GreedyDecoding", "GreedyRun"]


class GreedyDecoding(TemperatureSampling):
    """Argmax decoding of one sequence, with ``stream`` (records) and ``run`` (result)."""

    method = "greedy"

    def __init__(
        self,
        model: LanguageModel,
        max_new_tokens: int = 128,
        stop: StopRule | None = None,
        track_text: bool = True,
        stream_every: int = 1,
    ) -> None:
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        super().__init__(
            model,
            temperature=1.0,  # unused: the argmax replaces the draw (see GreedyRun)
            n_particles=1,
            max_new_tokens=max_new_tokens,
            seed=0,  # nothing is random
            stop=stop,
            track_text=track_text,
            stream_every=stream_every,
        )
        self.temperature = 0.0
        self.method = "greedy"

    def proposal_temperature(self, alpha_t: float) -> float:
        return 0.0  # the records say which limit of q_T this is

    def stream(self, prompt: Sequence[int]) -> GreedyRun:
        """One step record per token for the one row; ``result()`` at any time."""
        return GreedyRun(self, prompt)


class GreedyRun(SMCRun):
    """An unweighted one-row run whose proposal is the point mass on argmax_v p(v|prefix)."""

    def _propose(
        self, logp: torch.Tensor, active: torch.Tensor, tau: float, host: bool, t: int
    ) -> Draw:
        """y = argmax_v log p(v) per row (-1 if finished); log q(y) = 0 (a point mass)."""
        # log sum_v p(v) is NaN when a row is: the same finiteness check as every draw.
        log_mass = torch.logsumexp(logp, dim=-1)  # (N,)
        ok = torch.isfinite(log_mass).all()
        if host and not bool(ok):
            raise nan_error(self.model.name, t)
        tokens = torch.argmax(logp, dim=-1)  # (N,) the first maximum: ties to the lowest id
        lp_token = logp.gather(1, tokens[:, None]).squeeze(1).to(self._wdtype)
        lq_token = torch.zeros_like(lp_token)
        tokens = torch.where(active, tokens, -1)
        return Draw(tokens, lp_token, lq_token, log_mass, ok)

    def result(self) -> SMCResult:
        """The one completion, weight 1; no log Ẑ (NaN) and no ESS trace (see module)."""
        return replace(super().result(), log_z=math.nan, ess_trace=[])
