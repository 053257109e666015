"""Power-SMC: sequential Monte Carlo for the sequence-level power distribution.

Target pi_alpha(y|x) ∝ p(y|x)^alpha over complete continuations, reached through
intermediate targets gamma_t(y_1:t) ∝ p(y_1:t)^alpha_t. Each step, all N
particles advance one token in one batch:

    y_t ~ q_t ∝ p(.|y_<t)^(1/tau_t)                       (tau_t = 1/alpha_t by default)
    log w += alpha_t·log p(y_t|y_<t) - log q_t(y_t|y_<t) + (alpha_t - alpha_{t-1})·log p(y_<t)
    log Ẑ += log sum_i W_i G_i                            (G_i: incremental weight)
    resample when ESS = 1/sum W_i^2 < kappa·N             (every block_size steps)

A finished particle stops growing but keeps receiving bridging factors
p(y)^(alpha_t - alpha_{t-1}); at the last step p(y)^(alpha - alpha_T) catches up
whatever exponent the schedule had not reached. Each step costs one batched
forward of the active rows plus O(N·V) tensor work; nothing loops over particles
in Python except text streaming.

Every per-step decision (resample or not, finished or not) is a device tensor, so
with ``stream_every=k`` the host reads the particle system only once every k
steps, and the records of those k steps come from one flush. The records are the
same for every k (same seed, same draws); k = 1, the default, streams each token
as it is decoded. Stop rules read the text of every step, so they need k = 1.

``SMCRun._decode_step`` reads as its named steps: propose, grow, reweight, resample,
advance, stage the record; each is a small method whose docstring states its equation.
The file is ~450 lines because those steps belong together with the run state they update;
the host read-back and record building live in ``staging.py``.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence

import torch

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.records import SMCResult, StepRecord
from powersmc_core.engine.resampling import get_resampler
from powersmc_core.engine.schedules import make_schedule
from powersmc_core.engine.staging import (
    SCALARS,
    Draw,
    Pending,
    compute_dtype,
    nan_error,
    read_back,
    to_record,
    weight_dtype,
    weights_error,
    write_history,
)
from powersmc_core.engine.stopping import StopRule
from powersmc_core.engine.tempering import draw_rows, log_power_mass, renyi_entropy
from powersmc_core.engine.text import ParticleTexts
from powersmc_core.engine.weights import ess_tensor, reweight
from powersmc_core.models.base import LanguageModel

__all__ = ["PowerSMC", "SMCRun"]

_CHOOSER_SALT = 0x5DEECE66D


class PowerSMC:
    """Sampler object: ``stream(prompt)`` yields one ``StepRecord`` per token, ``run`` returns the result.

    stream_every: the host reads the particle system every k steps (records arrive k at a
    time); 1 streams each token. Larger k removes the per-token host synchronisation that
    dominates small-model GPU steps; the records are identical for every k.
    """

    method = "smc"

    def __init__(
        self,
        model: LanguageModel,
        config: SMCConfig | None = None,
        stop: StopRule | None = None,
        track_text: bool = True,
        stream_every: int = 1,
    ) -> None:
        if isinstance(stream_every, bool) or not isinstance(stream_every, int) or stream_every < 1:
            raise ValueError(f"stream_every must be an integer >= 1, got {stream_every!r}")
        if stop is not None and stream_every != 1:
            raise ValueError(
                "stop rules (stop strings, \\boxed{}) read each particle's text every step, "
                f"so they need stream_every=1, got {stream_every}; EOS and max_new_tokens "
                "need no per-step text"
            )
        self.model = model
        self.config = config if config is not None else SMCConfig()
        self.stop = stop
        self.track_text = track_text or stop is not None
        self.stream_every = stream_every

    def stream(self, prompt: Sequence[int]) -> SMCRun:
        """An iterator of step records; its ``result()`` is available at any time."""
        return SMCRun(self, prompt)

    def run(self, prompt: Sequence[int]) -> SMCResult:
        run = self.stream(prompt)
        for _ in run:
            pass
        return run.result()

    # Hooks the baselines override ------------------------------------------------------
    def reweights(self) -> bool:
        return True

    def proposal_temperature(self, alpha_t: float) -> float:
        tau = self.config.proposal_temperature
        return 1.0 / alpha_t if tau is None else tau


class SMCRun(Iterator[StepRecord]):
    """One run of the particle system; iterate it to decode, call ``result()`` whenever.

    ``decoded`` counts steps run on the device, ``step`` the steps turned into records
    (they differ by less than ``stream_every`` between flushes).
    """

    def __init__(self, sampler: PowerSMC, prompt: Sequence[int]) -> None:
        self.sampler = sampler
        self.config = config = sampler.config
        self.model = model = sampler.model
        n = config.n_particles
        device = model.device
        self._wdtype = weight_dtype(device)
        self._start_time = time.perf_counter()
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.schedule = make_schedule(config)
        self.resample = get_resampler(config.resampling)
        self.state, self.logp = model.start(prompt, n)
        self.step = 0
        self.decoded = 0
        self.alpha = config.alpha_start
        self.log_w = torch.full((n,), -math.log(n), dtype=self._wdtype, device=device)
        self.log_p = torch.zeros(n, dtype=self._wdtype, device=device)
        self.finished = torch.zeros(n, dtype=torch.bool, device=device)
        self.roots = torch.arange(n, device=device)
        self._identity = torch.arange(n, device=device)
        self._uniform_log_w = torch.full_like(self.log_w, -math.log(n))
        self._log_z = torch.zeros((), dtype=self._wdtype, device=device)
        self._live = torch.ones((), dtype=torch.bool, device=device)  # not done yet
        self._forwards = torch.zeros((), dtype=torch.long, device=device)
        self.log_z = 0.0
        self.n_resamples = 0
        self.ess_trace: list[float] = []
        self.history = torch.full(
            (n, min(config.max_new_tokens, 64)), -1, dtype=torch.long, device=device
        )
        self.eos = torch.tensor(model.eos_token_ids, dtype=torch.long, device=device)
        self.texts = ParticleTexts(model.decode_batch, n) if sampler.track_text else None
        # Stop rules carry per-particle state: each run owns a copy, so one sampler (or one
        # rule) can serve concurrent runs without them corrupting each other.
        self.stop = copy.deepcopy(sampler.stop)
        if self.stop is not None:
            self.stop.reset(n)
        self.every = sampler.stream_every
        self._pending: list[Pending] = []
        self._ready: deque[StepRecord] = deque()
        self._error: Exception | None = None
        self.done = False

    def __iter__(self) -> SMCRun:
        return self

    def __next__(self) -> StepRecord:
        while not self._ready:
            if self._error is not None:
                raise self._error
            if self.done:
                raise StopIteration
            self._decode_step()
            if len(self._pending) >= self.every or self.decoded >= self.config.max_new_tokens:
                self._flush()
        return self._ready.popleft()

    @property
    def token_forwards(self) -> int:
        """Particle-tokens forwarded through the model so far (finished rows excluded)."""
        return int(self._forwards)

    # -- one step on the device: propose, grow, reweight, resample, advance, stage ----------
    def _decode_step(self) -> None:
        """Decode token t for every particle; the record is staged for the next flush."""
        t = self.decoded + 1
        host = self.every == 1  # read decisions back at once (and skip no-op work)
        active = ~self.finished
        # Finished rows may hold stale or NaN logits; give them a harmless uniform row.
        logp = self.logp.to(compute_dtype(self.logp), copy=True)  # (N, V), ours to change
        logp.masked_fill_(~active[:, None], 0.0)
        previous = self.alpha
        alpha_t = self.schedule.next_alpha(
            t, previous, self.log_w, self._predictive_increment(logp, active)
        )
        tau = self.sampler.proposal_temperature(alpha_t)
        draw = self._propose(logp, active, tau, host, t)
        renyi = self._renyi(logp, active, alpha_t, tau, draw.log_mass)
        prefix_log_p = self.log_p  # log p(y_<t), before this token
        grows, texts = self._grow(t, draw, active, host)
        last = t >= self.config.max_new_tokens
        done = self._live & (self.finished.all() | last)
        log_inc, weights_ok = self._reweight(
            draw, active, prefix_log_p, previous, alpha_t, done, host, t
        )
        ess = ess_tensor(self.log_w)
        # Records describe slots before resampling; _reorder builds new tensors, never mutates.
        before = (self.log_w, self.log_p, self.finished, self.roots)
        resampled, ancestors = self._resample_step(self.log_w, t, ess, done, host)
        if not (last or (host and bool(done))):
            self._advance(draw.tokens, ancestors)
        self._live = self._live & ~done
        self.alpha, self.decoded = alpha_t, t
        values = (ess, self._log_z, done, resampled, draw.ok, weights_ok)  # see SCALARS
        self._pending.append(
            Pending(
                step=t,
                alpha=float(alpha_t),
                tau=float(tau),
                tokens=draw.tokens,
                grows=grows,
                log_w=before[0],
                log_inc=log_inc,
                renyi=renyi,
                log_p=before[1],
                finished=before[2],
                roots=before[3],
                ancestors=ancestors,
                scalars=torch.stack([v.to(self._wdtype) for v in values]),  # no float64 on MPS
                texts=texts,
            )
        )

    def _propose(
        self, logp: torch.Tensor, active: torch.Tensor, tau: float, host: bool, t: int
    ) -> Draw:
        """Draw y ~ q_tau ∝ p^(1/tau) per row (-1 for finished rows), with log p(y), log q(y).

        log q(y) = log p(y)/tau - log M with M = sum_v p(v)^(1/tau), the total that the
        draw's running sum ends on (shifted by the row maximum): no normalised q is built.
        """
        # In place on one (N, V) buffer: each fresh CPU tensor of this size costs page faults.
        unnorm = logp * (1.0 / tau)  # log p / tau
        top = unnorm.amax(dim=-1, keepdim=True)  # (N, 1); NaN when the row holds a NaN
        unnorm.sub_(top).exp_()  # p^(1/tau) / max_v p(v)^(1/tau)
        # A NaN or a row with no possible token makes top or the mass non-finite.
        ok = torch.isfinite(top).all()
        if host and not bool(ok):
            raise nan_error(self.model.name, t)
        if not host:  # a NaN row would break the draw; it is reported at the flush instead
            unnorm = torch.where(ok, unnorm, 1.0)
        tokens, mass = draw_rows(unnorm, self.generator)  # (N,) each
        log_mass = top.squeeze(-1).to(mass.dtype) + mass.log()  # (N,) log sum_v p^(1/tau)
        lp = logp.gather(1, tokens[:, None]).squeeze(1)
        lp_token = lp.to(self._wdtype)
        lq_token = (lp * (1.0 / tau)).to(self._wdtype) - log_mass.to(self._wdtype)
        tokens = torch.where(active, tokens, -1)
        return Draw(tokens, lp_token, lq_token, log_mass, ok)

    def _renyi(
        self,
        logp: torch.Tensor,
        active: torch.Tensor,
        alpha_t: float,
        tau: float,
        log_mass: torch.Tensor,
    ) -> torch.Tensor:
        """H_alpha_t of each active row, (N,); NaN for finished rows (a diagnostic only)."""
        # At tau = 1/alpha_t the proposal's normaliser already is log sum_v p^alpha_t.
        if abs(alpha_t - 1.0) > 1e-12 and abs(tau * alpha_t - 1.0) < 1e-12:
            renyi_all = log_mass / (1.0 - alpha_t)
        else:
            renyi_all = renyi_entropy(logp, alpha_t)
        return torch.where(active, renyi_all.to(self._wdtype), math.nan)

    def _grow(
        self, t: int, draw: Draw, active: torch.Tensor, host: bool
    ) -> tuple[torch.Tensor, tuple[str, ...] | None]:
        """Append the tokens: log p, history, texts; EOS and stop rules finish particles.

        Returns (grows, texts): which rows took a non-EOS token, and the texts when read
        per token (batched steps push their texts at the flush).
        """
        tokens = draw.tokens
        self.log_p = self.log_p + torch.where(active, draw.lp_token, 0.0)
        emitted_eos = active & torch.isin(tokens, self.eos)
        grows = active & ~emitted_eos
        self.history = write_history(self.history, t, tokens, self.config.max_new_tokens)
        finished = self.finished | emitted_eos
        texts = None
        if host and self.texts is not None:
            pieces = self.texts.push(tokens.tolist(), grows.tolist())
            if self.stop is not None:
                stopped = torch.tensor(self.stop.update(pieces), device=finished.device)
                finished = finished | (grows & stopped)
            texts = tuple(self.texts.texts)
        self.finished = finished
        self._forwards = self._forwards + active.sum()
        return grows, texts

    def _reweight(
        self,
        draw: Draw,
        active: torch.Tensor,
        prefix_log_p: torch.Tensor,
        previous: float,
        alpha_t: float,
        done: torch.Tensor,
        host: bool,
        t: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log G_i = alpha_t·log p(y_t) - log q(y_t) + (alpha_t - alpha_{t-1})·log p(y_<t),
        plus the catch-up (alpha - alpha_t)·log p(y) on the step that ends the run.

        Finished particles get only the bridging (and catch-up) factors. Updates log W and
        log Ẑ; returns (log G, weights_ok).
        """
        local = torch.where(active, alpha_t * draw.lp_token - draw.lq_token, 0.0)
        log_inc = local + (alpha_t - previous) * prefix_log_p
        # The final catch-up (alpha - alpha_T)·log p(y) lands on the step that ends the run.
        log_inc = log_inc + (self.config.alpha - alpha_t) * torch.where(done, self.log_p, 0.0)
        if not self.sampler.reweights():
            log_inc = torch.zeros_like(log_inc)
        # Steps decoded past the end (at most stream_every - 1) change nothing.
        live = self._live
        log_inc = torch.where(live, log_inc, 0.0)
        reweighted, log_mean = reweight(self.log_w, log_inc)
        weights_ok = torch.isfinite(log_mean)
        # Past the end, even renormalising by log_mean ≈ 0 would move the weights by an ulp.
        self.log_w = torch.where(live, reweighted, self.log_w)
        self._log_z = self._log_z + torch.where(live, log_mean, 0.0)
        if host and not bool(weights_ok):
            raise weights_error(t)
        return log_inc, weights_ok

    def _resample_step(
        self, log_w: torch.Tensor, t: int, ess: torch.Tensor, done: torch.Tensor, host: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(resampled, ancestors): resample by ``log_w`` at block boundaries when ESS < kappa·N."""
        cfg = self.config
        resampled = torch.zeros((), dtype=torch.bool, device=ess.device)
        if t >= cfg.max_new_tokens or t % cfg.block_size != 0 or cfg.ess_threshold <= 0:
            return resampled, self._identity
        resampled = self._live & ~done & (ess < cfg.ess_threshold * cfg.n_particles)
        return resampled, self._resample(log_w, resampled, host)

    def _advance(self, tokens: torch.Tensor, ancestors: torch.Tensor) -> None:
        """Feed each surviving slot its token: slot j continues ancestors[j] (cache reordered)."""
        still = ~self.finished
        feed = torch.where(still, tokens[ancestors], self.eos[0])
        self.state, self.logp = self.model.advance(self.state, feed, still)

    def _resample(self, log_w: torch.Tensor, due: torch.Tensor, host: bool) -> torch.Tensor:
        """Ancestors for this block boundary: a fresh draw where ``due``, else the identity.

        The draw is made whether or not it is used, so every stream_every consumes the
        same random numbers and yields the same records. Per token (host) the decision is
        read at once and a no-op reorder skipped; batched, the reorder always runs. Texts
        and stop rules follow their ancestors at the flush (right after, per token).
        """
        drawn = self.resample(log_w.exp(), self.generator)
        if not host:
            ancestors = torch.where(due, drawn, self._identity)
            self._reorder(ancestors, due)
            return ancestors
        if not bool(due):
            return self._identity
        self._reorder(drawn, due)
        return drawn

    # -- the host side: records ----------------------------------------------------------
    def _flush(self) -> None:
        """Turn the pending steps into records: one device-to-host transfer for all of them."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        fields = read_back(pending, self._wdtype)
        elapsed = time.perf_counter() - self._start_time
        for i, p in enumerate(pending):
            values = dict(zip(SCALARS, fields["scalars"][i], strict=True))
            if not values["logits_ok"]:
                self._error = nan_error(self.model.name, p.step)
                return
            if not values["weights_ok"]:
                self._error = weights_error(p.step)
                return
            texts = p.texts
            if self.texts is not None and texts is None:  # texts of batched steps
                self.texts.push(fields["tokens"][i], fields["grows"][i])
                texts = tuple(self.texts.texts)
            record = to_record(p, i, fields, self.config.alpha, elapsed, texts)
            self._ready.append(record)
            if record.resampled:
                self.n_resamples += 1
                self._reorder_text(fields["ancestors"][i])
            self.ess_trace.append(record.ess)
            self.step, self.log_z = p.step, record.log_z
            if record.done:  # steps decoded past the end are dropped (they changed nothing)
                self.done = True
                return

    # -- helpers -------------------------------------------------------------------------
    def _predictive_increment(self, logp: torch.Tensor, active: torch.Tensor):
        """a -> log G_i(a) = log sum_v p(v|prefix_i)^a + (a - alpha_{t-1})·log p(prefix_i)."""
        previous = self.alpha

        def log_increment(a: float) -> torch.Tensor:
            mass = torch.where(active, log_power_mass(logp, a).to(self._wdtype), 0.0)
            return mass + (a - previous) * self.log_p

        return log_increment

    def _reorder(self, ancestors: torch.Tensor, resampled: torch.Tensor) -> None:
        """Slot j becomes a copy of slot ancestors[j]; weights reset to uniform where resampled.

        ancestors may be the identity (batched steps decide on the device): then this is a
        copy, and the weights are kept.
        """
        self.state = self.model.reorder(self.state, ancestors)
        self.logp = self.logp[ancestors]
        self.log_p = self.log_p[ancestors]
        self.finished = self.finished[ancestors]
        self.roots = self.roots[ancestors]
        self.history = self.history[ancestors]
        self.log_w = torch.where(resampled, self._uniform_log_w, self.log_w)

    def _reorder_text(self, ancestors: list[int]) -> None:
        if self.texts is not None:
            self.texts.reorder(ancestors)
        if self.stop is not None:
            self.stop.reorder(ancestors)

    def result(self) -> SMCResult:
        """The weighted particle set so far (final once iteration has stopped).

        Steps decoded but not yet delivered as records are flushed (and queued) first.
        """
        self._flush()
        weights = self.log_w.exp()
        weights = weights / weights.sum()
        # A generator of its own (seed-derived): calling result() twice, or mid-run, changes nothing.
        chooser = torch.Generator().manual_seed(self.config.seed ^ _CHOOSER_SALT)
        chosen = int(torch.multinomial(weights.to(torch.float64).cpu(), 1, generator=chooser))
        eos = set(self.model.eos_token_ids)
        rows = self.history[:, : self.step].tolist()
        completions = [[tok for tok in row if tok >= 0 and tok not in eos] for row in rows]
        return SMCResult(
            completions=completions,
            weights=weights.tolist(),
            chosen=chosen,
            log_p=self.log_p.tolist(),
            log_z=self.log_z,
            n_resamples=self.n_resamples,
            ess_trace=list(self.ess_trace),
            finished=self.finished.tolist(),
            n_steps=self.step,
            elapsed=time.perf_counter() - self._start_time,
            texts=None if self.texts is None else list(self.texts.texts),
            method=self.sampler.method,
            extras={"token_forwards": self.token_forwards},
        )
