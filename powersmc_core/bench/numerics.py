"""llama.cpp's own numerics: how much a prefix's next-token law moves with the batch it is in.

Three measurements, all returning data (the CLI prints, ``format_numerics`` renders):

* ``layout_numerics``: the same prefix evaluated in different batch layouts on llama.cpp
  (one llama context per layout, made here with the low-level API), each under flash
  attention ``fa-auto`` (llama.cpp's default, the backend's) and ``fa-off`` (the default of
  ``llama_cpp.Llama`` in 0.3.36):

  - ``<fa>/prefill/bB``: the whole prefix decoded into one sequence, B tokens per decode
    (n_batch = n_ubatch = B), logits of the last token;
  - ``<fa>/rows/N<n>/slot<s>/same|diff``: the backend's step layout: prefix[:-1] prefilled
    once and copied to N sequences, then ONE decode of N tokens (one per sequence, at the
    same position) with the prefix's last token in row s; the other rows carry the same
    token or different (random) tokens.

  Against the reference of the same flash setting, ``<fa>/prefill/b512`` (what
  ``llama_cpp.Llama`` does), each layout reports max |Δ log p| over the reference's top-20
  tokens and KL(ref ‖ layout); also KL(fa-auto ref ‖ layout) and KL(torch ‖ layout), torch
  being float32 on the dequantised weights.
* ``two_token_target_tv``: pi_alpha(y1, y2) ∝ (p(y1) p(y2|y1))^alpha over T = 2 new tokens,
  exact on torch (``two_token_target``: y1 over the top-k of p^alpha, y2 from one batched
  forward per chunk of y1), against Power-SMC estimates on llama.cpp AND on torch with the
  same seeds (common random numbers): TV(torch SMC) is the Monte-Carlo floor, the excess
  TV(llama.cpp SMC) − TV(torch SMC) is llama.cpp's numerics (plus MC noise, reported).
  ``exact_marginal_tvs``: the same target's exact y1 marginal on each backend, no sampling.
* ``requant_comparison``: the embedded Q4_1 file against requantised copies (Q4_0, which
  llama.cpp repacks to an interleaved 8x8 layout for AVX2 at load, and Q8_0): SMC ms per
  token at N = 8, interleaved repeats, and mean KL(torch ‖ file) over a few hundred prefixes.

Cost on two shared cores (load average ~10): the layouts (2 prompts × 2 prefixes × 26
layouts) ~5 min, the target ~4 min, the requantisation ~7 min.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from powersmc_core.models.base import LanguageModel

__all__ = [
    "NUMERICS_PROMPTS",
    "PARTS",
    "LayoutRow",
    "RequantResult",
    "TargetTV",
    "TwoTokenTarget",
    "exact_marginal_tvs",
    "format_numerics",
    "layout_numerics",
    "layout_summary",
    "numerics_json",
    "numerics_report",
    "requant_comparison",
    "two_token_enumerated",
    "two_token_target",
    "two_token_target_tv",
]

NUMERICS_PROMPTS = (
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in one sentence why the sky is blue.",
    "List three prime numbers.",
)
PREFILL_BATCHES = (1, 8, 64, 512)
ROW_COUNTS = (1, 8, 32)
TOP = 20  # tokens compared by max |Δ log p|
CELL_PAD = 256  # llama.cpp pads each sequence's cells to a multiple of this


# ---- small maths -------------------------------------------------------------------------
def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> float:
    """KL(p ‖ q) = sum_v p(v) (log p(v) − log q(v)), in nats (float64)."""
    p_log, q_log = p_log.double(), q_log.double()
    return float((p_log.exp() * (p_log - q_log)).sum())


def _max_top_diff(ref: torch.Tensor, other: torch.Tensor, top: int = TOP) -> float:
    """max over the reference's top-``top`` tokens v of |log p_ref(v) − log p_other(v)|."""
    idx = torch.topk(ref, top).indices
    return float((ref[idx].double() - other[idx].double()).abs().max())


# ---- llama.cpp contexts with a chosen batch layout ----------------------------------------
class _Context:
    """A llama context (per-sequence KV streams, as the backend) with chosen n_batch/n_ubatch."""

    def __init__(
        self, weights: Any, cells: int, n_seq: int, batch: int, threads: int, flash: int = -1
    ) -> None:
        lib = weights.lib
        params = lib.llama_context_default_params()
        # -1 auto (llama.cpp's default and the backend's: on for this CPU), 0 off (the
        # default of llama_cpp.Llama in 0.3.36). With it off, p depends on the layout.
        params.flash_attn_type = flash
        per_seq = -(-cells // CELL_PAD) * CELL_PAD
        params.n_ctx = per_seq * n_seq
        params.n_batch = params.n_ubatch = batch
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False  # the backend's setting: one KV stream per sequence
        params.no_perf = True
        self.lib, self.vocab = lib, weights.vocab_size
        self.pointer = lib.llama_init_from_model(weights.pointer, params)
        if not self.pointer:
            raise RuntimeError(f"llama.cpp could not create a context ({n_seq} x {per_seq} cells)")
        self.capacity = batch
        self.batch = lib.llama_batch_init(batch, 0, 1)

    def decode(
        self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int], want: Any
    ) -> None:
        """One llama_decode; ``want`` is a bool or one bool per token (logits wanted)."""
        b, count = self.batch, len(tokens)
        flags = [want] * count if isinstance(want, bool) else list(want)
        for i in range(count):  # <= a few hundred tokens: a Python loop is fine here
            b.token[i], b.pos[i], b.n_seq_id[i] = int(tokens[i]), int(positions[i]), 1
            b.seq_id[i][0], b.logits[i] = int(seqs[i]), int(bool(flags[i]))
        b.n_tokens = count
        status = int(self.lib.llama_decode(self.pointer, b))
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")

    def prefill(self, ids: Sequence[int], seq: int = 0, all_logits: bool = False) -> None:
        """Decode ``ids`` into ``seq`` in chunks of n_batch; logits for the last (or all)."""
        for begin in range(0, len(ids), self.capacity):
            chunk = ids[begin : begin + self.capacity]
            want = [all_logits or begin + i == len(ids) - 1 for i in range(len(chunk))]
            self.decode(chunk, range(begin, begin + len(chunk)), [seq] * len(chunk), want)

    def logp(self, rows: int) -> torch.Tensor:
        """log-softmax of the last decode's (rows, V) logits, a new float32 tensor."""
        pointer = self.lib.llama_get_logits(self.pointer)
        view = np.ctypeslib.as_array(pointer, shape=(rows, self.vocab))
        return torch.log_softmax(torch.from_numpy(view.copy()), dim=-1)

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.pointer)


def _prefill_logp(
    weights: Any, ids: Sequence[int], batch: int, threads: int, flash: int = -1
) -> torch.Tensor:
    """log p(. | ids) with ids decoded ``batch`` tokens at a time into one sequence, (V,)."""
    ctx = _Context(weights, len(ids) + 1, 1, batch, threads, flash)
    try:
        ctx.prefill(list(ids))
        return ctx.logp(1)[0]
    finally:
        ctx.close()


def _rows_logp(
    weights: Any,
    ids: Sequence[int],
    n_rows: int,
    slot: int,
    others: str,
    threads: int,
    seed: int = 0,
    flash: int = -1,
) -> torch.Tensor:
    """log p(. | ids) read from row ``slot`` of one N-row step decode (the backend's layout).

    ids[:-1] is prefilled (512 per decode) into sequence 0 and copied to the other N − 1
    sequences; then one decode of N tokens at position len(ids) − 1: row ``slot`` holds
    ids[-1], the others ids[-1] too (``same``) or random tokens (``diff``).
    """
    if not 0 <= slot < n_rows:
        raise ValueError(f"slot must be in [0, {n_rows}), got {slot}")
    if others not in ("same", "diff"):
        raise ValueError(f"others must be 'same' or 'diff', got {others!r}")
    ctx = _Context(weights, len(ids) + 1, n_rows, max(n_rows, 512), threads, flash)
    try:
        ctx.prefill(list(ids[:-1]))
        memory = ctx.lib.llama_get_memory(ctx.pointer)
        for seq in range(1, n_rows):
            ctx.lib.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        rng = np.random.default_rng(seed)
        tokens = np.full(n_rows, ids[-1], dtype=np.int64)
        if others == "diff":
            tokens = rng.integers(0, weights.vocab_size, n_rows)
            tokens[slot] = ids[-1]
        ctx.decode(tokens.tolist(), [len(ids) - 1] * n_rows, range(n_rows), True)
        return ctx.logp(n_rows)[slot]
    finally:
        ctx.close()


FLASH = {"fa-auto": -1, "fa-off": 0}  # flash attention: llama.cpp's default, Llama's default

Layout = Callable[[Any, Sequence[int], int], torch.Tensor]


def _layouts(
    batches: Sequence[int] = PREFILL_BATCHES, row_counts: Sequence[int] = ROW_COUNTS
) -> list[tuple[str, str, Layout]]:
    """(name, factor, fn(weights, ids, threads) -> log p (V,)) for every layout measured,
    under both flash-attention settings (``FLASH``)."""
    if any(b < 1 for b in batches) or any(n < 1 for n in row_counts):
        raise ValueError(f"batch sizes and row counts must be >= 1, got {batches}, {row_counts}")
    out: list[tuple[str, str, Layout]] = []
    for fa, flash in FLASH.items():
        for b in batches:
            fn = lambda w, ids, t, b=b, f=flash: _prefill_logp(w, ids, b, t, f)  # noqa: E731
            out.append((f"{fa}/prefill/b{b}", "prompt batch", fn))
        for n in row_counts:
            combos = [(0, "same")] if n == 1 else [(0, "same"), (n - 1, "same"), (0, "diff")]
            combos += [(n - 1, "diff")] if n > 1 else []
            for slot, others in combos:
                factor = "rows N" if (slot, others) == (0, "same") else "slot/other rows"
                fn = lambda w, ids, t, n=n, s=slot, o=others, f=flash: _rows_logp(  # noqa: E731
                    w, ids, n, s, o, t, flash=f
                )
                out.append((f"{fa}/rows/N{n}/slot{slot}/{others}", factor, fn))
    return out


@dataclass(frozen=True)
class LayoutRow:
    """One (prefix, layout): distances of its next-token log-probs to the reference and torch."""

    prompt: int  # index into the prompts
    prefix_tokens: int
    layout: str
    factor: str  # "prompt batch", "rows N", "slot/other rows"
    max_abs_top20: float  # vs the reference of its flash setting, <fa>/prefill/b512
    kl_to_reference: float  # KL(ref ‖ layout)
    kl_to_fa_auto: float  # KL(fa-auto/prefill/b512 ‖ layout): the backend's setting
    kl_to_torch: float  # KL(torch ‖ layout)


def _chat_prompts(model: LanguageModel, texts: Sequence[str]) -> list[list[int]]:
    from powersmc_core.models.prompts import encode_prompt

    return [encode_prompt(model, text, chat=True) for text in texts]


def _greedy(model: LanguageModel, prompt: Sequence[int], steps: int) -> list[int]:
    """``steps`` greedy tokens after ``prompt`` (EOS allowed to be skipped: never stops)."""
    state, logp = model.start(prompt, 1)
    out: list[int] = []
    eos = torch.tensor(model.eos_token_ids)
    for _ in range(steps):
        token = int(logp[0].index_fill(0, eos, -math.inf).argmax())
        out.append(token)
        state, logp = model.advance(state, torch.tensor([token]), torch.tensor([True]))
    return out


def layout_numerics(
    llama: Any,
    torch_model: LanguageModel,
    prompts: Sequence[str] = NUMERICS_PROMPTS[:2],
    extra_tokens: Sequence[int] = (0, 8),
    threads: int = 1,
    layouts: Sequence[str] | None = None,
    batches: Sequence[int] = PREFILL_BATCHES,
    row_counts: Sequence[int] = ROW_COUNTS,
) -> list[LayoutRow]:
    """Every layout's next-token log-probs for every (chat prompt + first k greedy tokens).

    ``llama``: a ``LlamaCppModel`` (its loaded weights are used; its contexts are not).
    ``layouts``: names to keep (default all). Each layout is compared with the reference
    of its own flash-attention setting, ``<fa>/prefill/b512`` (the whole prefix in one
    decode: what ``llama_cpp.Llama`` does), and with ``fa-auto/prefill/b512`` (the backend's
    setting: ``kl_to_fa_auto`` says what the flash-attention switch alone moves).
    """
    table = _layouts(batches, row_counts)
    known = [name for name, _, _ in table]
    if layouts is not None:
        bad = sorted(set(layouts) - set(known))
        if bad:
            raise ValueError(f"unknown layouts {bad}; known: {known}")
    weights = llama.weights
    rows: list[LayoutRow] = []
    for p, prompt in enumerate(_chat_prompts(torch_model, prompts)):
        tail = _greedy(torch_model, prompt, max(extra_tokens, default=0))
        for k in extra_tokens:
            ids = list(prompt) + tail[:k]
            refs = {fa: _prefill_logp(weights, ids, 512, threads, f) for fa, f in FLASH.items()}
            with torch.inference_mode():
                exact = torch_model.next_token_logprobs(ids).float()
            for name, factor, fn in table:
                if layouts is not None and name not in layouts:
                    continue
                fa, _, rest = name.partition("/")
                ref = refs[fa]
                logp = ref if rest == "prefill/b512" else fn(weights, ids, threads)
                rows.append(
                    LayoutRow(
                        p,
                        len(ids),
                        name,
                        factor,
                        _max_top_diff(ref, logp),
                        _kl(ref, logp),
                        _kl(refs["fa-auto"], logp),
                        _kl(exact, logp),
                    )
                )
    return rows


def layout_summary(rows: Sequence[LayoutRow]) -> list[dict[str, Any]]:
    """Per layout: max over prefixes of max |Δ log p| (top-20), mean KL to ref and to torch."""
    out = []
    for name in dict.fromkeys(r.layout for r in rows):
        mine = [r for r in rows if r.layout == name]
        out.append(
            {
                "layout": name,
                "factor": mine[0].factor,
                "prefixes": len(mine),
                "max_abs_top20": max(r.max_abs_top20 for r in mine),
                "mean_kl_to_reference": statistics.fmean(r.kl_to_reference for r in mine),
                "mean_kl_to_fa_auto": statistics.fmean(r.kl_to_fa_auto for r in mine),
                "mean_kl_to_torch": statistics.fmean(r.kl_to_torch for r in mine),
            }
        )
    return out


# ---- the exact two-token target on torch --------------------------------------------------
Key = tuple[tuple[int, ...], bool]  # (tokens without EOS, finished), as SMCResult reports


@dataclass(frozen=True)
class TwoTokenTarget:
    """pi_alpha over completions of at most T = 2 new tokens, y1 restricted to ``first``.

    pi(y) ∝ P(y)^alpha with P(y) = p(y1) p(y2|y1) (or p(EOS) / p(y1) p(EOS|y1) when EOS ends
    it). ``log_first`` (k,) are log p(y1), ``log_second`` (k, V) log p(. | y1) for each
    enumerated non-EOS y1 (rows of an EOS y1 are unused); ``tail_bound`` ≥ the pi mass of
    every y1 left out: sum_{y1 ∉ first} p(y1)^alpha / Z_enumerated (since sum_y2 p^alpha ≤ 1).
    """

    alpha: float
    first: tuple[int, ...]
    log_first: torch.Tensor  # (k,) float64
    log_second: torch.Tensor  # (k, V) float64
    eos: frozenset[int]
    log_z: float  # log sum over the enumerated completions of P(y)^alpha
    tail_bound: float

    def log_pi(self, key: Key) -> float:
        """log pi_alpha(key) (normalised over the enumerated set); -inf if y1 was not enumerated."""
        tokens, finished = key
        a = self.alpha
        if not tokens:  # EOS first: sum over the EOS ids of p(e)^alpha
            terms = [
                a * float(self.log_first[i]) for i, t in enumerate(self.first) if t in self.eos
            ]
        else:
            if tokens[0] not in self._row:
                return -math.inf
            i = self._row[tokens[0]]
            base = float(self.log_first[i])
            if len(tokens) == 1 and finished:
                terms = [a * (base + float(self.log_second[i, e])) for e in self.eos]
            elif len(tokens) == 2 and not finished and tokens[1] not in self.eos:
                terms = [a * (base + float(self.log_second[i, tokens[1]]))]
            else:
                return -math.inf
        return _logsumexp(terms) - self.log_z if terms else -math.inf

    @property
    def _row(self) -> dict[int, int]:
        return {t: i for i, t in enumerate(self.first)}

    def first_marginal(self) -> dict[int, float]:
        """pi_alpha(y1) (EOS ids collapse to key -1): p(y1)^alpha sum_y2 p(y2|y1)^alpha / Z."""
        out: dict[int, float] = {}
        for i, t in enumerate(self.first):
            if t in self.eos:
                mass = math.exp(self.alpha * float(self.log_first[i]) - self.log_z)
                out[-1] = out.get(-1, 0.0) + mass
            else:
                inner = float(torch.logsumexp(self.alpha * self.log_second[i], 0))
                out[t] = math.exp(self.alpha * float(self.log_first[i]) + inner - self.log_z)
        return out


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


@torch.inference_mode()
def _second_rows(
    model: LanguageModel, prompt: Sequence[int], tokens: Sequence[int], chunk: int
) -> torch.Tensor:
    """log p(. | prompt, y1) for each y1 in ``tokens``: one batched advance per chunk, (k, V)."""
    out = []
    for begin in range(0, len(tokens), chunk):
        part = list(tokens[begin : begin + chunk])
        state, _ = model.start(prompt, len(part))
        active = torch.ones(len(part), dtype=torch.bool)
        _, second = model.advance(state, torch.tensor(part), active)
        out.append(second.double())
    return torch.cat(out) if out else torch.zeros(0, model.vocab_size, dtype=torch.float64)


def two_token_target(
    model: LanguageModel,
    prompt: Sequence[int],
    alpha: float = 4.0,
    tail: float = 1e-5,
    chunk: int = 64,
    max_first: int = 4096,
) -> TwoTokenTarget:
    """pi_alpha over T = 2 new tokens, y1 enumerated over the top-k of p(y1)^alpha.

    Z = sum_y1 p(y1)^alpha c(y1) with c(y1) = sum_y2 p(y2|y1)^alpha ≤ 1 (1 for EOS), so the
    pi mass of the y1 left out is ≤ sum_{rank > k} p(y1)^alpha / Z_k (Z_k: Z over the top k,
    ``tail_bound``). k starts where that bound holds with c = 1 and grows (twice at most)
    until it holds with the Z_k computed. y2: one batched ``advance`` per ``chunk`` y1s.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    eos = frozenset(int(e) for e in model.eos_token_ids)
    with torch.inference_mode():
        _, logp = model.start(prompt, 1)
    log_first_all = logp[0].double()  # (V,)
    powered = alpha * log_first_all
    order = torch.argsort(powered, descending=True)
    # tails[k] = log sum_{rank >= k} p^alpha (reverse cumulative log-sum-exp), (V + 1,)
    tails = torch.logcumsumexp(powered[order].flip(0), 0).flip(0)
    tails = torch.cat([tails, torch.tensor([-math.inf], dtype=tails.dtype)])
    first: list[int] = []
    rows = torch.zeros(0, log_first_all.numel(), dtype=torch.float64)
    log_z = -math.inf
    log_c = torch.zeros(0, dtype=torch.float64)
    for _ in range(3):
        # Least k with tails[k] - log_z_guess <= log(tail); the guess is Z over the top k
        # with c = 1 the first time (too big), then the Z computed so far (a lower bound).
        guess = tails[0] - tails if not first else log_z - tails
        ok = (guess >= -math.log(max(tail, 1e-300))).nonzero()
        k = int(ok[0]) if ok.numel() else order.numel()
        k = max(1, min(max(k, len(first)), max_first, order.numel()))
        new = [int(t) for t in order[len(first) : k]]
        grown = [t for t in new if t not in eos]
        extra = _second_rows(model, prompt, grown, chunk)
        new_rows = torch.zeros(len(new), log_first_all.numel(), dtype=torch.float64)
        for j, t in enumerate(new):
            if t not in eos:
                new_rows[j] = extra[grown.index(t)]
        rows = torch.cat([rows, new_rows])
        first += new
        new_c = torch.tensor(
            [
                0.0 if t in eos else float(torch.logsumexp(alpha * new_rows[j], 0))
                for j, t in enumerate(new)
            ],
            dtype=torch.float64,
        )
        log_c = torch.cat([log_c, new_c])
        log_z = float(torch.logsumexp(powered[order[: len(first)]] + log_c, 0))
        if float(tails[len(first)]) - log_z <= math.log(max(tail, 1e-300)) or len(first) >= min(
            max_first, order.numel()
        ):
            break
    log_first = log_first_all[order[: len(first)]]
    bound = math.exp(float(tails[len(first)]) - log_z)
    return TwoTokenTarget(alpha, tuple(first), log_first, rows, eos, log_z, bound)


def two_token_enumerated(target: TwoTokenTarget) -> dict[Key, float]:
    """Every enumerated completion's pi_alpha (for small vocabularies: tests, toy models)."""
    out: dict[Key, float] = {}
    vocab = target.log_second.shape[1]
    for t in target.first:
        if t in target.eos:
            keys: list[Key] = [((), True)]
        else:
            keys = [((t,), True)] + [((t, y), False) for y in range(vocab) if y not in target.eos]
        for key in keys:
            out[key] = math.exp(target.log_pi(key))
    return out


# ---- SMC against the exact target ---------------------------------------------------------
@dataclass(frozen=True)
class TargetTV:
    """TV of run-averaged SMC estimates to the exact two-token target, per backend.

    ``tv_pairs``: over completions (the enumerated ones; mass of completions whose y1 was not
    enumerated is ``outside``); ``tv_first``: over the marginal of y1. ``*_runs``: the same
    TV for each single run (spread = MC noise at N); the aggregate is over runs × N particles.
    """

    alpha: float
    n_particles: int
    runs: int
    enumerated_first: int
    tail_bound: float
    tv_pairs: dict[str, float]
    tv_first: dict[str, float]
    tv_pairs_runs: dict[str, list[float]]
    outside: dict[str, float]
    exact_tv_first_llamacpp: float  # TV between the exact y1 marginals on torch and llama.cpp
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def numerics_excess(self) -> float:
        """TV(llama.cpp SMC) − TV(torch SMC) over pairs: the part due to llama.cpp's numerics."""
        return self.tv_pairs["llamacpp"] - self.tv_pairs["torch"]


def _estimate(results: Sequence[Any]) -> dict[Key, float]:
    """Average over runs of each run's weighted particle set sum_i W_i δ_{(y_i, finished_i)}."""
    out: dict[Key, float] = {}
    for result in results:
        for tokens, w, fin in zip(result.completions, result.weights, result.finished, strict=True):
            key = (tuple(int(t) for t in tokens), bool(fin))
            out[key] = out.get(key, 0.0) + w / len(results)
    return out


def _tv_pairs(target: TwoTokenTarget, est: dict[Key, float]) -> tuple[float, float]:
    """(TV over the enumerated completions, estimate mass outside them).

    TV = 1/2 [sum_{y seen} |est − pi| + (1 − sum_{y seen} pi)]: unseen completions count pi.
    """
    seen_pi, diff, outside = 0.0, 0.0, 0.0
    for key, w in est.items():
        pi = math.exp(target.log_pi(key))
        if pi == 0.0:
            outside += w
        seen_pi += pi
        diff += abs(w - pi)
    return 0.5 * (diff + max(0.0, 1.0 - seen_pi)), outside


def _first_of(key: Key) -> int:
    """y1 of a completion; -1 when EOS came first (no tokens)."""
    return key[0][0] if key[0] else -1


def _tv_first(target: TwoTokenTarget, est: dict[Key, float]) -> float:
    exact = target.first_marginal()
    marg: dict[int, float] = {}
    for key, w in est.items():
        y1 = _first_of(key)
        marg[y1] = marg.get(y1, 0.0) + w
    keys = set(exact) | set(marg)
    return 0.5 * sum(abs(marg.get(k, 0.0) - exact.get(k, 0.0)) for k in keys)


def two_token_target_tv(
    models: dict[str, LanguageModel],
    prompt: Sequence[int],
    alpha: float = 4.0,
    n_particles: int = 64,
    runs: int = 8,
    seed: int = 0,
    tail: float = 1e-5,
    target: TwoTokenTarget | None = None,
) -> TargetTV:
    """Power-SMC (T = 2, alpha) on each backend in ``models`` ({"torch": .., "llamacpp": ..})
    against the exact target computed on ``models["torch"]``; runs use seeds seed..seed+runs-1
    on every backend (common random numbers: near-equal log-probs give near-equal particles).
    """
    from powersmc_core.engine.config import SMCConfig
    from powersmc_core.engine.run import PowerSMC

    if "torch" not in models:
        raise ValueError("models needs a 'torch' entry: the exact target is computed on it")
    target = (
        target if target is not None else two_token_target(models["torch"], prompt, alpha, tail)
    )
    config = SMCConfig(alpha=alpha, n_particles=n_particles, max_new_tokens=2, seed=seed)
    tv_pairs, tv_first, tv_runs, outside, seconds = {}, {}, {}, {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        results = []
        with torch.inference_mode():
            for r in range(runs):
                cfg = replace(config, seed=seed + r)
                results.append(PowerSMC(model, cfg, track_text=False).run(list(prompt)))
        seconds[name] = time.perf_counter() - start
        est = _estimate(results)
        tv_pairs[name], outside[name] = _tv_pairs(target, est)
        tv_first[name] = _tv_first(target, est)
        tv_runs[name] = [_tv_pairs(target, _estimate([res]))[0] for res in results]
    exact_llama = None
    if "llamacpp" in models:
        llama_target = _same_first(models["llamacpp"], prompt, target)
        exact = target.first_marginal()
        other = llama_target.first_marginal()
        # Both normalised over the same enumerated y1 set: TV of the two exact marginals.
        exact_llama = 0.5 * sum(abs(exact[k] - other.get(k, 0.0)) for k in exact)
    return TargetTV(
        alpha,
        n_particles,
        runs,
        len(target.first),
        target.tail_bound,
        tv_pairs,
        tv_first,
        tv_runs,
        outside,
        float("nan") if exact_llama is None else exact_llama,
        seconds,
    )


def _same_first(
    model: LanguageModel, prompt: Sequence[int], like: TwoTokenTarget
) -> TwoTokenTarget:
    """The two-token target on ``model`` over the same enumerated y1 as ``like``."""
    with torch.inference_mode():
        _, logp = model.start(prompt, 1)
        log_first = logp[0].double()[list(like.first)]
    rows = torch.zeros_like(like.log_second)
    todo = [i for i, t in enumerate(like.first) if t not in like.eos]
    with torch.inference_mode():
        second = _second_rows(model, prompt, [like.first[i] for i in todo], 64)
    if todo:
        rows[todo] = second
    a = like.alpha
    terms = [
        a * log_first[i] + (0 if t in like.eos else torch.logsumexp(a * rows[i], 0))
        for i, t in enumerate(like.first)
    ]
    log_z = float(torch.logsumexp(torch.stack([torch.as_tensor(x) for x in terms]), 0))
    return TwoTokenTarget(a, like.first, log_first, rows, like.eos, log_z, float("nan"))


def exact_marginal_tvs(
    torch_model: LanguageModel,
    others: dict[str, LanguageModel],
    prompts: Sequence[str] = NUMERICS_PROMPTS,
    alpha: float = 4.0,
    tail: float = 1e-5,
) -> list[dict[str, Any]]:
    """Per chat prompt: TV between the exact y1 marginals of the two-token pi_alpha on torch
    and on each model of ``others`` (same enumerated y1), with torch's top y1 and its mass.
    No sampling: what each backend's numerics alone do to the target."""
    out = []
    for text, ids in zip(prompts, _chat_prompts(torch_model, prompts), strict=True):
        target = two_token_target(torch_model, ids, alpha, tail)
        exact = target.first_marginal()
        top = max(exact, key=exact.__getitem__)
        row: dict[str, Any] = {
            "prompt": text,
            "enumerated_first": len(target.first),
            "tail_bound": target.tail_bound,
            "top_first": top,
            "top_mass": exact[top],
        }
        for name, model in others.items():
            other = _same_first(model, ids, target).first_marginal()
            row[name] = 0.5 * sum(abs(exact[k] - other.get(k, 0.0)) for k in exact)
        out.append(row)
    return out


# ---- requantisation -----------------------------------------------------------------------
@dataclass(frozen=True)
class RequantResult:
    """SMC ms/token at N (interleaved repeats) and mean KL(torch ‖ file) per GGUF file."""

    files: dict[str, str]
    sizes_mb: dict[str, float]
    ms_per_token: dict[str, list[float]]  # every repeat
    median_ms: dict[str, float]
    mean_kl_to_torch: dict[str, float]
    top1_agreement: dict[str, float]
    prefixes: int
    n_particles: int
    new_tokens: int
    threads: int

    @property
    def speedup(self) -> dict[str, float]:
        """Per file: median ms/token of the first file (the original) over this file's."""
        first = next(iter(self.median_ms.values()))
        return {name: first / ms for name, ms in self.median_ms.items()}


def _all_positions_llama(weights: Any, ids: Sequence[int], threads: int) -> torch.Tensor:
    """log p(. | ids[:i+1]) for every i, one sequence, 512 tokens per decode, (L, V)."""
    ctx = _Context(weights, len(ids) + 1, 1, 512, threads)
    try:
        out = []
        for begin in range(0, len(ids), 512):
            chunk = list(ids[begin : begin + 512])
            ctx.decode(chunk, range(begin, begin + len(chunk)), [0] * len(chunk), True)
            out.append(ctx.logp(len(chunk)))
        return torch.cat(out)
    finally:
        ctx.close()


def requant_comparison(
    files: dict[str, Path],
    base: Any,
    torch_model: LanguageModel,
    prompts: Sequence[str] = NUMERICS_PROMPTS,
    continuation: int = 64,
    n_particles: int = 8,
    new_tokens: int = 32,
    repeats: int = 5,
    threads: int = 2,
    seed: int = 0,
) -> RequantResult:
    """Time SMC per token at ``n_particles`` on each GGUF file (rounds interleaved, order
    rotating) and score each file's next-token law against torch: mean over prefixes of
    KL(torch ‖ file), prefixes = every position from the prompt's end over ``continuation``
    tokens sampled from torch (seeded), for each chat prompt.

    ``base``: the project's ``LlamaCppModel`` (its tokenizer and configs are reused).
    """
    from powersmc_core.bench.wrappers import SuppressEOS
    from powersmc_core.engine.config import SMCConfig
    from powersmc_core.engine.run import PowerSMC
    from powersmc_core.models.llamacpp.model import LlamaCppModel

    if len(files) < 2:
        raise ValueError("requant_comparison needs at least two files to compare")
    models = {
        name: LlamaCppModel(
            path,
            base.tokenizer,
            base.config,
            base.generation_config,
            name,
            threads=threads,
            max_new_tokens=new_tokens + 1,
        )
        for name, path in files.items()
    }
    # Fidelity: sequences sampled from torch, every position scored on every file.
    generator = torch.Generator().manual_seed(seed)
    sequences = []
    with torch.inference_mode():
        for ids in _chat_prompts(torch_model, prompts):
            state, logp = torch_model.start(ids, 1)
            tail = []
            for _ in range(continuation):
                token = int(torch.multinomial(logp[0].exp(), 1, generator=generator))
                tail.append(token)
                state, logp = torch_model.advance(
                    state, torch.tensor([token]), torch.tensor([True])
                )
            sequences.append((ids, tail))
    kls: dict[str, list[float]] = {name: [] for name in files}
    agree: dict[str, list[bool]] = {name: [] for name in files}
    count = 0
    for ids, tail in sequences:
        full = list(ids) + tail
        with torch.inference_mode():
            hf = torch_model.model  # the transformers module: every position in one forward
            exact = torch.log_softmax(hf(torch.tensor([full])).logits[0].float(), -1)
        exact = exact[len(ids) - 1 :]  # (continuation + 1, V): after the prompt, then each token
        count += exact.shape[0]
        for name, model in models.items():
            got = _all_positions_llama(model.weights, full, threads)[len(ids) - 1 :]
            p = exact.double().exp()
            kl = (p * (exact.double() - got.double())).sum(-1)
            kls[name].extend(kl.tolist())
            agree[name].extend((exact.argmax(-1) == got.argmax(-1)).tolist())
    # Speed: SMC at N, EOS suppressed (exactly new_tokens steps), rounds interleaved.
    prompt = _chat_prompts(torch_model, prompts[:1])[0]
    config = SMCConfig(alpha=4.0, n_particles=n_particles, max_new_tokens=new_tokens, seed=seed)
    names = list(models)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats + 1):  # round 0 is an untimed warm-up
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            sampler = PowerSMC(SuppressEOS(models[name]), replace(config, seed=seed + r))
            start = time.perf_counter()
            sampler.run(prompt)
            if r:
                times[name].append(1000 * (time.perf_counter() - start) / new_tokens)
    return RequantResult(
        files={k: str(v) for k, v in files.items()},
        sizes_mb={k: Path(v).stat().st_size / 2**20 for k, v in files.items()},
        ms_per_token=times,
        median_ms={k: statistics.median(v) for k, v in times.items()},
        mean_kl_to_torch={k: statistics.fmean(v) for k, v in kls.items()},
        top1_agreement={k: statistics.fmean(v) for k, v in agree.items()},
        prefixes=count,
        n_particles=n_particles,
        new_tokens=new_tokens,
        threads=threads,
    )


# ---- the bench entry point ---------------------------------------------------------------
PARTS = ("layout", "target", "requant")


def numerics_report(
    parts: Sequence[str] = PARTS,
    threads: int = 2,
    n_particles: int = 64,
    runs: int = 8,
    repeats: int = 5,
    alpha: float = 4.0,
    seed: int = 0,
    prompt: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``bench --numerics``: load smollm2 on both backends and run the chosen ``parts``.

    The layouts and the target measure the file the llama.cpp backend runs (the Q4_1 file;
    ``POWERSMC_LLAMACPP_QUANT=q8_0`` for its Q8_0 copy).

    ``prompt``: the chat prompt of the two-token target (default ``NUMERICS_PROMPTS[0]``).

    Returns {"layouts": [LayoutRow], "target": TargetTV, "requant": RequantResult, "meta": ..}
    (only the parts asked for).
    """
    from powersmc_core.models.backends import load_model_with_backend
    from powersmc_core.models.gguf_cache import embedded_gguf_path, requantised_gguf
    from powersmc_core.models.llamacpp.model import load_llamacpp_model

    bad = sorted(set(parts) - set(PARTS))
    if bad:
        raise ValueError(f"unknown --numerics parts {bad}; choose from {list(PARTS)}")
    say = log or (lambda _: None)
    torch_model = load_model_with_backend("smollm2", "torch", device="cpu")
    # max_new_tokens=2: the two-token SMC needs 3 cells per row beyond the prompt.
    llama = load_llamacpp_model("smollm2", threads=threads, max_new_tokens=2)
    report: dict[str, Any] = {
        "meta": {
            "threads": threads,
            "torch_threads": torch.get_num_threads(),
            "alpha": alpha,
            # The file the backend runs ($POWERSMC_LLAMACPP_QUANT; original: the Q4_1 file).
            "llamacpp_file": llama.weights.path.name,
        }
    }
    if "layout" in parts:
        say("layouts ...")
        report["layouts"] = layout_numerics(llama, torch_model, threads=threads)
    if "target" in parts:
        say("two-token target ...")
        ids = _chat_prompts(torch_model, [prompt or NUMERICS_PROMPTS[0]])[0]
        report["target"] = two_token_target_tv(
            {"torch": torch_model, "llamacpp": llama}, ids, alpha, n_particles, runs, seed
        )
        report["meta"]["target_prompt"] = prompt or NUMERICS_PROMPTS[0]
        report["marginals"] = exact_marginal_tvs(torch_model, {"llamacpp": llama}, alpha=alpha)
    if "requant" in parts:
        say("requantisation ...")
        # Q4_0 is repacked to 8x8 interleaved rows for AVX2; Q8_0 (4x8 on AVX2 in recent
        # llama.cpp) is the near-lossless requantisation of Q4_1.
        files = {"q4_1": embedded_gguf_path()}
        files.update({q: requantised_gguf(qtype=q) for q in ("q4_0", "q8_0")})
        report["requant"] = requant_comparison(
            files, llama, torch_model, repeats=repeats, threads=threads, seed=seed
        )
    return report


_MARGINAL_FIELDS = ("prompt", "enumerated_first", "tail_bound", "top_first", "top_mass")


# ---- rendering ----------------------------------------------------------------------------
def numerics_json(report: dict[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of a ``bench --numerics`` report (dataclasses to dicts)."""
    out: dict[str, Any] = {}
    for key, value in report.items():
        if isinstance(value, list) and value and isinstance(value[0], LayoutRow):
            out[key] = [asdict(v) for v in value]
        elif isinstance(value, TargetTV | RequantResult):
            out[key] = asdict(value)
        else:
            out[key] = value
    return out


def format_numerics(report: dict[str, Any]) -> str:
    """Plain-text tables of a ``bench --numerics`` report."""
    lines = []
    if "layouts" in report:
        lines.append(
            "llama.cpp batch layout vs <fa>/prefill/b512 of the same flash-attention setting "
            "(max |Δ log p| over its top-20, mean KLs; fa-auto is the backend's setting)"
        )
        lines.append(
            f"{'layout':30s} {'factor':16s} {'max|Δ|':>8s} {'KL ref':>9s} {'KL fa-auto':>10s} "
            f"{'KL torch':>9s}"
        )
        for s in layout_summary(report["layouts"]):
            lines.append(
                f"{s['layout']:30s} {s['factor']:16s} {s['max_abs_top20']:8.4f} "
                f"{s['mean_kl_to_reference']:9.2e} {s['mean_kl_to_fa_auto']:10.2e} "
                f"{s['mean_kl_to_torch']:9.2e}"
            )
    tv = report.get("target")
    if isinstance(tv, TargetTV):
        lines.append(
            f"two-token pi_alpha (alpha {tv.alpha:g}, N {tv.n_particles} x {tv.runs} runs, "
            f"{tv.enumerated_first} y1 enumerated, tail <= {tv.tail_bound:.1e})"
        )
        for name in tv.tv_pairs:
            runs = tv.tv_pairs_runs[name]
            lines.append(
                f"  {name:9s} TV pairs {tv.tv_pairs[name]:.4f}  TV y1 {tv.tv_first[name]:.4f}  "
                f"single runs {statistics.median(runs):.3f} [{min(runs):.3f}, {max(runs):.3f}]"
            )
        lines.append(
            f"  excess (llama.cpp - torch) {tv.numerics_excess:+.4f}; exact y1 marginals TV "
            f"{tv.exact_tv_first_llamacpp:.4f}"
        )
    for row in report.get("marginals", []):
        tvs = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in _MARGINAL_FIELDS)
        lines.append(
            f"  exact y1 TV vs torch {row['prompt'][:40]!r:44s} top mass {row['top_mass']:.3f}  "
            + tvs
        )
    rq = report.get("requant")
    if isinstance(rq, RequantResult):
        lines.append(
            f"requantisation: SMC N={rq.n_particles}, {rq.new_tokens} tokens, {rq.threads} threads"
        )
        for name in rq.files:
            ms = rq.ms_per_token[name]
            lines.append(
                f"  {name:10s} {rq.sizes_mb[name]:6.1f} MB  ms/token median {rq.median_ms[name]:.1f} "
                f"[{min(ms):.1f}, {max(ms):.1f}]  mean KL(torch) {rq.mean_kl_to_torch[name]:.4f}  "
                f"top-1 {rq.top1_agreement[name]:.3f} ({rq.prefixes} prefixes)  "
                f"speedup {rq.speedup[name]:.3f}x"
            )
    return "\n".join(lines)
