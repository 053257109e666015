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
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence

import torch

from .config import SMCConfig
from .models.base import LanguageModel
from .records import SMCResult, StepRecord
from .resampling import get_resampler
from .schedules import make_schedule
from .stopping import StopRule
from .tempering import log_power_mass, renyi_entropy
from .text import ParticleTexts
from .weights import ess as ess_of
from .weights import log_mean_weight, normalise_log_weights

__all__ = ["PowerSMC", "SMCRun"]

_CHOOSER_SALT = 0x5DEECE66D


def weight_dtype(device: torch.device) -> torch.dtype:
    """float64 for weight arithmetic wherever the device has it (Apple MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


class PowerSMC:
    """Sampler object: ``stream(prompt)`` yields one ``StepRecord`` per token, ``run`` returns the result."""

    method = "smc"

    def __init__(
        self,
        model: LanguageModel,
        config: SMCConfig | None = None,
        stop: StopRule | None = None,
        track_text: bool = True,
    ) -> None:
        self.model = model
        self.config = config if config is not None else SMCConfig()
        self.stop = stop
        self.track_text = track_text or stop is not None

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
    """One run of the particle system; iterate it to decode, call ``result()`` whenever."""

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
        self.alpha = config.alpha_start
        self.log_w = torch.full((n,), -math.log(n), dtype=self._wdtype, device=device)
        self.log_p = torch.zeros(n, dtype=self._wdtype, device=device)
        self.finished = torch.zeros(n, dtype=torch.bool, device=device)
        self.roots = torch.arange(n, device=device)
        self.log_z = 0.0
        self.n_resamples = 0
        self.token_forwards = 0
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
        self.done = False

    def __iter__(self) -> SMCRun:
        return self

    def __next__(self) -> StepRecord:
        if self.done:
            raise StopIteration
        cfg, sampler = self.config, self.sampler
        t = self.step + 1
        active = ~self.finished
        logp = self.logp.to(self._compute_dtype())  # (N, V)
        if not bool(active.all()):
            # Finished rows may hold stale or NaN logits; give them a harmless uniform row.
            logp = torch.where(active[:, None], logp, 0.0)

        previous = self.alpha
        alpha_t = self.schedule.next_alpha(
            t, previous, self.log_w, self._predictive_increment(logp, active)
        )
        tau = sampler.proposal_temperature(alpha_t)
        scaled = logp * (1.0 / tau)  # (N, V)
        log_mass = torch.logsumexp(scaled, dim=-1)  # (N,) log sum_v p(v)^(1/tau)
        # A NaN anywhere in a row makes its log-sum-exp NaN: one (N,) check instead of (N, V).
        if not bool(torch.isfinite(log_mass).all()):
            raise FloatingPointError(
                f"model {self.model.name!r} returned NaN log-probabilities (or a row with no "
                f"possible token) at step {t}; check the model weights and dtype "
                "(float16 overflow is a common cause)"
            )
        logq = scaled - log_mass[:, None]  # log q_tau = log_softmax(log p / tau)
        tokens = torch.multinomial(logq.exp(), 1, generator=self.generator).squeeze(1)  # (N,)
        lp_token = logp.gather(1, tokens[:, None]).squeeze(1).to(self._wdtype)
        lq_token = logq.gather(1, tokens[:, None]).squeeze(1).to(self._wdtype)
        tokens = torch.where(active, tokens, -1)

        # log G = alpha_t·log p(y_t) - log q(y_t) + (alpha_t - alpha_{t-1})·log p(y_<t)
        log_inc = (
            torch.where(active, alpha_t * lp_token - lq_token, 0.0)
            + (alpha_t - previous) * self.log_p
        )
        # At tau = 1/alpha_t the proposal's normaliser already is log sum_v p^alpha_t.
        if abs(alpha_t - 1.0) > 1e-12 and abs(tau * alpha_t - 1.0) < 1e-12:
            renyi_all = log_mass / (1.0 - alpha_t)
        else:
            renyi_all = renyi_entropy(logp, alpha_t)
        renyi = torch.where(active, renyi_all.to(self._wdtype), math.nan)
        self.log_p = self.log_p + torch.where(active, lp_token, 0.0)
        emitted_eos = active & torch.isin(tokens, self.eos)
        grows = active & ~emitted_eos
        self._write_history(t, tokens)
        finished = self.finished | emitted_eos
        texts = None
        if self.texts is not None:
            pieces = self.texts.push(tokens, grows)
            if self.stop is not None:
                stopped = torch.tensor(self.stop.update(pieces), device=finished.device)
                finished = finished | (grows & stopped)
            texts = tuple(self.texts.texts)
        self.finished = finished
        self.token_forwards += int(active.sum())

        done = bool(finished.all()) or t >= cfg.max_new_tokens
        catch_up = (cfg.alpha - alpha_t) if done else 0.0
        if catch_up:
            log_inc = log_inc + catch_up * self.log_p
        if not sampler.reweights():
            log_inc = torch.zeros_like(log_inc)
        self.log_z += log_mean_weight(self.log_w, log_inc)
        self.log_w = normalise_log_weights(self.log_w + log_inc)
        ess = ess_of(self.log_w)
        self.ess_trace.append(ess)
        self.alpha, self.step, self.done = alpha_t, t, done

        # Records describe slots before resampling; _reorder builds new tensors, never mutates.
        before_log_w, before_log_p, before_finished, before_roots = (
            self.log_w,
            self.log_p,
            self.finished,
            self.roots,
        )
        n = cfg.n_particles
        resampled = (not done) and t % cfg.block_size == 0 and ess < cfg.ess_threshold * n
        if resampled:
            ancestors = self.resample(self.log_w.exp(), self.generator)
            self._reorder(ancestors)
            self.n_resamples += 1
        else:
            ancestors = torch.arange(n, device=tokens.device)

        if not done:
            # The new slot j continues ancestors[j]: its cache was reordered, now feed its token.
            still = ~self.finished
            feed = torch.where(still, tokens[ancestors], self.eos[0])
            self.state, self.logp = self.model.advance(self.state, feed, still)

        return StepRecord(
            step=t,
            alpha=float(alpha_t),
            tau=float(tau),
            catch_up=float(catch_up),
            tokens=tuple(tokens.tolist()),
            log_weights=tuple(before_log_w.tolist()),
            log_increment=tuple(log_inc.tolist()),
            renyi=tuple(renyi.tolist()),
            log_p=tuple(before_log_p.tolist()),
            finished=tuple(before_finished.tolist()),
            ess=ess,
            resampled=resampled,
            ancestors=tuple(ancestors.tolist()),
            roots=tuple(before_roots.tolist()),
            n_lineages=int(torch.unique(self.roots).numel()),
            n_unique_ancestors=int(torch.unique(ancestors).numel()),
            log_z=self.log_z,
            elapsed=time.perf_counter() - self._start_time,
            texts=texts,
            done=done,
        )

    # -- helpers -------------------------------------------------------------------------
    def _compute_dtype(self) -> torch.dtype:
        # CPU float32 exp is ~100x slower on underflowing inputs (below about -87), where most
        # of alpha·log p lies: tempering in float64 there is faster as well as more precise.
        if self.logp.device.type == "cpu":
            return torch.float64
        # bf16/fp16 logits are upcast: tempering by 1/tau and logsumexp need the mantissa.
        dtype = self.logp.dtype
        return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype

    def _predictive_increment(self, logp: torch.Tensor, active: torch.Tensor):
        """a -> log G_i(a) = log sum_v p(v|prefix_i)^a + (a - alpha_{t-1})·log p(prefix_i)."""
        previous = self.alpha

        def log_increment(a: float) -> torch.Tensor:
            mass = torch.where(active, log_power_mass(logp, a).to(self._wdtype), 0.0)
            return mass + (a - previous) * self.log_p

        return log_increment

    def _write_history(self, t: int, tokens: torch.Tensor) -> None:
        if t > self.history.shape[1]:
            grown = min(2 * self.history.shape[1], self.config.max_new_tokens)
            pad = torch.full(
                (self.history.shape[0], grown - self.history.shape[1]),
                -1,
                dtype=torch.long,
                device=self.history.device,
            )
            self.history = torch.cat([self.history, pad], dim=1)
        self.history[:, t - 1] = tokens

    def _reorder(self, ancestors: torch.Tensor) -> None:
        """Slot j becomes a copy of slot ancestors[j]; weights reset to uniform."""
        n = ancestors.numel()
        self.state = self.model.reorder(self.state, ancestors)
        self.logp = self.logp[ancestors]
        self.log_p = self.log_p[ancestors]
        self.finished = self.finished[ancestors]
        self.roots = self.roots[ancestors]
        self.history = self.history[ancestors]
        self.log_w = torch.full_like(self.log_w, -math.log(n))
        index = ancestors.tolist()
        if self.texts is not None:
            self.texts.reorder(index)
        if self.stop is not None:
            self.stop.reorder(index)

    def result(self) -> SMCResult:
        """The weighted particle set so far (final once iteration has stopped)."""
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
