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
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from .config import SMCConfig
from .models.base import LanguageModel
from .records import SMCResult, StepRecord
from .resampling import get_resampler
from .schedules import make_schedule
from .stopping import StopRule
from .tempering import log_power_mass, renyi_entropy, sample_rows
from .text import ParticleTexts
from .weights import ess_tensor, reweight

__all__ = ["PowerSMC", "SMCRun"]

_CHOOSER_SALT = 0x5DEECE66D


def weight_dtype(device: torch.device) -> torch.dtype:
    """float64 for weight arithmetic wherever the device has it (Apple MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


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


@dataclass(frozen=True)
class _Pending:
    """One decoded step still on the device; the next flush turns it into a StepRecord.

    Particle tensors are (N,) and describe the slots before resampling. ``scalars`` holds
    ess, log_z, done, resampled, logits_ok, weights_ok (one transfer per flush).
    """

    step: int
    alpha: float
    tau: float
    tokens: torch.Tensor
    grows: torch.Tensor
    log_w: torch.Tensor
    log_inc: torch.Tensor
    renyi: torch.Tensor
    log_p: torch.Tensor
    finished: torch.Tensor
    roots: torch.Tensor
    ancestors: torch.Tensor
    scalars: torch.Tensor
    texts: tuple[str, ...] | None


_SCALARS = ("ess", "log_z", "done", "resampled", "logits_ok", "weights_ok")
_INTS = ("tokens", "roots", "ancestors")
_BOOLS = ("grows", "finished")
_FLOATS = ("log_w", "log_inc", "renyi", "log_p", "scalars")


def _read_back(pending: list[_Pending], dtype: torch.dtype) -> dict[str, list]:
    """Every field of the pending steps as host lists (k rows each), in one transfer.

    Packed into one tensor of the weight dtype: token ids and indices stay exact
    (below 2**24 even in float32), and an accelerator synchronises once, not per field.
    """
    names = (*_INTS, *_BOOLS, *_FLOATS)
    blocks = [torch.stack([getattr(p, name) for p in pending]).to(dtype) for name in names]
    packed = torch.cat([b.flatten() for b in blocks]).cpu()
    parts = torch.split(packed, [b.numel() for b in blocks])
    host = {}
    for name, block, part in zip(names, blocks, parts, strict=True):
        part = part.view(block.shape)
        if name in _INTS:
            part = part.to(torch.long)
        elif name in _BOOLS:
            part = part.to(torch.bool)
        host[name] = part.tolist()
    return host


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
        self._pending: list[_Pending] = []
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

    # -- one step on the device ----------------------------------------------------------
    def _decode_step(self) -> None:
        cfg, sampler, n = self.config, self.sampler, self.config.n_particles
        host = self.every == 1  # read decisions back at once (and skip no-op work)
        t = self.decoded + 1
        last = t >= cfg.max_new_tokens
        live = self._live
        active = ~self.finished
        # Finished rows may hold stale or NaN logits; give them a harmless uniform row.
        logp = torch.where(active[:, None], self.logp.to(self._compute_dtype()), 0.0)  # (N, V)

        previous = self.alpha
        alpha_t = self.schedule.next_alpha(
            t, previous, self.log_w, self._predictive_increment(logp, active)
        )
        tau = sampler.proposal_temperature(alpha_t)
        tokens, lp_token, lq_token, log_mass, logits_ok = self._propose(logp, tau, host, t)
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
        if host and self.texts is not None:
            pieces = self.texts.push(tokens.tolist(), grows.tolist())
            if self.stop is not None:
                stopped = torch.tensor(self.stop.update(pieces), device=finished.device)
                finished = finished | (grows & stopped)
            texts = tuple(self.texts.texts)
        self.finished = finished
        self._forwards = self._forwards + active.sum()

        done = live & (finished.all() | last)
        # The final catch-up (alpha - alpha_T)·log p(y) lands on the step that ends the run.
        log_inc = log_inc + (cfg.alpha - alpha_t) * torch.where(done, self.log_p, 0.0)
        if not sampler.reweights():
            log_inc = torch.zeros_like(log_inc)
        # Steps decoded past the end (at most stream_every - 1) change nothing.
        log_inc = torch.where(live, log_inc, 0.0)
        reweighted, log_mean = reweight(self.log_w, log_inc)
        weights_ok = torch.isfinite(log_mean)
        # Past the end, even renormalising by log_mean ≈ 0 would move the weights by an ulp.
        self.log_w = torch.where(live, reweighted, self.log_w)
        self._log_z = self._log_z + torch.where(live, log_mean, 0.0)
        if host and not bool(weights_ok):
            raise self._weights_error(t)
        ess = ess_tensor(self.log_w)

        # Records describe slots before resampling; _reorder builds new tensors, never mutates.
        before = (self.log_w, self.log_p, self.finished, self.roots)
        ancestors = self._identity
        resampled = torch.zeros((), dtype=torch.bool, device=ess.device)
        if not last and t % cfg.block_size == 0 and cfg.ess_threshold > 0:
            resampled = live & ~done & (ess < cfg.ess_threshold * n)
            ancestors = self._resample(resampled, host)

        skip = last or (host and bool(done))
        if not skip:
            # The new slot j continues ancestors[j]: its cache was reordered, now feed its token.
            still = ~self.finished
            feed = torch.where(still, tokens[ancestors], self.eos[0])
            self.state, self.logp = self.model.advance(self.state, feed, still)

        self._live = live & ~done
        self.alpha, self.decoded = alpha_t, t
        values = (ess, self._log_z, done, resampled, logits_ok, weights_ok)  # see _SCALARS
        scalars = torch.stack([v.to(self._wdtype) for v in values])  # no float64 on MPS
        self._pending.append(
            _Pending(
                step=t,
                alpha=float(alpha_t),
                tau=float(tau),
                tokens=tokens,
                grows=grows,
                log_w=before[0],
                log_inc=log_inc,
                renyi=renyi,
                log_p=before[1],
                finished=before[2],
                roots=before[3],
                ancestors=ancestors,
                scalars=scalars,
                texts=texts,
            )
        )

    def _propose(self, logp: torch.Tensor, tau: float, host: bool, t: int):
        """Draw y ~ q_tau ∝ p^(1/tau) per row; return (y, log p(y), log q(y), log Σ p^(1/tau), ok).

        ok is a 0-d tensor: False when some row's log-probabilities are not finite.
        """
        scaled = logp * (1.0 / tau)  # (N, V)
        log_mass = torch.logsumexp(scaled, dim=-1)  # (N,)
        # A NaN anywhere in a row makes its log-sum-exp NaN: one (N,) check instead of (N, V).
        ok = torch.isfinite(log_mass).all()
        if host and not bool(ok):
            raise self._nan_error(t)
        logq = scaled - log_mass[:, None]  # log q_tau = log_softmax(log p / tau)
        probs = logq.exp()
        if not host:  # a NaN row would break the draw; it is reported at the flush instead
            probs = torch.where(ok, probs, 1.0)
        tokens = sample_rows(probs, self.generator)  # (N,)
        lp_token = logp.gather(1, tokens[:, None]).squeeze(1).to(self._wdtype)
        lq_token = logq.gather(1, tokens[:, None]).squeeze(1).to(self._wdtype)
        return tokens, lp_token, lq_token, log_mass, ok

    def _resample(self, due: torch.Tensor, host: bool) -> torch.Tensor:
        """Ancestors for this block boundary: a fresh draw where ``due``, else the identity.

        The draw is made whether or not it is used, so every stream_every consumes the
        same random numbers and yields the same records. Per token (host) the decision is
        read at once and a no-op reorder skipped; batched, the reorder always runs. Texts
        and stop rules follow their ancestors at the flush (right after, per token).
        """
        drawn = self.resample(self.log_w.exp(), self.generator)
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
        fields = _read_back(pending, self._wdtype)
        scalars, tokens, grows = fields["scalars"], fields["tokens"], fields["grows"]
        log_w, log_inc, renyi = fields["log_w"], fields["log_inc"], fields["renyi"]
        log_p, finished = fields["log_p"], fields["finished"]
        roots, ancestors = fields["roots"], fields["ancestors"]
        elapsed = time.perf_counter() - self._start_time
        for i, p in enumerate(pending):
            values = dict(zip(_SCALARS, scalars[i], strict=True))
            if not values["logits_ok"]:
                self._error = self._nan_error(p.step)
                return
            if not values["weights_ok"]:
                self._error = self._weights_error(p.step)
                return
            done, resampled = bool(values["done"]), bool(values["resampled"])
            texts = p.texts
            if self.texts is not None and texts is None:  # texts of batched steps
                self.texts.push(tokens[i], grows[i])
                texts = tuple(self.texts.texts)
            roots_after = [roots[i][a] for a in ancestors[i]]
            self._ready.append(
                StepRecord(
                    step=p.step,
                    alpha=p.alpha,
                    tau=p.tau,
                    catch_up=(self.config.alpha - p.alpha) if done else 0.0,
                    tokens=tuple(tokens[i]),
                    log_weights=tuple(log_w[i]),
                    log_increment=tuple(log_inc[i]),
                    renyi=tuple(renyi[i]),
                    log_p=tuple(log_p[i]),
                    finished=tuple(finished[i]),
                    ess=values["ess"],
                    resampled=resampled,
                    ancestors=tuple(ancestors[i]),
                    roots=tuple(roots[i]),
                    n_lineages=len(set(roots_after)),
                    n_unique_ancestors=len(set(ancestors[i])),
                    log_z=values["log_z"],
                    elapsed=elapsed,
                    texts=texts,
                    done=done,
                )
            )
            if resampled:
                self.n_resamples += 1
                self._reorder_text(ancestors[i])
            self.ess_trace.append(values["ess"])
            self.step, self.log_z = p.step, values["log_z"]
            if done:  # steps decoded past the end are dropped (they changed nothing)
                self.done = True
                return

    def _nan_error(self, step: int) -> FloatingPointError:
        return FloatingPointError(
            f"model {self.model.name!r} returned NaN log-probabilities (or a row with no "
            f"possible token) at step {step}; check the model weights and dtype "
            "(float16 overflow is a common cause)"
        )

    @staticmethod
    def _weights_error(step: int) -> FloatingPointError:
        return FloatingPointError(
            f"every particle has zero or non-finite weight at step {step}; the model "
            "produced impossible tokens or NaN log-probabilities"
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
