"""Greedy decoding, the deterministic baseline: y_t = argmax_v p(v | x, y_<t).

It is the T -> 0 limit of token-level temperature sampling: q_T ∝ p^(1/T) tends to the
point mass on the most likely token. T = 0 is not a proposal a weighted sampler can
score, so greedy is ``TemperatureSampling``'s configuration for one row with the
proposal ``ArgmaxProposal`` (ties go to the lowest token id):

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

from powersmc_core.engine.proposals import ArgmaxProposal
from powersmc_core.engine.run import SMCRun
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
            n_particles=1,
            max_new_tokens=max_new_tokens,
            seed=0,  # nothing is random
            stop=stop,
            track_text=track_text,
            stream_every=stream_every,
        )
        self.temperature = 0.0
        self.method = "greedy"
        self.proposal = ArgmaxProposal()  # log q = 0: the result has no log Ẑ, no ESS trace


# Greedy streams the same run as every SMC configuration (its proposal differs).
GreedyRun = SMCRun
