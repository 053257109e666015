"""Look-ahead SMC: an auxiliary particle filter whose twist is a rollout estimate of ζ.

At a block boundary (after token t, every ``block_size`` tokens, and before the first
token) each particle i with prefix y = y_1:t looks at its top-K next tokens v (all of
them when K >= V) and estimates the future power mass behind each one by M rollouts of
depth H from the tempered proposal q ∝ p^a (tau = 1/a, a = alpha_t):

    ζ̂_i(v) = 1/M Σ_m Π_s p(c_s)^a / q(c_s),    c ~ q from y v, stopped at EOS or depth H
    E[ζ̂_i(v)] = ζ_H(y v) = Σ_{c, |c| <= H} p(c | y v)^a          (importance sampling)

(the per-token factor is the SMC incremental weight Σ_u p(u)^a, so ζ̂ > 0; ζ̂(EOS) = 1).
Tokens outside the top K get the p^a-weighted mean of the candidates' ζ̂ (any positive
value keeps the method exact; K >= V leaves none). With ψ_i(v) = p(v | y)^a · ζ̂_i(v) and S_i = Σ_v ψ_i(v):

    first stage:   resample on W_i·S'_i (when its ESS < kappa·N)   log Ẑ += log Σ_i W_i S'_i
    second stage:  W_j ∝ W^post_j / S'_{A_j}                       log Ẑ += log Σ_j W^post_j / S'_{A_j}
    next token:    v ~ q_i(v) = (1 − ε)·ψ_i(v)/S_i + ε·p(v)^a/Σ_u p(u)^a,
                   log G = a_{t+1}·log p(v) − log q_i(v) + bridging

with S'_i = (1 − ε)·S_i + ε·Σ_u p(u)^a. A rare token whose continuation is confident is
proposed ∝ its estimated future mass, not ∝ p(v)^a; the defensive share ε of Power-SMC's
own proposal and one-step mass keeps the method close to Power-SMC where ζ̂ misjudges a
token (a stop rule, which the rollouts cannot read, ends a sequence they see continue). Conditionally on the rollouts every stage is an exact importance or
resampling step, so for any ζ̂ > 0 the particles stay properly weighted for pi_alpha and
E[Ẑ] = Z; a good ζ̂ only lowers the variance. (Stop rules and the length cap are seen by
the rollouts only through EOS and the remaining depth: ζ̂ is then a cruder twist, still exact.)

Cost per boundary: N·K + (active rollout rows) token forwards for each of the H rollout
steps, N·K·M rows at most; the batch is forked (``models.forking.fork``: a new state, the
particles' untouched) and advanced by one batched ``advance`` per rollout step (a Python
loop over depth only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from powersmc_core.engine.config import range_message
from powersmc_core.engine.staging import Draw, compute_dtype
from powersmc_core.engine.tempering import draw_rows
from powersmc_core.engine.weights import ess_tensor, reweight
from powersmc_core.models import forking
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.device import weight_dtype
from powersmc_core.models.forking import fork_refusal

__all__ = ["Boundary", "Lookahead", "LookaheadConfig", "fork_refusal", "future_mass"]

SHOW_TOKENS = 3  # candidates kept per particle in the boundary trace
SHOW_PARTICLES = 16  # particles kept per boundary in the trace
FUTURES = ("step", "final")  # the exponent of the rollouts' ζ̂: alpha_t or the final alpha


def _integer(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if not low <= value <= high:
        raise ValueError(range_message(name, value, low, high))


@dataclass(frozen=True)
class LookaheadConfig:
    """K candidate tokens, M rollouts each, depth H (the block size is SMCConfig's); epsilon:
    the defensive share of Power-SMC's proposal p^a in the look-ahead proposal; future: the
    exponent the rollouts value the future at, ``"step"`` (alpha_t, the intermediate
    target's) or ``"final"`` (alpha: under a bridging schedule the twist then aims at
    pi_alpha's future mass; exact either way, since any ζ̂ > 0 keeps the APF exact)."""

    k: int = 4
    m: int = 4
    h: int = 4
    epsilon: float = 0.1
    future: str = "step"

    def __post_init__(self) -> None:
        _integer("lookahead_k", self.k, 1, 64)
        _integer("lookahead_m", self.m, 1, 256)
        _integer("lookahead_h", self.h, 1, 64)
        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 <= eps < 1:
            raise ValueError(f"lookahead_epsilon must be in [0, 1); got {eps!r}")
        object.__setattr__(self, "epsilon", float(eps))
        if self.future not in FUTURES:
            raise ValueError(f"lookahead_future must be one of {FUTURES}; got {self.future!r}")


@dataclass(frozen=True)
class Boundary:
    """What one boundary looked at (host values, first ``SHOW_PARTICLES`` particles).

    candidates[i]: particle i's top ``SHOW_TOKENS`` tokens by ψ = p^a·ζ̂; log_zeta[i]: their
    log ζ̂; offspring[i]: how many slots continue particle i (1 each when not resampled).
    """

    step: int
    candidates: tuple[tuple[int, ...], ...]
    log_zeta: tuple[tuple[float, ...], ...]
    offspring: tuple[int, ...]
    resampled: bool


def future_mass(
    model: LanguageModel,
    model_state: object,
    logp: torch.Tensor,
    active: torch.Tensor,
    alpha: float,
    config: LookaheadConfig,
    remaining: int,
    eos: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log ζ̂ (N, V), token forwards 0-d): the rollout estimate for every next token.

    ``logp`` (N, V) are the particles' next-token log-probs; ``remaining`` the tokens still
    allowed (the candidate included), so rollouts stop at depth min(H, remaining − 1).
    Rows not ``active`` get log ζ̂ = 0.
    """
    n, vocab = logp.shape
    k, m = min(config.k, vocab), config.m
    depth = max(0, min(config.h, remaining - 1))
    wdtype = weight_dtype(logp.device)
    lp_top, cand = logp.topk(k, dim=-1)  # (N, K)
    grows = active[:, None] & ~torch.isin(cand, eos) & torch.isfinite(lp_top)  # (N, K)
    grows &= depth > 0
    log_w = torch.zeros(n * k * m, dtype=wdtype, device=logp.device)  # (N·K·M,)
    forwards = torch.zeros((), dtype=torch.long, device=logp.device)
    if depth > 0:
        # Fork: N -> N·K rows take the candidates (one forward), then N·K -> N·K·M rollouts.
        rows = torch.arange(n, device=logp.device).repeat_interleave(k)
        state = forking.fork(model, model_state, rows, room=depth, capacity=n * k * m)
        state, lp = model.advance(state, cand.reshape(-1), grows.reshape(-1))
        forwards = forwards + grows.sum()
        fork = torch.arange(n * k, device=logp.device).repeat_interleave(m)
        state = model.reorder(state, fork)
        alive = grows.reshape(-1)[fork]  # (N·K·M,)
        lp = lp[fork]
        for s in range(depth):
            row = lp.to(compute_dtype(lp), copy=True).masked_fill_(~alive[:, None], 0.0)
            unnorm = row * alpha  # q ∝ p^a (tau = 1/a): the locally optimal proposal
            top = unnorm.amax(dim=-1, keepdim=True)
            tokens, mass = draw_rows((unnorm - top).exp(), generator)
            lp_token = row.gather(1, tokens[:, None]).squeeze(1).to(wdtype)
            lq_token = alpha * lp_token - (top.squeeze(-1).to(wdtype) + mass.log())
            log_w = log_w + torch.where(alive, alpha * lp_token - lq_token, 0.0)  # p^a / q
            alive = alive & ~torch.isin(tokens, eos)
            if s < depth - 1:
                feed = torch.where(alive, tokens, eos[0])
                state, lp = model.advance(state, feed, alive)
                forwards = forwards + alive.sum()
    log_zeta = torch.logsumexp(log_w.view(n, k, m), dim=-1) - math.log(m)  # (N, K)
    # Tokens outside the top K: the p^a-weighted mean of the candidates' ζ̂ (a placeholder).
    lp_w = (alpha * lp_top).to(wdtype)
    rest = torch.logsumexp(lp_w + log_zeta, -1) - torch.logsumexp(lp_w, -1)  # (N,)
    out = rest[:, None].expand(n, vocab).clone()
    out.scatter_(1, cand, log_zeta)
    out[:, eos] = 0.0  # nothing follows EOS: ζ = 1 exactly, candidate or not
    return torch.where(active[:, None], out, 0.0), forwards


class Lookahead:
    """The look-ahead strategy of one run: the twisted proposal and the twisted resampling.

    Fresh per run (``PowerSMC.parts``): it keeps the run's boundary trace.
    """

    def __init__(self, config: LookaheadConfig) -> None:
        self.config = config
        self._trace: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    # -- the proposal: v ~ ψ / S ------------------------------------------------------------
    def draw(
        self,
        logp: torch.Tensor,
        twist: torch.Tensor,
        active: torch.Tensor,
        alpha_t: float,
        tau: float,
        generator: torch.Generator,
    ) -> Draw:
        """v ~ q = (1 − ε)·ψ/S + ε·p^a/Σp^a, ψ = p^alpha_t·ζ̂; log q(v) exact, not sampled.

        The defensive share ε of Power-SMC's own proposal bounds the weights where ζ̂ is
        poor (a stop rule the rollouts cannot read). ``log_mass`` stays log Σ_v p(v)^(1/tau)
        (the Rényi diagnostic reads it).
        """
        wdtype = weight_dtype(logp.device)
        eps = self.config.epsilon
        log_pa = alpha_t * logp.to(wdtype)  # (N, V)
        log_psi = log_pa + twist
        log_q = torch.logaddexp(
            math.log1p(-eps) + log_psi - torch.logsumexp(log_psi, -1, keepdim=True),
            (math.log(eps) if eps > 0 else -math.inf)
            + log_pa
            - torch.logsumexp(log_pa, -1, keepdim=True),
        )
        top = log_q.amax(dim=-1, keepdim=True)
        ok = torch.isfinite(top).all()
        unnorm = (log_q - top).exp().masked_fill_(~ok, 1.0)
        tokens, _ = draw_rows(unnorm, generator)
        lp = logp.gather(1, tokens[:, None]).squeeze(1).to(wdtype)
        lq = log_q.gather(1, tokens[:, None]).squeeze(1)
        log_mass = torch.logsumexp(logp / tau, dim=-1).to(wdtype)
        return Draw(torch.where(active, tokens, -1), lp, lq, log_mass, ok)

    # -- the boundary: rollouts, first stage (×S), resample, second stage (÷S) --------------
    def look(self, parts, state, alpha_t: float, t: int, generator: torch.Generator):
        """The state with ``twist`` = log ζ̂ (N, V) for its next token, rollouts counted.

        ζ̂ is the future mass of p^b with b = alpha_t (``future="step"``) or the schedule's
        final alpha (``"final"``); the proposal's own factor stays p^alpha_t either way.
        """
        active = ~state.finished
        b = parts.schedule.alpha if self.config.future == "final" else alpha_t
        logp = state.logp.to(compute_dtype(state.logp), copy=True)
        logp.masked_fill_(~active[:, None], 0.0)
        twist, forwards = future_mass(
            parts.model,
            state.model_state,
            logp,
            active,
            b,
            self.config,
            parts.max_new_tokens - t,
            parts.eos,
            generator,
        )
        return state.replace(twist=twist, forwards=state.forwards + forwards)

    def first(self, parts, state, alpha_t: float, generator: torch.Generator):
        """The boundary before the first token: look ahead only (the particles are equal)."""
        state = self.look(parts, state, alpha_t, 0, generator)
        identity = torch.arange(state.n, device=state.log_w.device)
        self._record(0, state, alpha_t, identity, torch.zeros((), dtype=torch.bool))
        return state

    def boundary(self, parts, state, alpha_t: float, t: int, done, generator, reader):
        """(resampled, ancestors, state) after token t: look ahead, then the APF resampling.

        ``state`` has already been advanced by y_t (its ``logp`` is p(. | y_1:t)).
        """
        state = self.look(parts, state, alpha_t, t, generator)
        identity = torch.arange(state.n, device=state.log_w.device)
        resampled = torch.zeros((), dtype=torch.bool, device=identity.device)
        if parts.resampler is None:
            self._record(t, state, alpha_t, identity, resampled)
            return resampled, identity, state
        active = ~state.finished
        logp = state.logp.to(state.twist.dtype)
        log_pa = alpha_t * logp.masked_fill(~active[:, None], 0.0)  # (N, V)
        log_s = self._defensive(torch.logsumexp(log_pa + state.twist, -1), log_pa)
        log_s = torch.where(active, log_s, 0.0)  # (N,) log S_i (1 once finished)
        twisted, log_first = reweight(state.log_w, log_s)  # first stage: W·S
        due = state.live & ~done & (ess_tensor(twisted) < parts.ess_threshold * state.n)
        drawn = parts.resampler(twisted.exp(), generator)
        post = drawn.log_w - log_s[drawn.ancestors]  # second stage: ÷ S of the ancestor
        log_second = torch.logsumexp(post, -1)
        log_w, log_mass = post - log_second, log_first + drawn.log_mass + log_second
        if reader is None:
            ancestors = torch.where(due, drawn.ancestors, identity)
            self._record(t, state, alpha_t, ancestors, due)
            return due, ancestors, state.reorder(parts.model, ancestors, due, log_w, log_mass)
        if not bool(due):
            self._record(t, state, alpha_t, identity, due)
            return due, identity, state
        self._record(t, state, alpha_t, drawn.ancestors, due)
        moved = state.reorder(parts.model, drawn.ancestors, due, log_w, log_mass)
        return due, drawn.ancestors, moved

    def _defensive(self, log_s: torch.Tensor, log_pa: torch.Tensor) -> torch.Tensor:
        """log((1 − ε)·S + ε·Σ_v p(v)^a): the twist, mixed with Power-SMC's one-step mass."""
        eps = self.config.epsilon
        if eps == 0:
            return log_s
        return torch.logaddexp(
            math.log1p(-eps) + log_s, math.log(eps) + torch.logsumexp(log_pa, -1)
        )

    # -- the trace --------------------------------------------------------------------------
    def _record(
        self, t: int, state, alpha_t: float, ancestors: torch.Tensor, due: torch.Tensor
    ) -> None:
        """Keep a bounded device-side summary of the boundary (read at ``boundaries``)."""
        shown = min(state.n, SHOW_PARTICLES)
        logp = state.logp[:shown].to(state.twist.dtype).nan_to_num(neginf=-1e30)
        score = state.twist[:shown] + alpha_t * logp  # log ψ
        top = score.topk(min(SHOW_TOKENS, score.shape[1]), dim=-1).indices
        log_zeta = state.twist[:shown].gather(1, top)
        offspring = torch.bincount(ancestors, minlength=state.n)[:shown]
        self._trace.append((t, top, log_zeta, offspring, due))

    def boundaries(self, before: int) -> list[Boundary]:
        """The boundaries after fewer than ``before`` tokens, as host values.

        Batched runs (stream_every > 1) decode a few steps past the end; theirs are dropped.
        """
        return [
            Boundary(
                step=t,
                candidates=tuple(tuple(r) for r in top.tolist()),
                log_zeta=tuple(tuple(r) for r in log_zeta.tolist()),
                offspring=tuple(offspring.tolist()),
                resampled=bool(due),
            )
            for t, top, log_zeta, offspring, due in self._trace
            if t < before
        ]
