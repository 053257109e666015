"""Baselines on the same model protocol and in the same streaming style.

- ``TemperatureSampling``: N independent sequences from q ∝ p^(1/T) token by token
  (T = 1: plain ancestral sampling; T = 1/alpha: token-level low temperature).
  It is the SMC loop with uniform weights and no resampling.
- ``BestOfN``: N ancestral samples, keep the one with the highest log p(y|x).
- ``MHPowerSampler``: Metropolis–Hastings power sampling (Karan & Du, 2025).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch

from .config import SMCConfig
from .models.base import LanguageModel
from .records import SMCResult
from .sampler import PowerSMC
from .stopping import StopRule
from .tempering import tempered_logprobs

__all__ = ["BestOfN", "MHPowerSampler", "MHRecord", "TemperatureSampling"]


class TemperatureSampling(PowerSMC):
    """Token-level temperature sampling of ``n_particles`` independent sequences."""

    method = "temperature"

    def __init__(
        self,
        model: LanguageModel,
        temperature: float = 1.0,
        n: int = 1,
        max_new_tokens: int = 128,
        seed: int = 0,
        stop: StopRule | None = None,
        track_text: bool = True,
        stream_every: int = 1,
    ) -> None:
        config = SMCConfig(
            alpha=1.0,
            n_particles=n,
            ess_threshold=0.0,
            proposal_temperature=temperature,
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
        super().__init__(model, config, stop=stop, track_text=track_text, stream_every=stream_every)
        self.temperature = config.proposal_temperature
        self.method = "base" if self.temperature == 1.0 else "lowtemp"

    def reweights(self) -> bool:
        return False


class BestOfN(TemperatureSampling):
    """N ancestral samples at temperature 1; ``chosen`` is the argmax of log p(y|x)."""

    method = "bon"

    def __init__(self, model: LanguageModel, n: int = 8, **kwargs) -> None:
        super().__init__(model, temperature=1.0, n=n, **kwargs)
        self.method = "bon"

    def run(self, prompt: Sequence[int]) -> SMCResult:
        result = super().run(prompt)
        return replace(result, chosen=max(range(len(result.log_p)), key=result.log_p.__getitem__))


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


@dataclass(frozen=True)
class _Path:
    tokens: list[int]
    log_p: list[float]  # per-token log p
    log_q: list[float]  # per-token log q (proposal at temperature 1/alpha)
    ended: bool  # emitted EOS or a stop rule


class MHPowerSampler:
    """Karan & Du power sampling: grow in blocks, then K MH steps on suffixes per block.

    Block k targets p(y_1:kB)^alpha over sequences truncated at k·B tokens. An MH
    step picks m uniformly in [0, |y|), redraws y_m.. from q ∝ p^(1/tau) (tau = 1/alpha)
    up to the block end, and accepts with probability
        min(1, [p(y')^alpha q(y_m..|y_<m) |y|] / [p(y)^alpha q(y'_m..|y_<m) |y'|]),
    the |y| factors accounting for the uniform choice of m on sequences of
    different lengths. Every redraw re-runs the prefix (the method's real cost).
    """

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

    # -- proposal ---------------------------------------------------------------------
    def _extend(
        self, prompt: list[int], path: _Path, keep: int, limit: int, gen: torch.Generator
    ) -> _Path:
        """Keep path[:keep] and draw tokens from q until EOS, a stop rule or ``limit`` tokens."""
        tokens, log_p, log_q = path.tokens[:keep], path.log_p[:keep], path.log_q[:keep]
        if len(tokens) >= limit:
            return _Path(tokens, log_p, log_q, path.ended and keep == len(path.tokens))
        state, logp = self.model.start(prompt + tokens, 1)
        self._forwards += max(1, len(prompt) + len(tokens))
        stop = self.stop
        text = ""
        if stop is not None:
            stop.reset(1)
            text = self.model.decode_batch([tokens])[0]
            stop.update([text])
        eos = set(self.model.eos_token_ids)
        ended = False
        one = torch.ones(1, dtype=torch.bool, device=self.model.device)
        while len(tokens) < limit:
            row = logp[0].to(torch.float64)
            if torch.isnan(row).any():
                raise FloatingPointError(
                    f"model {self.model.name!r} returned NaN log-probabilities"
                )
            logq = tempered_logprobs(row, self.tau)
            tok = int(torch.multinomial(logq.exp(), 1, generator=gen))
            tokens.append(tok)
            log_p.append(float(row[tok]))
            log_q.append(float(logq[tok]))
            if tok in eos:
                ended = True
                break
            if stop is not None:
                new_text = self.model.decode_batch([tokens])[0]
                if stop.update([new_text[len(text) :]])[0]:
                    ended = True
                    break
                text = new_text
            if len(tokens) >= limit:
                break
            state, logp = self.model.advance(
                state, torch.tensor([tok], device=self.model.device), one
            )
            self._forwards += 1
        return _Path(tokens, log_p, log_q, ended)

    def stream(self, prompt: Sequence[int]) -> Iterator[MHRecord]:
        """Yield one record after each block's extension and after each MH step."""
        start = time.perf_counter()
        prompt = list(prompt)
        gen = torch.Generator().manual_seed(self.seed)
        self._forwards = 0
        path = _Path([], [], [], False)
        accepted_total = tried = 0
        n_blocks = math.ceil(self.max_new_tokens / self.block_size)
        for block in range(1, n_blocks + 1):
            limit = min(block * self.block_size, self.max_new_tokens)
            if not path.ended:
                path = self._extend(prompt, path, len(path.tokens), limit, gen)
            last = block == n_blocks
            yield self._record(
                block,
                0,
                False,
                accepted_total,
                tried,
                path,
                start,
                done=last and self.mh_steps == 0,
            )
            # Blocks continue after an EOS: the next block's target admits longer
            # sequences, and stopping early would leave the chain short of pi_alpha.
            for k in range(1, self.mh_steps + 1):
                m = int(torch.randint(len(path.tokens), (1,), generator=gen))
                proposal = self._extend(prompt, path, m, limit, gen)
                log_ratio = (
                    self.alpha * (sum(proposal.log_p[m:]) - sum(path.log_p[m:]))
                    + sum(path.log_q[m:])
                    - sum(proposal.log_q[m:])
                    + math.log(len(path.tokens))
                    - math.log(len(proposal.tokens))
                )
                accept = math.log(float(torch.rand(1, generator=gen))) < min(0.0, log_ratio)
                if accept:
                    path = proposal
                tried += 1
                accepted_total += accept
                yield self._record(
                    block,
                    k,
                    accept,
                    accepted_total,
                    tried,
                    path,
                    start,
                    done=last and k == self.mh_steps,
                )
        self._final = path

    def _record(self, block, k, accepted, n_acc, tried, path, start, done) -> MHRecord:
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
            elapsed=time.perf_counter() - start,
            text=text,
            done=done,
        )

    def run(self, prompt: Sequence[int]) -> SMCResult:
        start = time.perf_counter()
        records = list(self.stream(prompt))
        path = self._final
        eos = set(self.model.eos_token_ids)
        completion = [t for t in path.tokens if t not in eos]
        return SMCResult(
            completions=[completion],
            weights=[1.0],
            chosen=0,
            log_p=[float(sum(path.log_p))],
            log_z=math.nan,
            n_resamples=0,
            ess_trace=[],
            finished=[path.ended],
            n_steps=len(path.tokens),
            elapsed=time.perf_counter() - start,
            texts=[self.model.decode_batch([completion])[0]],
            method="mh",
            extras={
                "token_forwards": self._forwards,
                "acceptance_rate": records[-1].acceptance_rate,
                "acceptance_trace": [r.acceptance_rate for r in records if r.mh_step > 0],
            },
        )
