"""One SMC step as a function: (parts, state, t, generator) -> (next state, staged record).

    y_t ~ q_t                               propose   (parts.proposal)
    log W += log G_t, log Ẑ += log sum W G  reweight  (parts.target)
    A, W ~ resample(W) when ESS < kappa·N   resample  (parts.resampler, every block_size)
    slot j continues A_j with y_t           advance   (one batched model forward)
    Pending(...)                            stage the record (read back by the run loop)

With ``parts.lookahead`` (look-ahead SMC, ``lookahead.py``) the proposal is the twisted
one whenever the state carries a twist, and at a block boundary the survivors are
advanced first, then looked ahead from and resampled on W·ζ̂ (an auxiliary particle filter).

Everything stays on the device. The one host-side input is ``reader``: the run loop
passes it when it reads every token (stream_every = 1); it turns the tokens into texts
and stop-rule decisions at once, and lets the step skip a no-op reorder and the forward
after the last step. Without it, every decision stays a device tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from powersmc_core.engine.choosers import Chooser
from powersmc_core.engine.proposals import Proposal
from powersmc_core.engine.resampling import Resampler
from powersmc_core.engine.schedules import Schedule
from powersmc_core.engine.staging import Draw, Pending, compute_dtype, write_history
from powersmc_core.engine.state import ParticleState
from powersmc_core.engine.targets import Target
from powersmc_core.engine.tempering import log_power_mass, renyi_entropy
from powersmc_core.engine.weights import ess_tensor, reweight
from powersmc_core.models.base import LanguageModel

__all__ = ["Parts", "Reader", "feed_tokens", "neutral_rows", "propose", "step"]

# (tokens, grows) -> (stopped or None, texts or None): the per-token host read.
Reader = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor | None, tuple | None]]


@dataclass(frozen=True)
class Parts:
    """What a run is made of: the model, the strategies, and the loop's fixed numbers.

    ``resampler`` None means never resample (the baselines); ``ess_threshold`` is kappa.
    """

    model: LanguageModel
    proposal: Proposal
    target: Target
    schedule: Schedule
    resampler: Resampler | None
    chooser: Chooser
    max_new_tokens: int
    block_size: int
    ess_threshold: float
    eos: torch.Tensor  # (E,) token ids
    lookahead: Any = None  # engine.lookahead.Lookahead: twisted proposal and resampling


def step(
    parts: Parts,
    state: ParticleState,
    t: int,
    generator: torch.Generator,
    reader: Reader | None = None,
) -> tuple[ParticleState, Pending]:
    """Decode token t for every particle; returns the next state and the step's record."""
    active = ~state.finished
    logp = neutral_rows(state.logp, active)  # (N, V)
    increment = predictive_increment(state, logp, active)
    alpha_t = parts.schedule.next_alpha(t, state.alpha, state.log_w, increment)
    # Propose y_t ~ q_t and grow y_1:t (EOS and stop rules finish particles).
    tau = parts.proposal.temperature(alpha_t)
    if parts.lookahead is not None and t == 1:  # the first boundary: before any token
        state = parts.lookahead.first(parts, state, alpha_t, generator)
    if state.twist is None:
        draw = propose(parts.proposal, logp, active, tau, generator)
    else:
        draw = parts.lookahead.draw(logp, state.twist, active, alpha_t, tau, generator)
    renyi = renyi_rows(logp, active, alpha_t, tau, draw.log_mass, state.log_w.dtype)
    grown, grows, texts = grow(parts, state, draw, t, reader)
    last = t >= parts.max_new_tokens
    done = state.live & (grown.finished.all() | last)
    # Reweight by G_t; steps decoded past the end (at most stream_every - 1) change nothing.
    log_inc = parts.target.log_increment(state, grown, draw, alpha_t, done)
    log_inc = torch.where(state.live, log_inc, 0.0)
    weighted, weights_ok = reweight_state(grown, log_inc)
    ess = ess_tensor(weighted.log_w)
    # Resample, then advance the survivors; the record describes the slots before both.
    if parts.lookahead is not None:
        resampled, ancestors, moved = look_ahead(
            parts, weighted, draw.tokens, t, alpha_t, done, generator, reader
        )
    else:
        resampled, ancestors, moved = resample(parts, weighted, t, ess, done, generator, reader)
        if not (last or (reader is not None and bool(done))):
            moved = advance(parts, moved, draw.tokens, ancestors)
    scalars = (ess, weighted.log_z, done, resampled, draw.ok, weights_ok)  # see SCALARS
    pending = Pending(
        step=t,
        alpha=float(alpha_t),
        tau=float(tau),
        tokens=draw.tokens,
        grows=grows,
        log_w=weighted.log_w,
        log_inc=log_inc,
        renyi=renyi,
        log_p=weighted.log_p,
        finished=weighted.finished,
        roots=weighted.roots,
        ancestors=ancestors,
        scalars=torch.stack([v.to(state.log_w.dtype) for v in scalars]),  # no float64 on MPS
        texts=texts,
    )
    return moved.replace(alpha=alpha_t, live=state.live & ~done), pending


def neutral_rows(logp: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """A copy of the (N, V) log-probs in the compute dtype, finished rows set to 0."""
    # Finished rows may hold stale or NaN logits; give them a harmless uniform row.
    out = logp.to(compute_dtype(logp), copy=True)
    return out.masked_fill_(~active[:, None], 0.0)


def propose(
    proposal: Proposal,
    logp: torch.Tensor,
    active: torch.Tensor,
    tau: float,
    generator: torch.Generator,
) -> Draw:
    """y_t ~ q_tau(. | y_<t) for every active row of ``neutral_rows``' output (-1 if finished).

    The one token draw of a step: SMC's ``step`` and the bench's bare decode loop
    (``bench.wrappers.decode_limit``) both call it, so the loop's floor draws exactly as
    SMC does (same tensors, dtype, generator stream) and SMC / limit measures only the
    weights, ESS and resampling.
    """
    return proposal.draw(logp, active, tau, generator)


def feed_tokens(tokens: torch.Tensor, still: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
    """What each slot feeds the model next: its token where ``still`` growing, else EOS[0].

    Finished rows are not forwarded (``active`` False) but still need a valid id.
    """
    return torch.where(still, tokens, eos[0])


def predictive_increment(
    state: ParticleState, logp: torch.Tensor, active: torch.Tensor
) -> Callable[[float], torch.Tensor]:
    """a -> log G_i(a) = log sum_v p(v|prefix_i)^a + (a - alpha_{t-1})·log p(prefix_i)."""

    def log_increment(a: float) -> torch.Tensor:
        mass = torch.where(active, log_power_mass(logp, a).to(state.log_w.dtype), 0.0)
        return mass + (a - state.alpha) * state.log_p

    return log_increment


def renyi_rows(
    logp: torch.Tensor,
    active: torch.Tensor,
    alpha_t: float,
    tau: float,
    log_mass: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor:
    """H_alpha_t of each active row, (N,); NaN for finished rows (a diagnostic only)."""
    # At tau = 1/alpha_t the proposal's normaliser already is log sum_v p^alpha_t.
    if abs(alpha_t - 1.0) > 1e-12 and abs(tau * alpha_t - 1.0) < 1e-12:
        renyi_all = log_mass / (1.0 - alpha_t)
    else:
        renyi_all = renyi_entropy(logp, alpha_t)
    return torch.where(active, renyi_all.to(dtype), torch.nan)


def grow(
    parts: Parts, state: ParticleState, draw: Draw, t: int, reader: Reader | None
) -> tuple[ParticleState, torch.Tensor, tuple | None]:
    """Append y_t: log p(y_1:t) = log p(y_<t) + log p(y_t); EOS and stop rules finish rows.

    Returns (state, grows, texts): which rows took a non-EOS token, and the texts when
    the reader reads them per token (batched steps push their texts at the flush).
    """
    active = ~state.finished
    tokens = draw.tokens
    emitted_eos = active & torch.isin(tokens, parts.eos)
    grows = active & ~emitted_eos
    finished = state.finished | emitted_eos
    texts = None
    if reader is not None:
        stopped, texts = reader(tokens, grows)
        if stopped is not None:
            finished = finished | (grows & stopped)
    grown = state.replace(
        log_p=state.log_p + torch.where(active, draw.lp_token, 0.0),
        history=write_history(state.history, t, tokens, parts.max_new_tokens),
        finished=finished,
        forwards=state.forwards + active.sum(),
    )
    return grown, grows, texts


def reweight_state(
    state: ParticleState, log_inc: torch.Tensor
) -> tuple[ParticleState, torch.Tensor]:
    """W'_i ∝ W_i G_i and log Ẑ += log sum_i W_i G_i while the run is live; (state, ok)."""
    reweighted, log_mean = reweight(state.log_w, log_inc)
    # Past the end, even renormalising by log_mean ≈ 0 would move the weights by an ulp.
    live = state.live
    weighted = state.replace(
        log_w=torch.where(live, reweighted, state.log_w),
        log_z=state.log_z + torch.where(live, log_mean, 0.0),
    )
    return weighted, torch.isfinite(log_mean)


def resample(
    parts: Parts,
    state: ParticleState,
    t: int,
    ess: torch.Tensor,
    done: torch.Tensor,
    generator: torch.Generator,
    reader: Reader | None,
) -> tuple[torch.Tensor, torch.Tensor, ParticleState]:
    """(resampled, ancestors, state): at block boundaries, resample by W when ESS < kappa·N.

    The scheme returns ancestors and post weights (``Resampled``); a weighted scheme's
    post mass multiplies Ẑ (``ParticleState.reorder``). The draw is made whether or not
    it is used, so every stream_every consumes the same random numbers. Read per token,
    the decision is read at once and a no-op reorder skipped; batched, the reorder
    always runs (with the identity when not due).
    """
    identity = torch.arange(state.n, device=ess.device)
    resampled = torch.zeros((), dtype=torch.bool, device=ess.device)
    boundary = t < parts.max_new_tokens and t % parts.block_size == 0
    if parts.resampler is None or not boundary:
        return resampled, identity, state
    due = state.live & ~done & (ess < parts.ess_threshold * state.n)
    drawn = parts.resampler(state.log_w.exp(), generator)
    if reader is None:
        ancestors = torch.where(due, drawn.ancestors, identity)
        moved = state.reorder(parts.model, ancestors, due, drawn.log_w, drawn.log_mass)
        return due, ancestors, moved
    if not bool(due):
        return due, identity, state
    moved = state.reorder(parts.model, drawn.ancestors, due, drawn.log_w, drawn.log_mass)
    return due, drawn.ancestors, moved


def look_ahead(
    parts: Parts,
    state: ParticleState,
    tokens: torch.Tensor,
    t: int,
    alpha_t: float,
    done: torch.Tensor,
    generator: torch.Generator,
    reader: Reader | None = None,
) -> tuple[torch.Tensor, torch.Tensor, ParticleState]:
    """Look-ahead SMC: advance every slot by y_t, then at a boundary look ahead and resample.

    Advancing before resampling gives the same slots as the other order (a row's forward
    does not depend on its slot) and lets the twist read p(. | y_1:t).
    """
    identity = torch.arange(state.n, device=state.log_w.device)
    unchanged = torch.zeros((), dtype=torch.bool, device=identity.device)
    state = state.replace(twist=None)  # a twist serves one token
    if t >= parts.max_new_tokens or (reader is not None and bool(done)):
        return unchanged, identity, state
    moved = advance(parts, state, tokens, identity)
    if t % parts.block_size != 0:
        return unchanged, identity, moved
    return parts.lookahead.boundary(parts, moved, alpha_t, t, done, generator, reader)


def advance(
    parts: Parts, state: ParticleState, tokens: torch.Tensor, ancestors: torch.Tensor
) -> ParticleState:
    """Feed each surviving slot its token (slot j continues ancestors[j]): one forward."""
    still = ~state.finished
    feed = feed_tokens(tokens[ancestors], still, parts.eos)
    model_state, logp = parts.model.advance(state.model_state, feed, still)
    return state.replace(model_state=model_state, logp=logp)
