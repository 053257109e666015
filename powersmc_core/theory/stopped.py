"""What a stop rule does to the target, computed exactly by enumeration.

A particle stopped by a stop string (or ``\\boxed{}``) is final: it stops growing and keeps
weight P(prefix)^alpha. So under a stop rule the samplers target the power of the *stopped*
law, pi_stop(y) ∝ P_stop(y)^alpha, where P_stop(y) = p(y) is the probability of reaching the
stop point y (all continuations after it summed out). That is not "pi_alpha over complete
sequences, then cut at the stop string", which raises each continuation's probability to
alpha before summing them: sum_c p(y c)^alpha ≤ (sum_c p(y c))^alpha. The more a stopped
prefix's continuations spread, the more the cut law undervalues it.

On ``ToyLM.trap()`` with stop string "A" and alpha = 4 the two laws are at TV 0.663: the
stopped law puts 0.885 on "A" (P = 0.6), the cut law 0.222 (A's three endings, 0.2 each,
lose to "B x" once raised to the 4th power).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel
from powersmc_core.theory.exact import (
    cut_distribution,
    enumerate_sequences,
    power_distribution,
    total_variation,
)

__all__ = ["StoppedLawTargets", "stopped_law_targets"]


@dataclass(frozen=True)
class StoppedLawTargets:
    """The two candidate targets under a stop rule, over the stopped completions (S,)."""

    alpha: float
    labels: list[str]  # decoded tokens, "(empty)" for none
    endings: list[str]  # "eos", "stop" or "length"
    stopped_p: np.ndarray  # P_stop(y): the law of the stopped process
    sampler_target: np.ndarray  # P_stop(y)^alpha / Z: what PowerSMC and MH target
    cut_target: np.ndarray  # pi_alpha over completions without the rule, cut at its first firing
    tv: float  # TV(sampler_target, cut_target)

    def frame(self) -> pd.DataFrame:
        """One row per stopped completion, sorted by the sampler's target (largest first)."""
        df = pd.DataFrame(
            {
                "sequence": self.labels,
                "ending": self.endings,
                "p_stopped": self.stopped_p,
                "sampler_target": self.sampler_target,
                "cut_target": self.cut_target,
            }
        )
        return df.sort_values("sampler_target", ascending=False, ignore_index=True)


def stopped_law_targets(
    model: LanguageModel,
    alpha: float,
    stop: StopRule,
    prompt: Sequence[int] = (),
    max_new_tokens: int | None = None,
) -> StoppedLawTargets:
    """Exact pi_stop ∝ P_stop^alpha (the samplers' target under ``stop``) beside
    "pi_alpha, then cut at the stop rule", with their total variation.

    Both are laws over the completions enumerated *with* the rule; max_new_tokens defaults
    to the model's length (``enumerate_sequences``).
    """
    stopped = enumerate_sequences(model, prompt, max_new_tokens=max_new_tokens, stop=stop)
    full = enumerate_sequences(model, prompt, max_new_tokens=max_new_tokens)
    target = power_distribution(stopped, alpha)
    cut = cut_distribution(model, full, power_distribution(full, alpha), stopped, stop)
    texts = model.decode_batch([list(s) for s in stopped.sequences])
    return StoppedLawTargets(
        alpha=float(alpha),
        labels=[t if t else "(empty)" for t in texts],
        endings=list(stopped.endings),
        stopped_p=stopped.log_p.exp().numpy(),
        sampler_target=target.numpy(),
        cut_target=cut.numpy(),
        tv=total_variation(target, cut),
    )
