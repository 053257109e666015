"""Latency benchmark: what Power-SMC costs next to plain decoding, side by side.

``python -m powersmc_core bench`` times, in one process, on the same model, prompt
and number of new tokens T (EOS suppressed, so every method decodes exactly T):

1. baseline  — one sequence, plain ancestral decoding (the everyday cost);
2. limit     — N sequences in one batch and nothing else: start + T × (sample,
               advance). The physical floor for N particles on this backend;
3. smc       — ``PowerSMC`` with N particles, records consumed (the honest cost);
4. mh        — MH power sampling with the Karan & Du defaults (alpha 4, block
               size T/16, 10 MH steps per block), batch 1 on the same backend;
5. reference — optional: ``smc_power_sample_memopt`` from a local copy of the
               public Power-SMC reference code (``--reference-module FILE``);
6. generate / generate1 — Hugging Face ``model.generate`` sampling N sequences
               (and one), ``min_new_tokens = T`` banning EOS, with the static cache
               (compiled by transformers on CUDA) whenever ours is static: what the
               library itself reaches, for comparison (transformers models only).

On accelerators the SMC's records are read back every ``--stream-every`` steps
(default 16 there, 1 on CPU): no host synchronisation per token in between.

Each method runs ``repeats`` times; the order rotates between repeats (machines
are noisy and drift) and medians are reported. The headline ratios are
smc_over_limit = smc_s / limit_s (bookkeeping overhead) and mh_s / smc_s.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .baselines import MHPowerSampler
from .config import SMCConfig
from .models.base import LanguageModel, ModelState
from .models.toy import ToyLM
from .sampler import PowerSMC
from .tempering import sample_rows

__all__ = [
    "METHODS",
    "BenchResult",
    "SuppressEOS",
    "add_arguments",
    "decode_limit",
    "main",
    "run_bench",
    "summarise",
]

METHODS = ("baseline", "limit", "smc", "mh")
DEFAULT_PROMPT = "Explain in a few sentences why the sky is blue."
REQUIRED_KEYS = (
    "baseline_s",
    "limit_s",
    "smc_s",
    "mh_s",
    "smc_over_limit",
    "smc_over_baseline",
    "mh_over_baseline",
    "device",
    "model",
    "n_particles",
    "new_tokens",
    "repeats",
)


class _Wrapper:
    """A ``LanguageModel`` that passes every call to ``inner``; subclasses change some."""

    def __init__(self, model: LanguageModel) -> None:
        self.inner = model
        # The protocol's plain attributes, copied: the sampler reads them on hot paths.
        self.eos_token_id = model.eos_token_id
        self.eos_token_ids = tuple(model.eos_token_ids)
        self.vocab_size = model.vocab_size
        self.device = model.device
        self.name = model.name

    def start(self, prompt: Sequence[int], n: int) -> tuple[ModelState, torch.Tensor]:
        return self.inner.start(prompt, n)

    def advance(
        self, state: ModelState, tokens: torch.Tensor, active: torch.Tensor
    ) -> tuple[ModelState, torch.Tensor]:
        return self.inner.advance(state, tokens, active)

    def reorder(self, state: ModelState, ancestors: torch.Tensor) -> ModelState:
        return self.inner.reorder(state, ancestors)

    def decode_batch(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        return self.inner.decode_batch(sequences)

    def next_token_logprobs(self, prefix: Sequence[int]) -> torch.Tensor:
        return self.inner.next_token_logprobs(prefix)

    def __getattr__(self, name: str) -> Any:
        # Anything else (tokenizer, encode_prompt, token_names) is the wrapped model's.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class SuppressEOS(_Wrapper):
    """Model wrapper with p'(v|y) = p(v|y)·1[v ∉ EOS] / (1 − p(EOS|y)): EOS can never be drawn.

    Every method then decodes exactly T tokens, so their times compare like for
    like. One ``index_fill`` + ``logsumexp`` over the (n, V) rows per call; half
    precision rows are renormalised in float32 (the sampler upcasts them anyway).
    """

    def __init__(self, model: LanguageModel) -> None:
        super().__init__(model)
        self._eos = torch.tensor(self.eos_token_ids, dtype=torch.long, device=model.device)

    def _mask(self, logp: torch.Tensor) -> torch.Tensor:
        if logp.dtype in (torch.float16, torch.bfloat16):
            logp = logp.float()
        masked = logp.index_fill(-1, self._eos, -math.inf)  # (n, V), a new tensor
        return masked - torch.logsumexp(masked, dim=-1, keepdim=True)

    def start(self, prompt: Sequence[int], n: int) -> tuple[ModelState, torch.Tensor]:
        state, logp = self.inner.start(prompt, n)
        return state, self._mask(logp)

    def advance(
        self, state: ModelState, tokens: torch.Tensor, active: torch.Tensor
    ) -> tuple[ModelState, torch.Tensor]:
        state, logp = self.inner.advance(state, tokens, active)
        return state, self._mask(logp)

    def next_token_logprobs(self, prefix: Sequence[int]) -> torch.Tensor:
        return self._mask(self.inner.next_token_logprobs(prefix)[None])[0]


class Clock:
    """Seconds spent inside model calls, accumulated by ``Timed`` wrappers."""

    def __init__(self) -> None:
        self.seconds = 0.0


def clocked(fn: Callable[..., Any], clock: Clock) -> Callable[..., Any]:
    """``fn``, adding the wall time of every call to ``clock.seconds``."""

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            clock.seconds += time.perf_counter() - start

    return timed


class Timed(_Wrapper):
    """Protocol wrapper adding the wall time of start/advance/reorder to a ``Clock``.

    Splits a method's time into the model's share and everything else (sampling,
    weights, records). Meaningful on CPU only: on an accelerator the calls return
    before the kernels finish, so the bench does not use it there.
    """

    def __init__(self, model: LanguageModel, clock: Clock) -> None:
        super().__init__(model)
        self.clock = clock
        # Instance attributes: they take the place of _Wrapper's pass-through methods.
        self.start = clocked(model.start, clock)
        self.advance = clocked(model.advance, clock)
        self.reorder = clocked(model.reorder, clock)


def decode_limit(
    model: LanguageModel, prompt: Sequence[int], n: int, new_tokens: int, seed: int = 0
) -> torch.Tensor:
    """N sequences in one batch with nothing else: start, then T × (sample, advance).

    Exactly the model work Power-SMC does (one prefill, T − 1 batched advances)
    with none of its bookkeeping; returns the (n, T) tokens.
    """
    generator = torch.Generator(device=model.device).manual_seed(seed)
    state, logp = model.start(prompt, n)
    active = torch.ones(n, dtype=torch.bool, device=model.device)
    out = torch.empty((n, new_tokens), dtype=torch.long, device=model.device)
    for t in range(new_tokens):
        probs = logp.float().exp() if logp.dtype != torch.float64 else logp.exp()  # (n, V)
        tokens = sample_rows(probs, generator)  # (n,), no host sync
        out[:, t] = tokens
        if t + 1 < new_tokens:
            state, logp = model.advance(state, tokens, active)
    return out


# ---- settings and result ---------------------------------------------------------------
@dataclass(frozen=True)
class BenchSettings:
    """One benchmark configuration (everything the JSON needs to be reproduced)."""

    n_particles: int = 8
    new_tokens: int = 64
    repeats: int = 3
    alpha: float = 4.0
    mh_steps: int = 10
    mh_block_size: int | None = None  # None: max(1, new_tokens // 16) (Karan & Du)
    warmup: bool = True
    seed: int = 0
    stream_every: int = 1
    smc_block_size: int = 1  # SMC considers resampling every this many steps
    # More SMC rows, timed side by side: (block_size, stream_every) each, named smc_b{B}_k{K}.
    smc_variants: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        checks = (("n_particles", 1), ("new_tokens", 1), ("repeats", 1), ("mh_steps", 0))
        for name, low in (*checks, ("stream_every", 1), ("smc_block_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.mh_block_size is not None and self.mh_block_size < 1:
            raise ValueError(f"mh_block_size must be >= 1, got {self.mh_block_size}")
        seen = {(self.smc_block_size, self.stream_every)}
        for block, every in self.smc_variants:
            if min(block, every) < 1:
                raise ValueError(f"SMC variant {block}:{every}: both must be >= 1")
            if (block, every) in seen:
                raise ValueError(f"SMC variant {block}:{every} is already timed")
            seen.add((block, every))
        SMCConfig(alpha=self.alpha, n_particles=self.n_particles, seed=self.seed)

    @property
    def block_size(self) -> int:
        return self.mh_block_size or max(1, self.new_tokens // 16)


@dataclass(frozen=True)
class BenchResult:
    times: dict[str, list[float]]  # seconds per repeat, in repeat order
    settings: BenchSettings
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return summarise(self.times, self.settings, self.meta)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _per_step_ms(seconds: float | None, steps: int) -> float | None:
    return None if seconds is None else 1000.0 * seconds / steps


def summarise(
    times: dict[str, list[float]],
    settings: BenchSettings,
    meta: dict[str, Any],
    inside: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Medians and ratios: x_over_y = median(x) / median(y); ms_per_step = 1000·smc_s / T.

    With model-call times (``inside``, CPU): outside_model_ms_per_step[m] =
    1000·median(total − inside)/T, and smc_bookkeeping_over_limit = (outside[smc] −
    outside[limit])·T / 1000 / limit_s, the share SMC adds to the limit's time
    whatever the (noisy) forward passes cost — the noise-robust form of smc_over_limit − 1.
    """
    medians = {m: statistics.median(ts) for m, ts in times.items() if ts}
    t = settings.new_tokens
    outside = {
        m: 1000.0 * statistics.median(a - b for a, b in zip(times[m], ins, strict=True)) / t
        for m, ins in (inside or {}).items()
        if ins
    }
    bookkeeping = None
    if "smc" in outside and "limit" in outside and medians.get("limit"):
        bookkeeping = (outside["smc"] - outside["limit"]) * t / 1000.0 / medians["limit"]
    smc, limit, base = medians.get("smc"), medians.get("limit"), medians.get("baseline")
    mh, ref = medians.get("mh"), medians.get("reference")
    generate = {
        f"{m}_{key}": value
        for m in ("generate", "generate1")
        if medians.get(m) is not None
        for key, value in (("s", medians[m]), ("ms_per_step", _per_step_ms(medians[m], t)))
    }
    variants = {}
    for block, every in settings.smc_variants:
        median = medians.get(variant_name(block, every))
        variants[variant_name(block, every)] = {
            "block_size": block,
            "stream_every": every,
            "s": median,
            "ms_per_step": _per_step_ms(median, t),
            "over_smc": _ratio(median, smc),
            "over_baseline": _ratio(median, base),
        }
    return {
        **{f"{m}_s": medians.get(m) for m in METHODS},  # None for a skipped method
        **({"reference_s": ref} if ref is not None else {}),
        **generate,
        "smc_over_limit": _ratio(smc, limit),
        "smc_over_baseline": _ratio(smc, base),
        "mh_over_baseline": _ratio(mh, base),
        "mh_over_smc": _ratio(mh, smc),
        "reference_over_smc": _ratio(ref, smc),
        "smc_over_generate": _ratio(smc, medians.get("generate")),
        "ms_per_step": _per_step_ms(smc, t),
        "baseline_ms_per_step": _per_step_ms(base, t),
        "limit_ms_per_step": _per_step_ms(limit, t),
        "n_particles": settings.n_particles,
        "new_tokens": settings.new_tokens,
        "repeats": settings.repeats,
        "alpha": settings.alpha,
        "mh_steps": settings.mh_steps,
        "mh_block_size": settings.block_size,
        "seed": settings.seed,
        "stream_every": settings.stream_every,
        "smc_block_size": settings.smc_block_size,
        "smc_variants": variants,
        "times_s": {m: list(ts) for m, ts in times.items()},
        "model_s": {m: list(ins) for m, ins in (inside or {}).items()} or None,
        "outside_model_ms_per_step": outside or None,
        "smc_bookkeeping_over_limit": bookkeeping,
        **meta,
    }


# ---- the timed methods ----------------------------------------------------------------
def variant_name(block: int, every: int) -> str:
    """The row of an SMC variant: smc_b{block_size}_k{stream_every}."""
    return f"smc_b{block}_k{every}"


def parse_variant(text: str) -> tuple[int, int]:
    """'B:K' -> (block_size, stream_every), for ``--smc-variant``."""
    try:
        block, every = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected B:K (block size : stream every), e.g. 16:16, got {text!r}"
        ) from None
    return block, every


def synchronise(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall-clock interval covers its kernels."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def make_methods(
    model: LanguageModel,
    prompt: Sequence[int],
    settings: BenchSettings,
    reference: Callable[[int, int], Any] | None = None,
    single: LanguageModel | None = None,
) -> dict[str, Callable[[int, int], Any]]:
    """name -> fn(new_tokens, seed); both models must already suppress EOS.

    ``model`` serves baseline (at batch 1), limit and smc: one fast path for all
    three. ``single`` (default: the same) serves MH, which on CUDA uses the plain
    dynamic cache: it restarts from a new prefix on every proposal, which a static
    cache cannot reuse.
    """
    n, alpha = settings.n_particles, settings.alpha
    single = model if single is None else single

    def smc_with(block: int, every: int) -> Callable[[int, int], Any]:
        def smc(t: int, seed: int) -> Any:
            config = SMCConfig(
                alpha=alpha, n_particles=n, max_new_tokens=t, seed=seed, block_size=block
            )
            return PowerSMC(model, config, track_text=False, stream_every=every).run(prompt)

        return smc

    def baseline(t: int, seed: int) -> Any:
        return decode_limit(model, prompt, 1, t, seed)

    def limit(t: int, seed: int) -> Any:
        return decode_limit(model, prompt, n, t, seed)

    def mh(t: int, seed: int) -> Any:
        block = settings.block_size if t == settings.new_tokens else max(1, t // 16)
        sampler = MHPowerSampler(
            single,
            alpha=alpha,
            max_new_tokens=t,
            block_size=block,
            mh_steps=settings.mh_steps,
            seed=seed,
        )
        return sampler.run(prompt)

    methods: dict[str, Callable[[int, int], Any]] = {
        "baseline": baseline,
        "limit": limit,
        "smc": smc_with(settings.smc_block_size, settings.stream_every),
        "mh": mh,
    }
    for block, every in settings.smc_variants:
        methods[variant_name(block, every)] = smc_with(block, every)
    if reference is not None:
        methods["reference"] = reference
    return methods


def time_methods(
    methods: dict[str, Callable[[int, int], Any]],
    settings: BenchSettings,
    device: torch.device,
    progress: Callable[[str], None] | None = None,
    clock: Clock | None = None,
    warmup_tokens: int | None = None,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run every method ``repeats`` times, rotating the order each repeat.

    Returns (seconds per run, seconds inside the model per run) by method; the
    second is empty unless a ``clock`` fed by ``Timed`` wrappers is given. The
    warm-up decodes ``warmup_tokens`` (default min(T, 4)); compiled paths need the
    full T, since their cache shapes depend on it.
    """
    names = list(methods)
    if settings.warmup:
        # One untimed pass each: lazy initialisation, allocator growth, compilation.
        tokens = warmup_tokens or min(settings.new_tokens, 4)
        for name in names:
            if progress is not None:
                progress(f"warm-up: {name}")
            methods[name](tokens, settings.seed)
        synchronise(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    inside: dict[str, list[float]] = {name: [] for name in names} if clock is not None else {}
    for r in range(settings.repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if progress is not None:
                progress(f"repeat {r + 1}/{settings.repeats}: {name}")
            if clock is not None:
                clock.seconds = 0.0
            synchronise(device)
            start = time.perf_counter()
            methods[name](settings.new_tokens, settings.seed + r)
            synchronise(device)
            times[name].append(time.perf_counter() - start)
            if clock is not None:
                inside[name].append(clock.seconds)
    return times, inside


# ---- the optional reference implementation ------------------------------------------------
def load_reference(path: str | os.PathLike[str]) -> Any:
    """Import a local copy of the reference module (a .py file or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "smc_power_sample_memopt.py"
    if not path.is_file():
        raise ValueError(f"--reference-module: {path} is not a readable Python file")
    spec = importlib.util.spec_from_file_location("powersmc_reference", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--reference-module: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a user's file: report whatever it raised, as one line
        raise ValueError(f"--reference-module: importing {path} failed: {exc!r}") from None
    for name in ("smc_power_sample_memopt", "SMCSamplingConfig"):
        if not hasattr(module, name):
            raise ValueError(f"--reference-module: {path} defines no {name}")
    return module


def reference_method(
    module: Any, model: LanguageModel, prompt: Sequence[int], settings: BenchSettings
) -> Callable[[int, int], Any]:
    """The reference's SMC with our settings: constant alpha, tau = 1/alpha, no top-p, EOS banned."""
    hf_model = getattr(model, "model", None)
    tokenizer = getattr(model, "tokenizer", None)
    if hf_model is None or tokenizer is None:
        raise ValueError("--reference-module needs a transformers model (not a toy model)")
    input_ids = torch.tensor([list(prompt)], dtype=torch.long, device=model.device)

    def reference(t: int, seed: int) -> Any:
        cfg = module.SMCSamplingConfig(
            max_new_tokens=t,
            alpha=settings.alpha,
            n_particles=settings.n_particles,
            ess_threshold=0.5,
            temperature=1.0 / settings.alpha,
            block_size=settings.smc_block_size,
            alpha_ramp_tokens=1,  # ramp_T <= 1: constant alpha, as our default schedule
            min_new_tokens=t,  # its way of suppressing EOS for the whole run
            top_k=0,
            top_p=1.0,
            stop_on_boxed=False,
        )
        # It seeds its own generator internally; ``seed`` cannot reach it.
        return module.smc_power_sample_memopt(hf_model, tokenizer, input_ids, cfg)

    return reference


def generate_method(
    model: LanguageModel, prompt: Sequence[int], n: int, static: bool
) -> Callable[[int, int], Any]:
    """Hugging Face ``generate`` drawing n sequences of exactly T tokens (EOS banned).

    Plain ancestral sampling (temperature 1, no top-k/top-p), like ``limit``; with
    ``static`` the library's static cache, which transformers compiles on CUDA.
    """
    hf_model = getattr(model, "model", None)
    if hf_model is None or not hasattr(hf_model, "generate"):
        raise ValueError("generate needs a transformers model (not a toy model)")
    input_ids = torch.tensor([list(prompt)] * n, dtype=torch.long, device=model.device)
    options: dict[str, Any] = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        pad_token_id=model.eos_token_id,
    )
    if static:
        options["cache_implementation"] = "static"

    def generate(t: int, seed: int) -> Any:
        torch.manual_seed(seed)  # generate draws from the global generator
        return hf_model.generate(**options, max_new_tokens=t, min_new_tokens=t)

    return generate


# ---- command line ------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``python -m powersmc_core bench``."""
    parser.add_argument("--model", default="smollm2", help="model name, folder or hub id")
    parser.add_argument(
        "--random-init",
        metavar="ARCH",
        help="randomly initialised model of a named size (qwen2-1.5b, llama-1b, "
        "smollm2-135m, tiny): no weights needed",
    )
    parser.add_argument("--particles", "-n", type=int, default=8, help="N (default 8)")
    parser.add_argument("--new-tokens", "-t", type=int, default=64, help="T (default 64)")
    parser.add_argument("--repeats", "-r", type=int, default=3, help="timed runs per method")
    parser.add_argument("--alpha", type=float, default=4.0, help="power alpha (default 4)")
    parser.add_argument("--mh-steps", type=int, default=10, help="MH steps per block")
    parser.add_argument("--mh-block-size", type=int, help="MH block size (default T/16)")
    parser.add_argument("--prompt", help="prompt text (toy models: token names or ids)")
    parser.add_argument("--raw", action="store_true", help="no chat template")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    parser.add_argument("--dtype", help="float32, bfloat16, float16 (default: per device)")
    parser.add_argument(
        "--static-cache",
        choices=("auto", "on", "off"),
        default="auto",
        help="static KV cache (auto: on for CUDA)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the forward (mode reduce-overhead: CUDA graphs on CUDA)",
    )
    parser.add_argument(
        "--stream-every",
        type=int,
        metavar="K",
        help="SMC reads its particles back every K steps (default 16 on accelerators, 1 on CPU)",
    )
    parser.add_argument(
        "--smc-block-size",
        type=int,
        default=1,
        metavar="B",
        help="SMC (and reference) consider resampling every B steps (default 1)",
    )
    parser.add_argument(
        "--smc-variant",
        type=parse_variant,
        action="append",
        metavar="B:K",
        help="also time SMC with block size B and --stream-every K, as row smc_bB_kK "
        "(repeatable; e.g. 16:16 and 1:1 show what the identity copy and a per-token "
        "host sync cost)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("mh", "generate"),
        help="skip a method (repeatable): mh, generate (both generate rows)",
    )
    parser.add_argument(
        "--reference-module",
        metavar="FILE",
        help="local copy of the public Power-SMC reference smc_power_sample_memopt.py",
    )
    parser.add_argument("--json", metavar="PATH", help="write the JSON summary there")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines")


def _speed_setup(model: LanguageModel, args: argparse.Namespace, max_len: int) -> LanguageModel:
    """Static KV cache (fixed shapes; default on CUDA) and, with --compile, CUDA graphs."""
    static = args.static_cache == "on" or (
        args.static_cache == "auto" and model.device.type == "cuda"
    )
    if args.compile and not static:
        where = (
            "off" if args.static_cache == "off" else f"auto, and {model.device.type} is not CUDA"
        )
        raise ValueError(
            f"--compile needs the static KV cache, which is {where}: add --static-cache on"
        )
    if not static:
        return model
    from .models.hf import HFModel  # lazy: only the transformers backend has these switches

    if not isinstance(model, HFModel):
        raise ValueError("--static-cache/--compile need a transformers model, not a toy model")
    # A new wrapper over the same weights: load_model's instance is shared and stays as it was.
    return HFModel(
        model.model,
        model.tokenizer,
        model.name,
        static_cache=True,
        max_cache_len=max_len,
        compile=args.compile,
    )


def run_bench(args: argparse.Namespace, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load, time every method, and return the JSON summary (see ``REQUIRED_KEYS``)."""
    settings = BenchSettings(
        n_particles=args.particles,
        new_tokens=args.new_tokens,
        repeats=args.repeats,
        alpha=args.alpha,
        mh_steps=args.mh_steps,
        mh_block_size=args.mh_block_size,
        warmup=not args.no_warmup,
        seed=args.seed,
        stream_every=1 if args.stream_every is None else args.stream_every,
        smc_block_size=args.smc_block_size,
        smc_variants=tuple(args.smc_variant or ()),
    )
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return _run_bench(args, settings, log)
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests) get their setting back


def _run_bench(
    args: argparse.Namespace, settings: BenchSettings, log: Callable[[str], None] | None
) -> dict[str, Any]:
    from .cli import load_model_from_args, parse_prompt

    reference_module = load_reference(args.reference_module) if args.reference_module else None
    model = load_model_from_args(args)
    text = args.prompt
    if text is None:
        text = "" if isinstance(model, ToyLM) else DEFAULT_PROMPT
    prompt = parse_prompt(model, text, raw=args.raw)
    if isinstance(model, ToyLM) and len(prompt) + settings.new_tokens >= model.max_len:
        raise ValueError(
            f"{model.name} forces EOS after {model.max_len - 1} tokens: use --new-tokens "
            f"<= {model.max_len - 1 - len(prompt)} with this prompt"
        )
    plain = model
    model = _speed_setup(plain, args, max_len=len(prompt) + settings.new_tokens + 1)
    reference = (
        reference_method(reference_module, plain, prompt, settings)
        if reference_module is not None
        else None
    )
    accelerated = model.device.type != "cpu"
    if args.stream_every is None and accelerated:
        settings = replace(settings, stream_every=16)
    many, single = SuppressEOS(model), SuppressEOS(plain)
    clock = None if accelerated else Clock()
    if clock is not None:
        many, single = Timed(many, clock), Timed(single, clock)
    methods = make_methods(many, prompt, settings, reference, single=single)
    if "generate" not in args.skip and hasattr(plain, "tokenizer"):
        static = bool(getattr(model, "static_cache", False))
        methods["generate"] = generate_method(plain, prompt, settings.n_particles, static)
        methods["generate1"] = generate_method(plain, prompt, 1, static)
    for name in args.skip:
        methods.pop(name, None)
    with torch.inference_mode():
        times, inside = time_methods(
            methods,
            settings,
            model.device,
            progress=log,
            clock=clock,
            warmup_tokens=settings.new_tokens if accelerated else None,
        )
    for name in ("reference", "generate", "generate1"):  # they call the transformers model
        inside.pop(name, None)  # directly: not clocked
    dtype = getattr(model, "dtype", None)
    meta = {
        "device": str(model.device),
        "model": model.name,
        "dtype": str(dtype).removeprefix("torch.") if dtype is not None else None,
        "prompt_tokens": len(prompt),
        "static_cache": bool(getattr(model, "static_cache", False)),
        "compiled": bool(args.compile),
        # Dynamo's counter over the whole run (ours and generate's compiled forwards alike).
        "compile_graph_breaks": _graph_breaks() if args.compile else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
        "gpu": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m powersmc_core " + " ".join(getattr(args, "argv", []) or ["bench"]),
        "eos_suppressed": True,
    }
    return summarise(times, settings, meta, inside)


def _graph_breaks() -> int:
    from torch._dynamo.utils import counters

    return int(sum(counters["graph_break"].values()))


def format_table(summary: dict[str, Any]) -> str:
    """Median seconds per method, with ratios to baseline and limit."""
    times = summary["times_s"]
    base, limit = summary.get("baseline_s"), summary.get("limit_s")
    t = summary["new_tokens"]
    width = max(10, *(len(name) for name in times))  # variant rows (smc_b16_k16) are longer
    lines = [
        f"model {summary['model']} · {summary['device']} · N={summary['n_particles']} · "
        f"T={t} new tokens · {summary['repeats']} repeats (medians)",
        f"{'method':<{width}} {'median s':>9} {'min s':>8} {'max s':>8} "
        f"{'ms/step':>8} {'× base':>8} {'× limit':>8}",
    ]
    for name, runs in times.items():
        med = statistics.median(runs)
        xb = "" if not base else f"{med / base:8.2f}"
        xl = "" if not limit else f"{med / limit:8.2f}"
        lines.append(
            f"{name:<{width}} {med:9.3f} {min(runs):8.3f} {max(runs):8.3f} "
            f"{1000 * med / t:8.1f} {xb:>8} {xl:>8}"
        )
    smc_limit, mh_smc = summary.get("smc_over_limit"), summary.get("mh_over_smc")
    if smc_limit is not None:
        lines.append(f"smc_over_limit = {smc_limit:.3f}  (target <= 1.10 on CPU)")
    over_generate = summary.get("smc_over_generate")
    if over_generate is not None:
        lines.append(f"smc_over_generate = {over_generate:.3f}  (Hugging Face generate, N rows)")
    if mh_smc is not None:
        lines.append(
            f"mh_over_baseline / smc_over_baseline = mh_s / smc_s = {mh_smc:.2f}  (target >= 3)"
        )
    breaks = summary.get("compile_graph_breaks")
    if breaks:
        lines.append(f"warning: {breaks} torch.compile graph breaks in this run (split graphs)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write --json; errors propagate to the CLI."""
    if args.json:
        from .cli import check_writable

        check_writable(args.json, "--json")

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    summary = run_bench(args, log=log)
    print(format_table(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return 0
