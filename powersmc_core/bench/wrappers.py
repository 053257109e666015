"""Model wrappers and the bare decoding loop the benchmark times against.

- ``SuppressEOS``: p'(v|y) = p(v|y)·1[v ∉ EOS] / (1 − p(EOS|y)), so every method decodes
  exactly T tokens and their times compare like for like;
- ``Timed`` + ``Clock``: the wall time spent inside start/advance/reorder (CPU only:
  on an accelerator calls return before their kernels finish);
- ``decode_limit``: SMC's own token draw and batched forwards without weights, ESS or
  resampling: the floor, so SMC / limit is the cost of SMC's own work;
- ``synchronise``: wait for the device's queued work before reading a clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.run import PowerSMC
from powersmc_core.engine.step import feed_tokens, neutral_rows, propose
from powersmc_core.models.base import LanguageModel, ModelState

__all__ = [
    "Clock",
    "LimitRun",
    "SuppressEOS",
    "Timed",
    "clocked",
    "decode_limit",
    "synchronise",
]


class _Wrapper:
    """A ``LanguageModel`` that passes every call to ``inner``; subclasses change some."""

    def __init__(self, model: LanguageModel) -> None:
        self.inner = model
        # The protocol's plain attributes, copied: the sampler reads them on hot paths.
        self.eos_token_id = model.eos_token_id
        self.eos_token_ids = tuple(model.eos_token_ids)
        self.vocab_size = model.vocab_size
        self.device = model.device
        self.name = model.name

    def start(self, prompt: Sequence[int], n: int) -> tuple[ModelState, torch.Tensor]:
        return self.inner.start(prompt, n)

    def advance(
        self, state: ModelState, tokens: torch.Tensor, active: torch.Tensor
    ) -> tuple[ModelState, torch.Tensor]:
        return self.inner.advance(state, tokens, active)

    def reorder(self, state: ModelState, ancestors: torch.Tensor) -> ModelState:
        return self.inner.reorder(state, ancestors)

    def decode_batch(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        return self.inner.decode_batch(sequences)

    def next_token_logprobs(self, prefix: Sequence[int]) -> torch.Tensor:
        return self.inner.next_token_logprobs(prefix)

    def __getattr__(self, name: str) -> Any:
        # Anything else (tokenizer, encode_prompt, token_names) is the wrapped model's.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class SuppressEOS(_Wrapper):
    """Model wrapper with p'(v|y) = p(v|y)·1[v ∉ EOS] / (1 − p(EOS|y)): EOS can never be drawn.

    Every method then decodes exactly T tokens, so their times compare like for
    like. One ``index_fill`` + ``logsumexp`` over the (n, V) rows per call; half
    precision rows are renormalised in float32 (the sampler upcasts them anyway).
    """

    def __init__(self, model: LanguageModel) -> None:
        super().__init__(model)
        self._eos = torch.tensor(self.eos_token_ids, dtype=torch.long, device=model.device)

    def _mask(self, logp: torch.Tensor) -> torch.Tensor:
        if logp.dtype in (torch.float16, torch.bfloat16):
            logp = logp.float()
        masked = logp.index_fill(-1, self._eos, -math.inf)  # (n, V), a new tensor
        return masked - torch.logsumexp(masked, dim=-1, keepdim=True)

    def start(self, prompt: Sequence[int], n: int) -> tuple[ModelState, torch.Tensor]:
        state, logp = self.inner.start(prompt, n)
        return state, self._mask(logp)

    def advance(
        self, state: ModelState, tokens: torch.Tensor, active: torch.Tensor
    ) -> tuple[ModelState, torch.Tensor]:
        state, logp = self.inner.advance(state, tokens, active)
        return state, self._mask(logp)

    def next_token_logprobs(self, prefix: Sequence[int]) -> torch.Tensor:
        return self._mask(self.inner.next_token_logprobs(prefix)[None])[0]


class Clock:
    """Seconds spent inside model calls, accumulated by ``Timed`` wrappers."""

    def __init__(self) -> None:
        self.seconds = 0.0


def clocked(fn: Callable[..., Any], clock: Clock) -> Callable[..., Any]:
    """``fn``, adding the wall time of every call to ``clock.seconds``."""

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            clock.seconds += time.perf_counter() - start

    return timed


class Timed(_Wrapper):
    """Protocol wrapper adding the wall time of start/advance/reorder to a ``Clock``.

    Splits a method's time into the model's share and everything else (sampling,
    weights, records). Meaningful on CPU only: on an accelerator the calls return
    before the kernels finish, so the bench does not use it there.
    """

    def __init__(self, model: LanguageModel, clock: Clock) -> None:
        super().__init__(model)
        self.clock = clock
        # Instance attributes: they take the place of _Wrapper's pass-through methods.
        self.start = clocked(model.start, clock)
        self.advance = clocked(model.advance, clock)
        self.reorder = clocked(model.reorder, clock)


@dataclass(frozen=True)
class LimitRun:
    """What ``decode_limit`` decoded: tokens (n, T) (-1 after a row finished) and the
    particle-token forwards (0-d long, as ``ParticleState.forwards`` counts them)."""

    tokens: torch.Tensor
    forwards: torch.Tensor


def decode_limit(
    model: LanguageModel,
    prompt: Sequence[int],
    n_particles: int,
    max_new_tokens: int,
    seed: int = 0,
    alpha: float = 4.0,
) -> LimitRun:
    """SMC's decode without SMC: start, then T × (draw y_t ~ q_tau, advance), tau = 1/alpha.

    The floor Power-SMC is measured against. It draws exactly as SMC's step does: the
    same ``neutral_rows`` copy (compute dtype, finished rows neutral), the same
    ``propose`` on the run's ``TemperedProposal`` at tau = 1/alpha (the constant
    schedule), the same generator seeded the same way, EOS finishing rows and
    ``feed_tokens`` feeding them, one prefill and T − 1 batched advances. It only leaves
    out the weights, ESS, resampling, history and records, so
    SMC / limit = the cost of SMC's own work. With resampling off (kappa = 0) SMC draws
    the same tokens for the same seed. Nothing is read back to the host per token.
    """
    config = SMCConfig(
        alpha=alpha,
        n_particles=n_particles,
        max_new_tokens=max_new_tokens,
        seed=seed,
        ess_threshold=0.0,
    )
    parts = PowerSMC(model, config, track_text=False).parts()  # SMC's proposal and EOS ids
    tau = parts.proposal.temperature(alpha)
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)  # as SMCRun seeds it
    model_state, logp = model.start(prompt, n_particles)
    finished = torch.zeros(n_particles, dtype=torch.bool, device=device)
    forwards = torch.zeros((), dtype=torch.long, device=device)
    out = torch.empty((n_particles, max_new_tokens), dtype=torch.long, device=device)
    for t in range(1, max_new_tokens + 1):
        active = ~finished
        draw = propose(parts.proposal, neutral_rows(logp, active), active, tau, generator)
        out[:, t - 1] = draw.tokens  # -1 where finished, as SMC records them
        forwards = forwards + active.sum()
        finished = finished | (active & torch.isin(draw.tokens, parts.eos))
        if t < max_new_tokens:  # SMC skips the forward after the last token too
            still = ~finished
            model_state, logp = model.advance(
                model_state, feed_tokens(draw.tokens, still, parts.eos), still
            )
    return LimitRun(out, forwards)


def synchronise(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall-clock interval covers its kernels."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
