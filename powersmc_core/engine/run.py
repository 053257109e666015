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

The shape (after particles' ``SMC`` and blackjax's ``smc.base.step``):

- ``state.ParticleState``: the particle system as one immutable value;
- strategies, each a module stating its maths: ``proposals`` (q_t), ``targets`` (G_t),
  ``schedules`` (alpha_t), ``resampling`` (ancestors), ``choosers`` (``result().chosen``);
- ``step.step``: one token, propose → reweight → resample → advance → stage the record;
- ``SMCRun`` (here): the loop. It holds the parts, the current state, the generator,
  the step counter, the staged and ready records, texts and stop rules, and log Ẑ.

A baseline is a configuration of the same parts, not a subclass: temperature sampling
is ``TemperedProposal(T)`` + ``UnweightedTarget`` without resampling, best-of-N adds the
``MaxLogP`` chooser, greedy swaps in ``ArgmaxProposal``.

The host-synchronisation policy lives in the loop alone. With ``stream_every=k`` the
host reads the particle system once every k steps and the records of those k steps come
from one flush; with k = 1 (the default) the loop hands the step a ``reader`` that reads
texts and stop rules per token, and NaN errors are raised at the step. The records are
the same for every k (same seed, same draws). Stop rules read the text of every step,
so they need k = 1.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence

import torch

from powersmc_core.engine.choosers import Chooser, WeightedChoice
from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.proposals import Proposal, TemperedProposal
from powersmc_core.engine.records import SMCResult, StepRecord
from powersmc_core.engine.resampling import get_resampler
from powersmc_core.engine.schedules import make_schedule
from powersmc_core.engine.staging import (
    SCALARS,
    Pending,
    nan_error,
    read_back,
    to_record,
    weights_error,
)
from powersmc_core.engine.state import ParticleState
from powersmc_core.engine.step import Parts, step
from powersmc_core.engine.stopping import StopRule
from powersmc_core.engine.targets import PowerTarget, Target
from powersmc_core.engine.text import ParticleTexts
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.device import weight_dtype

__all__ = ["PowerSMC", "SMCRun"]


class PowerSMC:
    """Sampler object: ``stream(prompt)`` yields one ``StepRecord`` per token, ``run`` returns the result.

    stream_every: the host reads the particle system every k steps (records arrive k at a
    time); 1 streams each token. Larger k removes the per-token host synchronisation that
    dominates small-model GPU steps; the records are identical for every k.

    The strategies (``proposal``, ``target``, ``chooser``) are attributes; the baselines
    set other ones in their constructors.
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
        self.config = config = config if config is not None else SMCConfig()
        self.stop = stop
        self.track_text = track_text or stop is not None
        self.stream_every = stream_every
        self.proposal: Proposal = TemperedProposal(config.proposal_temperature)
        self.target: Target = PowerTarget(config.alpha)
        self.chooser: Chooser = WeightedChoice()

    def parts(self) -> Parts:
        """The model and strategies one run is built from (fresh per run: schedules hold state)."""
        cfg = self.config
        return Parts(
            model=self.model,
            proposal=self.proposal,
            target=self.target,
            schedule=make_schedule(cfg),
            resampler=(
                get_resampler(cfg.resampling, cfg.chopthin_eta) if cfg.ess_threshold > 0 else None
            ),
            chooser=self.chooser,
            max_new_tokens=cfg.max_new_tokens,
            block_size=cfg.block_size,
            ess_threshold=cfg.ess_threshold,
            eos=torch.tensor(self.model.eos_token_ids, dtype=torch.long, device=self.model.device),
        )

    def stream(self, prompt: Sequence[int]) -> SMCRun:
        """An iterator of step records; its ``result()`` is available at any time."""
        return SMCRun(self, prompt)

    def run(self, prompt: Sequence[int]) -> SMCResult:
        run = self.stream(prompt)
        for _ in run:
            pass
        return run.result()


class SMCRun(Iterator[StepRecord]):
    """One run of the particle system; iterate it to decode, call ``result()`` whenever.

    ``decoded`` counts steps run on the device, ``step`` the steps turned into records
    (they differ by less than ``stream_every`` between flushes).
    """

    def __init__(self, sampler: PowerSMC, prompt: Sequence[int]) -> None:
        self.sampler = sampler
        self.config = config = sampler.config
        self.model = model = sampler.model
        self.parts = sampler.parts()
        n = config.n_particles
        self._wdtype = weight_dtype(model.device)
        self._start_time = time.perf_counter()
        self.generator = torch.Generator(device=model.device).manual_seed(config.seed)
        width = min(config.max_new_tokens, 64)
        self.state = ParticleState.start(
            model, prompt, n, config.alpha_start, self._wdtype, width, config.max_new_tokens
        )
        self.step = 0
        self.decoded = 0
        self.log_z = 0.0
        self.n_resamples = 0
        self.ess_trace: list[float] = []
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
        return int(self.state.forwards)

    def _decode_step(self) -> None:
        """Run ``step`` for token t; per token, read texts now and raise a NaN at once."""
        t = self.decoded + 1
        eager = self.every == 1
        reader = self._read_texts if eager else None
        state, pending = step(self.parts, self.state, t, self.generator, reader)
        if eager:
            logits_ok, weights_ok = pending.scalars[4:].tolist()
            if not logits_ok:
                raise nan_error(self.model.name, t)
            if not weights_ok:
                raise weights_error(t)
        self.state, self.decoded = state, t
        self._pending.append(pending)

    def _read_texts(
        self, tokens: torch.Tensor, grows: torch.Tensor
    ) -> tuple[torch.Tensor | None, tuple[str, ...] | None]:
        """Per token: push the tokens to the texts; the stop rules say which rows stop."""
        if self.texts is None:
            return None, None
        pieces = self.texts.push(tokens.tolist(), grows.tolist())
        stopped = None
        if self.stop is not None:
            stopped = torch.tensor(self.stop.update(pieces), device=tokens.device)
        return stopped, tuple(self.texts.texts)

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

    def _reorder_text(self, ancestors: list[int]) -> None:
        if self.texts is not None:
            self.texts.reorder(ancestors)
        if self.stop is not None:
            self.stop.reorder(ancestors)

    def result(self) -> SMCResult:
        """The weighted particle set so far (final once iteration has stopped).

        Steps decoded but not yet delivered as records are flushed (and queued) first. A
        point-mass proposal (greedy) estimates no Ẑ (NaN) and traces no ESS.
        """
        self._flush()
        state = self.state
        weights = state.log_w.exp()
        weights = weights / weights.sum()
        chosen = self.parts.chooser.choose(weights, state.log_p, self.config.seed)
        eos = set(self.model.eos_token_ids)
        rows = state.history[:, : self.step].tolist()
        completions = [[tok for tok in row if tok >= 0 and tok not in eos] for row in rows]
        point_mass = self.parts.proposal.point_mass
        return SMCResult(
            completions=completions,
            weights=weights.tolist(),
            chosen=chosen,
            log_p=state.log_p.tolist(),
            log_z=math.nan if point_mass else self.log_z,
            n_resamples=self.n_resamples,
            ess_trace=[] if point_mass else list(self.ess_trace),
            finished=state.finished.tolist(),
            n_steps=self.step,
            elapsed=time.perf_counter() - self._start_time,
            texts=None if self.texts is None else list(self.texts.texts),
            method=self.sampler.method,
            extras=self._extras(),
        )

    def _extras(self) -> dict:
        """Token forwards (rollouts included); look-ahead runs add their boundary trace."""
        extras: dict = {"token_forwards": self.token_forwards}
        if self.parts.lookahead is not None:
            extras["lookahead"] = self.parts.lookahead.boundaries(before=self.step)
        return extras
