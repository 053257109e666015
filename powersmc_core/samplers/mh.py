"""Metropolis–Hastings power sampling (Karan & Du, 2025), with the same run interface as Power-SMC.

``MHPowerSampler(model, ...).stream(prompt)`` returns an ``MHRun``: an iterator of frozen
``MHRecord``s (one after each block's extension and one after each MH step) whose
``result()`` is available at any time; ``run(prompt)`` consumes it. The result is a pure
function of the records (``mh_result``), so a caller that watches the records needs no
access to the run's internals.

The chain: grow the sequence in blocks of B tokens; block k targets p(y_1:kB)^alpha over
sequences cut at k·B tokens. An MH step picks m uniformly in [0, |y|), redraws y_m.. from
q ∝ p^(1/tau) (tau = 1/alpha by default) up to the block end, and accepts with probability

    min(1, [p(y')^alpha q(y_m..|y_<m) |y|] / [p(y)^alpha q(y'_m..|y_<m) |y'|]),

the |y| factors (the "length term") accounting for the uniform choice of m on sequences
of different lengths. Every redraw re-runs the prefix: one forward of the prefix plus one
per redrawn token (the method's real cost, counted in ``token_forwards``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.records import SMCResult
from powersmc_core.engine.stopping import StopRule
from powersmc_core.engine.tempering import tempered_logprobs
from powersmc_core.models.base import LanguageModel

__all__ = ["MHPowerSampler", "MHRecord", "MHRun", "accepts", "mh_result"]


@dataclass(frozen=True)
class MHRecord:
    """One Metropolis–Hastings step of the power sampler."""

    block: int
    mh_step: int  # 0 for the block's initial extension
    accepted: bool
    acceptance_rate: float  # running, over all MH steps so far
    length: int
    log_p: float  # log p(y|x) of the current state
    tokens: tuple[int, ...]
    token_forwards: int  # cumulative tokens pushed through the model
    elapsed: float
    text: str | None = None
    done: bool = False
    finished: bool = False  # the current state ended by EOS or a stop rule


@dataclass(frozen=True)
class _Path:
    tokens: list[int]
    log_p: list[float]  # per-token log p
    log_q: list[float]  # per-token log q (proposal at temperature tau)
    ended: bool  # emitted EOS or a stop rule


def accepts(u: float, log_ratio: float) -> bool:
    """Metropolis test u < min(1, exp(log_ratio)) for u ~ U[0, 1), done in logs.

    u = 0 (a possible draw of ``torch.rand``) has log u = -inf: always accepted, as
    u < exp(.) says; ``math.log(0.0)`` would raise instead.
    """
    log_u = math.log(u) if u > 0.0 else -math.inf
    return log_u < min(0.0, log_ratio)


class MHPowerSampler:
    """Karan & Du power sampling: grow in blocks, then K MH steps on suffixes per block."""

    method = "mh"

    def __init__(
        self,
        model: LanguageModel,
        alpha: float = 4.0,
        max_new_tokens: int = 128,
        block_size: int | None = None,
        mh_steps: int = 10,
        seed: int = 0,
        proposal_temperature: float | None = None,
        stop: StopRule | None = None,
    ) -> None:
        # Reuse SMCConfig's validation for the fields both samplers share.
        SMCConfig(
            alpha=alpha,
            max_new_tokens=max_new_tokens,
            seed=seed,
            proposal_temperature=proposal_temperature,
        )
        block_size = block_size if block_size is not None else max(1, max_new_tokens // 16)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
        if isinstance(mh_steps, bool) or not isinstance(mh_steps, int) or mh_steps < 0:
            raise ValueError(f"mh_steps must be an integer >= 0, got {mh_steps!r}")
        self.model = model
        self.alpha = float(alpha)
        self.max_new_tokens = max_new_tokens
        self.block_size = block_size
        self.mh_steps = mh_steps
        self.seed = seed
        self.tau = 1.0 / self.alpha if proposal_temperature is None else float(proposal_temperature)
        self.stop = stop

    def stream(self, prompt: Sequence[int]) -> MHRun:
        """An iterator of MH records; its ``result()`` is available at any time."""
        return MHRun(self, prompt)

    def run(self, prompt: Sequence[int]) -> SMCResult:
        """Consume ``stream(prompt)``; the result is ``mh_result`` of its records."""
        return mh_result(self.model, list(self.stream(prompt)))


class MHRun(Iterator[MHRecord]):
    """One MH chain. All state lives here (none on the sampler): one sampler, many runs."""

    def __init__(self, sampler: MHPowerSampler, prompt: Sequence[int]) -> None:
        self.sampler = sampler
        self.model = sampler.model
        self.prompt = list(prompt)
        self.generator = torch.Generator().manual_seed(sampler.seed)
        self.records: list[MHRecord] = []
        self._forwards = 0
        self._start = time.perf_counter()
        self._steps = self._chain()

    def __iter__(self) -> MHRun:
        return self

    def __next__(self) -> MHRecord:
        record = next(self._steps)
        self.records.append(record)
        return record

    def result(self) -> SMCResult:
        """The chain's current state as a one-sample result (final once iteration stopped)."""
        return mh_result(self.model, self.records)

    # -- the chain ----------------------------------------------------------------------
    def _chain(self) -> Iterator[MHRecord]:
        s = self.sampler
        path = _Path([], [], [], False)
        accepted_total = tried = 0
        n_blocks = math.ceil(s.max_new_tokens / s.block_size)
        for block in range(1, n_blocks + 1):
            limit = min(block * s.block_size, s.max_new_tokens)
            if not path.ended:
                path = self._extend(path, len(path.tokens), limit)
            last = block == n_blocks
            done = last and s.mh_steps == 0
            yield self._record(block, 0, False, accepted_total, tried, path, done)
            # Blocks continue after an EOS: the next block's target admits longer
            # sequences, and stopping early would leave the chain short of pi_alpha.
            for k in range(1, s.mh_steps + 1):
                m = int(torch.randint(len(path.tokens), (1,), generator=self.generator))
                proposal = self._extend(path, m, limit)
                log_ratio = (
                    s.alpha * (sum(proposal.log_p[m:]) - sum(path.log_p[m:]))
                    + sum(path.log_q[m:])
                    - sum(proposal.log_q[m:])
                    + math.log(len(path.tokens))
                    - math.log(len(proposal.tokens))
                )
                accept = accepts(float(torch.rand(1, generator=self.generator)), log_ratio)
                if accept:
                    path = proposal
                tried += 1
                accepted_total += accept
                done = last and k == s.mh_steps
                yield self._record(block, k, accept, accepted_total, tried, path, done)

    def _extend(self, path: _Path, keep: int, limit: int) -> _Path:
        """Keep path[:keep] and draw tokens from q until EOS, a stop rule or ``limit`` tokens."""
        model, stop, tau = self.model, self.sampler.stop, self.sampler.tau
        tokens, log_p, log_q = path.tokens[:keep], path.log_p[:keep], path.log_q[:keep]
        if len(tokens) >= limit:
            return _Path(tokens, log_p, log_q, path.ended and keep == len(path.tokens))
        state, logp = model.start(self.prompt + tokens, 1)
        self._forwards += max(1, len(self.prompt) + len(tokens))
        text = ""
        if stop is not None:
            stop.reset(1)
            text = model.decode_batch([tokens])[0]
            stop.update([text])
        eos = set(model.eos_token_ids)
        ended = False
        one = torch.ones(1, dtype=torch.bool, device=model.device)
        while len(tokens) < limit:
            row = logp[0].to(torch.float64)
            if torch.isnan(row).any():
                raise FloatingPointError(f"model {model.name!r} returned NaN log-probabilities")
            logq = tempered_logprobs(row, tau)
            tok = int(torch.multinomial(logq.exp(), 1, generator=self.generator))
            tokens.append(tok)
            log_p.append(float(row[tok]))
            log_q.append(float(logq[tok]))
            if tok in eos:
                ended = True
                break
            if stop is not None:
                new_text = model.decode_batch([tokens])[0]
                if stop.update([new_text[len(text) :]])[0]:
                    ended = True
                    break
                text = new_text
            if len(tokens) >= limit:
                break
            state, logp = model.advance(state, torch.tensor([tok], device=model.device), one)
            self._forwards += 1
        return _Path(tokens, log_p, log_q, ended)

    def _record(self, block, k, accepted, n_acc, tried, path, done) -> MHRecord:
        text = self.model.decode_batch([path.tokens])[0] if path.tokens else ""
        return MHRecord(
            block=block,
            mh_step=k,
            accepted=bool(accepted),
            acceptance_rate=n_acc / tried if tried else math.nan,
            length=len(path.tokens),
            log_p=float(sum(path.log_p)),
            tokens=tuple(path.tokens),
            token_forwards=self._forwards,
            elapsed=time.perf_counter() - self._start,
            text=text,
            done=done,
            finished=path.ended,
        )


def mh_result(model: LanguageModel, records: Sequence[MHRecord]) -> SMCResult:
    """The one-sample result of an MH chain from its records (the last holds the state)."""
    last = records[-1] if records else None
    eos = set(model.eos_token_ids)
    completion = [t for t in last.tokens if t not in eos] if last else []
    return SMCResult(
        completions=[completion],
        weights=[1.0],
        chosen=0,
        log_p=[last.log_p if last else 0.0],
        log_z=math.nan,
        n_resamples=0,
        ess_trace=[],
        finished=[last.finished if last else False],
        n_steps=last.length if last else 0,
        elapsed=last.elapsed if last else 0.0,
        texts=[model.decode_batch([completion])[0]],
        method="mh",
        extras={
            "token_forwards": last.token_forwards if last else 0,
            "acceptance_rate": last.acceptance_rate if last else math.nan,
            "acceptance_trace": [r.acceptance_rate for r in records if r.mh_step > 0],
        },
    )
