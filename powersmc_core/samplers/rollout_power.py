"""Rollout power sampling (Ji, Tutunov, Zimmer, Bou Ammar 2026, arXiv 2601.21590): APPROXIMATE.

Token by token, with no weights and no MCMC, from an estimate of pi_alpha's exact
next-token conditional. For a prefix s and Z_alpha(s) = sum_{y completing s} p(y|s)^alpha
(Z_alpha = 1 once s has ended: EOS, or the length limit),

    pi_alpha(v | s) = p(v|s)^alpha · Z_alpha(s+v) / Z_alpha(s),

and Z_alpha(s+v) = E_{y ~ q}[p(y|s+v)^alpha / q(y|s+v)] for any proposal q of the
continuation; rollouts y ~ q_tau ∝ p^(1/tau) token by token (tau = 1, plain ancestral
rollouts from p, is the paper's choice: the weight is p(y|s+v)^(alpha-1)).

Per step and row: the candidates are the top-K tokens of p(.|s) (every token when
K >= V); the mass outside the top K is DROPPED (the law is renormalised over the K
candidates). Each candidate that does not end the sequence gets M rollouts of depth
H (cut earlier by EOS or ``max_new_tokens``), weights w_vm = prod_j p(y_j)^alpha / q(y_j),
zeta_v = mean_m w_vm, and

    pi_hat(v) = p(v)^alpha zeta_v / sum_u p(u)^alpha zeta_u          (the plain ratio)
    pi_hat^(-j): the same with rollout j left out of every candidate's mean
    pi_JK(v) = M·pi_hat(v) − (M−1)/M · sum_j pi_hat^(-j)(v)           (jackknife, M >= 2)

clipped at 0 and renormalised (it sums to 1 before clipping). The ratio of estimates is
biased by O(1/M); the jackknife removes the 1/M term (what is left is O(1/M^2)).
Sources of bias that remain: finite M, a depth H shorter than the rest of the sequence
(the rollout weight then covers the first H tokens only), K < V (dropped tokens), and
a text stop rule, which ends the sampled sequences but not the rollouts. With the exact
Z_alpha (H full, M -> inf, K >= V, no stop rule) the sampled law is exactly pi_alpha.

The result is N independent samples with uniform weights; ``log_z`` is NaN: this
method estimates no normalising constant (sum_t log sum_v p^alpha zeta_hat would not
be unbiased). Records are ``StepRecord``s, one per token (uniform weights, ESS = N,
``log_z`` NaN, ``tau`` the rollout temperature); ``run.law`` holds the last step's
candidates and their estimated conditional (jackknifed and plain).

Batched: the N rows fan out to N·K candidate rows (the backend's ``reorder``, one
``advance``), then to N·K·M rollout rows, advanced by one batched ``advance`` per
rollout step; the candidate rows are a fork of the samples' state (``models.forking.fork``:
a new state, so the samples' own advance one batched forward per step from an untouched
state). The batch changes size, so a static KV cache cannot serve it; the toy, the
dynamic torch cache and llama.cpp (a new context for the fork, up to 256 rows) can.

Compute accounting (``token_forwards``), counted as the engine counts: one forward per
token appended to a row. Per sample and step
t < T (T = ``max_new_tokens``) without early EOS, with H_t = min(H, T − t):

    1 (the sampled token) + K' (the candidates) + K'·M·H_t (the rollout tokens)

(K' the candidates that do not end the sequence) and 1 at the last step.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from powersmc_core.engine.choosers import WeightedChoice
from powersmc_core.engine.proposals import TemperedProposal
from powersmc_core.engine.records import SMCResult, StepRecord
from powersmc_core.engine.staging import compute_dtype, nan_error
from powersmc_core.engine.stopping import StopRule
from powersmc_core.engine.tempering import draw_rows, renyi_entropy
from powersmc_core.engine.text import ParticleTexts
from powersmc_core.models.base import LanguageModel, start_run
from powersmc_core.models.forking import fork, fork_refusal

__all__ = [
    "CandidateLaw",
    "RolloutPowerSampler",
    "RolloutRun",
    "mean_conditional",
    "next_token_law",
]


def next_token_law(
    log_a: torch.Tensor, log_w: torch.Tensor, jackknife: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(jackknifed, plain) next-token laws over the candidates, (N, K) each.

    ``log_a`` (N, K): alpha·log p(v|s) (−inf for impossible candidates); ``log_w``
    (N, K, M): the rollouts' log weights, 0 for a candidate that ends the sequence
    (Z_alpha = 1). The leave-one-out sums are prefix + suffix sums, not a subtraction
    from the total, so no cancellation when one rollout dominates.
    """
    m = log_w.shape[-1]
    log_zeta = torch.logsumexp(log_w, dim=-1) - math.log(m)  # (N, K)
    plain = torch.softmax(log_a + log_zeta, dim=-1)
    if not jackknife or m < 2:
        return plain, plain
    top = log_w.amax(dim=-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, 0.0)
    w = (log_w - top).exp()  # (N, K, M), max 1 per candidate
    before = torch.nn.functional.pad(w.cumsum(-1)[..., :-1], (1, 0))  # sum_{m < j}
    after = torch.nn.functional.pad(w.flip(-1).cumsum(-1)[..., :-1], (1, 0)).flip(-1)
    log_zeta_loo = top + (before + after).log() - math.log(m - 1)  # (N, K, M)
    loo = torch.softmax(log_a[..., None] + log_zeta_loo, dim=1)  # over candidates
    loo = torch.where(torch.isnan(loo), plain[..., None], loo)  # a j with no mass left
    jack = m * plain - (m - 1) * loo.mean(dim=-1)
    jack = jack.clamp_min(0.0)
    return jack / jack.sum(dim=-1, keepdim=True), plain


@dataclass(frozen=True)
class CandidateLaw:
    """One step's candidates (N, K) token ids, their estimated conditional (jackknifed
    when on) and the plain ratio, (N, K) each; rows of finished samples are meaningless."""

    candidates: torch.Tensor
    probs: torch.Tensor
    plain: torch.Tensor


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class RolloutPowerSampler:
    """Approximate power sampling by rollouts (module docstring): N independent samples.

    candidates: K, the top-K tokens expanded per step (K >= V: all). rollouts: M per
    candidate (>= 2 with the jackknife). depth: H, rollout tokens per candidate (0: no
    rollouts, zeta = 1, i.e. token-level p^alpha over the top K). rollout_temperature:
    tau of the rollout proposal q ∝ p^(1/tau) (1: rollouts from p, as in the paper).
    """

    method = "rollout"

    def __init__(
        self,
        model: LanguageModel,
        alpha: float = 4.0,
        n_samples: int = 1,
        candidates: int = 8,
        rollouts: int = 8,
        depth: int = 8,
        max_new_tokens: int = 128,
        seed: int = 0,
        rollout_temperature: float = 1.0,
        jackknife: bool = True,
        stop: StopRule | None = None,
        track_text: bool = True,
    ) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            raise ValueError(f"alpha must be a number > 0, got {alpha!r}")
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        self.n_samples = _check_int("n_samples", n_samples, 1)
        self.candidates = _check_int("candidates (K)", candidates, 1)
        self.rollouts = _check_int("rollouts (M)", rollouts, 1)
        self.depth = _check_int("depth (H)", depth, 0)
        self.max_new_tokens = _check_int("max_new_tokens", max_new_tokens, 1)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        tau = rollout_temperature
        if isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau):
            raise ValueError(f"rollout_temperature must be a finite number > 0, got {tau!r}")
        if tau <= 0:
            raise ValueError(f"rollout_temperature must be a finite number > 0, got {tau!r}")
        if jackknife and self.rollouts < 2 and self.depth > 0:
            raise ValueError(
                "the jackknife leaves one rollout out, so it needs rollouts (M) >= 2, "
                f"got {rollouts}; pass jackknife=False for the plain ratio"
            )
        vocab = getattr(model, "vocab_size", self.candidates)
        rows = self.n_samples * min(self.candidates, vocab) * self.rollouts  # N·K·M
        if (refusal := fork_refusal(model, rows, "rollout power sampling")) is not None:
            raise ValueError(refusal)
        self.model = model
        self.alpha = float(alpha)
        self.seed = seed
        self.rollout_temperature = float(tau)
        self.jackknife = bool(jackknife)
        self.stop = stop
        self.track_text = track_text or stop is not None

    def stream(self, prompt: Sequence[int]) -> RolloutRun:
        """An iterator of ``StepRecord``s (one per token); ``result()`` at any time."""
        return RolloutRun(self, prompt)

    def run(self, prompt: Sequence[int]) -> SMCResult:
        run = self.stream(prompt)
        for _ in run:
            pass
        return run.result()

    # -- the estimator's input: overridable (a test's oracle returns exact Z_alpha) ------
    def rollout_log_weights(
        self,
        run: RolloutRun,
        candidates: torch.Tensor,
        cand_state: object,
        cand_logp: torch.Tensor,
        live: torch.Tensor,
        depth: int,
    ) -> torch.Tensor:
        """(N, K, M) log weights of M rollouts of depth ``depth`` from each live candidate.

        ``cand_state``/``cand_logp``: the N·K candidate rows (row n·K + k holds s_n + v_nk).
        One ``reorder`` fans them out to N·K·M rows, then one batched ``advance`` per
        rollout token; every token drawn by a live rollout row is counted.
        """
        n, k = candidates.shape
        m = self.rollouts
        model = run.model
        fan = torch.arange(n * k, device=live.device).repeat_interleave(m)
        state = model.reorder(cand_state, fan)
        logp = cand_logp[fan]
        active = live.reshape(-1)[fan]
        proposal = TemperedProposal(self.rollout_temperature)
        tau = self.rollout_temperature
        log_w = torch.zeros(n * k * m, dtype=torch.float64, device=live.device)
        for j in range(1, depth + 1):
            rows = logp.to(compute_dtype(logp), copy=True).masked_fill_(~active[:, None], 0.0)
            draw = proposal.draw(rows, active, tau, run.generator)
            inc = self.alpha * draw.lp_token.to(log_w.dtype) - draw.lq_token.to(log_w.dtype)
            log_w += torch.where(active, inc, 0.0)
            run.forwards += int(active.sum())
            active = active & ~torch.isin(draw.tokens, run.eos)
            if j < depth and bool(active.any()):
                feed = torch.where(active, draw.tokens, run.eos[0])
                state, logp = model.advance(state, feed, active)
            elif not bool(active.any()):
                break
        return log_w.view(n, k, m)


class RolloutRun(Iterator[StepRecord]):
    """One run: N independent samples grown token by token; ``result()`` whenever."""

    def __init__(self, sampler: RolloutPowerSampler, prompt: Sequence[int]) -> None:
        self.sampler = sampler
        self.model = model = sampler.model
        n = sampler.n_samples
        self._start = time.perf_counter()
        self.generator = torch.Generator(device=model.device).manual_seed(sampler.seed)
        self.eos = torch.tensor(model.eos_token_ids, dtype=torch.long, device=model.device)
        self.model_state, self.logp = start_run(model, prompt, n, sampler.max_new_tokens)
        self.prompt = [int(t) for t in prompt]
        self.tokens: list[list[int]] = [[] for _ in range(n)]  # emitted, EOS included
        self.log_p = torch.zeros(n, dtype=torch.float64, device=model.device)
        self.finished = torch.zeros(n, dtype=torch.bool, device=model.device)
        self.forwards = 0
        self.step = 0
        self.n_resamples = 0
        self.done = False
        self.law: CandidateLaw | None = None
        self.texts = ParticleTexts(model.decode_batch, n) if sampler.track_text else None
        self.stop = copy.deepcopy(sampler.stop)
        if self.stop is not None:
            self.stop.reset(n)

    def __iter__(self) -> RolloutRun:
        return self

    @property
    def prefixes(self) -> list[list[int]]:
        """Each sample's prompt + tokens so far (what a step's candidates extend)."""
        return [self.prompt + row for row in self.tokens]

    def __next__(self) -> StepRecord:
        if self.done:
            raise StopIteration
        return self._step()

    def _step(self) -> StepRecord:
        s, model = self.sampler, self.model
        t = self.step + 1
        n = s.n_samples
        last = t >= s.max_new_tokens
        active = ~self.finished
        logp = self.logp.to(compute_dtype(self.logp), copy=True)
        if not bool(torch.isfinite(logp.logsumexp(-1))[active].all()):
            raise nan_error(model.name, t)
        logp.masked_fill_(~active[:, None], 0.0)
        k = min(s.candidates, logp.shape[-1])
        cand_lp, cand = logp.topk(k, dim=-1)  # (N, K), most likely first
        possible = torch.isfinite(cand_lp) & active[:, None]
        live = possible & ~torch.isin(cand, self.eos)
        if last:  # every candidate ends the sequence: Z_alpha = 1, no rollouts
            live = torch.zeros_like(live)
        depth = min(s.depth, s.max_new_tokens - t)
        log_a = torch.where(possible, s.alpha * cand_lp, -torch.inf).to(torch.float64)
        log_a = torch.where(active[:, None], log_a, 0.0)  # finished rows: anything finite
        expanded = depth > 0 and bool(live.any())
        m = s.rollouts if expanded else 1
        log_w = torch.zeros((n, k, m), dtype=torch.float64, device=logp.device)
        main_state = self.model_state
        if expanded:
            # The candidate and rollout rows live in a fork; the samples' state stays as is.
            rows = torch.arange(n, device=logp.device).repeat_interleave(k)
            cand_state = fork(model, main_state, rows, room=depth, capacity=n * k * s.rollouts)
            cand_state, cand_logp = model.advance(cand_state, cand.reshape(-1), live.reshape(-1))
            self.forwards += int(live.sum())
            log_w = s.rollout_log_weights(self, cand, cand_state, cand_logp, live, depth)
            log_w = torch.where(live[..., None], log_w.to(torch.float64), 0.0)
        probs, plain = next_token_law(log_a, log_w, s.jackknife and expanded)
        self.law = CandidateLaw(cand, probs, plain)
        choice, _ = draw_rows(probs, self.generator)  # (N,)
        tokens = torch.where(active, cand.gather(1, choice[:, None]).squeeze(1), -1)
        lp_token = torch.where(active, cand_lp.gather(1, choice[:, None]).squeeze(1), 0.0)
        self.forwards += int(active.sum())
        renyi = torch.where(active, renyi_entropy(logp, s.alpha), torch.nan)
        self.log_p = self.log_p + lp_token.to(torch.float64)
        emitted_eos = active & torch.isin(tokens, self.eos)
        grows = active & ~emitted_eos
        host_tokens, host_grows = tokens.tolist(), grows.tolist()
        for i, (tok, a) in enumerate(zip(host_tokens, active.tolist(), strict=True)):
            if a:
                self.tokens[i].append(tok)
        finished = self.finished | emitted_eos
        texts = None
        if self.texts is not None:
            pieces = self.texts.push(host_tokens, host_grows)
            if self.stop is not None:
                stopped = torch.tensor(self.stop.update(pieces), device=grows.device)
                finished = finished | (grows & stopped)
            texts = tuple(self.texts.texts)
        self.finished = finished
        done = last or bool(finished.all())
        self.model_state = main_state
        if not done:
            feed = torch.where(grows, tokens, self.eos[0])
            self.model_state, self.logp = model.advance(main_state, feed, grows)
        self.step, self.done = t, done
        return self._record(t, host_tokens, renyi, texts, done)

    def _record(self, t: int, tokens: list[int], renyi, texts, done: bool) -> StepRecord:
        n = self.sampler.n_samples
        slots = tuple(range(n))
        return StepRecord(
            step=t,
            alpha=self.sampler.alpha,
            tau=self.sampler.rollout_temperature,
            catch_up=0.0,
            tokens=tuple(tokens),
            log_weights=(-math.log(n),) * n,
            log_increment=(0.0,) * n,
            renyi=tuple(renyi.tolist()),
            log_p=tuple(self.log_p.tolist()),
            finished=tuple(self.finished.tolist()),
            ess=float(n),
            resampled=False,
            ancestors=slots,
            roots=slots,
            n_lineages=n,
            n_unique_ancestors=n,
            log_z=math.nan,  # not estimated: the method is approximate
            elapsed=time.perf_counter() - self._start,
            texts=texts,
            done=done,
        )

    def result(self) -> SMCResult:
        """N samples, uniform weights; ``log_z`` NaN (no normalising constant is estimated)."""
        s = self.sampler
        n = s.n_samples
        weights = torch.full((n,), -math.log(n), dtype=torch.float64).exp()
        weights = weights / weights.sum()  # uniform, normalised as the engine does
        chosen = WeightedChoice().choose(weights, self.log_p, s.seed)
        eos = set(self.model.eos_token_ids)
        completions = [[tok for tok in row if tok not in eos] for row in self.tokens]
        return SMCResult(
            completions=completions,
            weights=weights.tolist(),
            chosen=chosen,
            log_p=self.log_p.tolist(),
            log_z=math.nan,
            n_resamples=0,
            ess_trace=[float(n)] * self.step,
            finished=self.finished.tolist(),
            n_steps=self.step,
            elapsed=time.perf_counter() - self._start,
            texts=None if self.texts is None else list(self.texts.texts),
            method=s.method,
            extras={
                "token_forwards": self.forwards,
                "approximate": True,
                "candidates": s.candidates,
                "rollouts": s.rollouts,
                "depth": s.depth,
                "jackknife": s.jackknife,
            },
        )


def mean_conditional(
    model: LanguageModel, prefix: Sequence[int], remaining: int, rows: int, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """E[pi_hat(. | prefix)] over the vocabulary and its standard error, (V,) each.

    ``rows`` independent estimates of the next-token law the sampler draws from after
    ``prefix`` with ``remaining`` tokens left (its ``max_new_tokens`` there), averaged;
    ``kwargs`` are ``RolloutPowerSampler``'s (alpha, candidates, rollouts, depth, ...).
    Each step's rollouts are fresh, so the sampler's law of a sequence is the product of
    these means along it: a bias measurement without the noise of sampling sequences.
    """
    sampler = RolloutPowerSampler(
        model, n_samples=rows, max_new_tokens=remaining, track_text=False, **kwargs
    )
    run = sampler.stream(prefix)
    next(run)
    law = run.law
    assert law is not None
    full = torch.zeros(rows, model.vocab_size, dtype=torch.float64)
    full.scatter_(1, law.candidates, law.probs.to(torch.float64))
    return full.mean(0), full.std(0) / math.sqrt(rows)
