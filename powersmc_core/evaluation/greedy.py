"""Greedy decoding, the evaluation's deterministic baseline: y_t = argmax_v p(v | x, y_<t).

It is the T -> 0 limit of token-level temperature sampling, written as its own loop
because T = 0 is not a proposal the sampler can weight. One row, one forward per
token; it stops at EOS, at the stop rule (``\\boxed{}`` on text tasks) or after
``max_new_tokens`` tokens, and returns an ``SMCResult`` with one completion of weight 1,
so the harness grades it like every other method. Ties go to the lowest token id.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import torch

from ..models.base import LanguageModel
from ..records import SMCResult
from ..stopping import StopRule
from ..text import ParticleTexts

__all__ = ["GreedyDecoding"]


class GreedyDecoding:
    """Argmax decoding with ``run(prompt) -> SMCResult`` (``stream`` is not offered)."""

    method = "greedy"

    def __init__(
        self, model: LanguageModel, max_new_tokens: int = 128, stop: StopRule | None = None
    ) -> None:
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.stop = stop

    def run(self, prompt: Sequence[int]) -> SMCResult:
        start = time.perf_counter()
        model = self.model
        eos = set(model.eos_token_ids)
        stop = copy.deepcopy(self.stop)  # stop rules keep per-run state
        if stop is not None:
            stop.reset(1)
        texts = ParticleTexts(model.decode_batch, 1)
        state, logp = model.start(list(prompt), 1)  # logp: (1, V)
        tokens: list[int] = []
        log_p, finished, forwards = 0.0, False, 0
        for t in range(1, self.max_new_tokens + 1):
            token = int(torch.argmax(logp[0]))
            log_p += float(logp[0, token])
            forwards += 1
            if token in eos:  # log p includes EOS, the completion does not
                finished = True
                break
            tokens.append(token)
            pieces = texts.push([token], [True])
            if stop is not None and stop.update(pieces)[0]:
                finished = True
                break
            if t < self.max_new_tokens:
                feed = torch.tensor([token], device=model.device)
                live = torch.ones(1, dtype=torch.bool, device=model.device)
                state, logp = model.advance(state, feed, live)
        return SMCResult(
            completions=[tokens],
            weights=[1.0],
            chosen=0,
            log_p=[log_p],
            log_z=float("nan"),
            n_resamples=0,
            ess_trace=[],
            finished=[finished],
            n_steps=forwards,
            elapsed=time.perf_counter() - start,
            texts=[model.decode_batch([tokens])[0]],
            method="greedy",
            extras={"token_forwards": forwards},
        )
